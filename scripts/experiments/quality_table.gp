# scripts/experiments/quality_table.gp — plot of quality_table.sh: final
# held-out loss (mean +- std over seeds) against the target epsilon, one
# line per strategy. Variables (gnuplot -e): datafile (blocks "epsilon mean
# std", one per strategy in the order of `strategies`, x nudged apart; no DP
# drawn at 16), outfile, strategies, tasklabel.
set terminal png size 900,600 font ",11"
set output outfile
set title "Held-out loss vs privacy budget\n(" . tasklabel . ")"
set xlabel "target epsilon (sample-level DP-SGD; rightmost = no DP)"
set ylabel "final held-out loss (nats/byte), mean +- std"
set logscale x 2
set xrange [1.5:20]
set xtics ("2" 2, "4" 4, "8" 8, "no DP" 16)
set grid
set key top right
plot for [i=1:words(strategies)] datafile index (i-1) using 1:2:3 with yerrorlines lw 2 pt 7 title word(strategies, i)

# scripts/experiments/dp_table.gp — plot of dp_table.sh: held-out loss against
# the target epsilon, one line per strategy. Variables (gnuplot -e): datafile
# (blocks of "epsilon loss", one per strategy, in the order of `strategies`;
# no DP drawn at epsilon 16), outfile, strategies, tasklabel.
set terminal png size 900,600 font ",11"
set output outfile
set title "Held-out loss vs privacy budget (" . tasklabel . ")"
set xlabel "epsilon (sample-level DP-SGD; rightmost = no DP)"
set ylabel "final held-out loss"
set logscale x 2
set xrange [1.5:20]
set xtics ("2" 2, "4" 4, "8" 8, "no DP" 16)
set grid
set key top right
plot for [i=1:words(strategies)] datafile index (i-1) using 1:2 with linespoints lw 2 pt 7 title word(strategies, i)

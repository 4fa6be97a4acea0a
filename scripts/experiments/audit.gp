# scripts/experiments/audit.gp — plot of audit.sh. Variable (gnuplot -e): dir,
# holding hist.dat (blocks "score in out", one per sigma) and eps.dat
# ("sigma eps_rdp eps_prv eps_lower_bound eps_implied eps_lb_ceiling
# eps_implied_lo eps_implied_hi").
# Left: score histograms of the middle sigma; right: epsilon against sigma.
set terminal png size 1200,500 font ",11"
set output dir . "/audit.png"
stats dir . "/eps.dat" using 1 nooutput
nsig = STATS_records
mid = int(nsig / 2)
set multiplot layout 1,2
set title sprintf("Canary coordinate of the round-1 global (block %d of %d sigmas)", mid + 1, nsig)
set xlabel "membership score"
set ylabel "runs"
set style fill transparent solid 0.5
set grid
plot dir . "/hist.dat" index mid using 1:2 with boxes lc rgb "#d62728" title "canary in", \
     "" index mid using 1:3 with boxes lc rgb "#1f77b4" title "canary out"
set title "Accountant epsilon vs empirical audit (delta 1e-5)"
set xlabel "noise multiplier sigma (client-level DP, 1 round, q = 1)"
set ylabel "epsilon"
set logscale y
set key top right
plot dir . "/eps.dat" using 1:2 with linespoints lw 2 pt 7 title "accountant RDP", \
     "" using 1:3 with linespoints lw 2 pt 5 title "accountant PRV (upper)", \
     "" using 1:5:7:8 with yerrorlines lw 2 pt 9 dt 2 title "implied by measured shift (estimate, 95%)", \
     "" using 1:4 with linespoints lw 2 pt 13 title "empirical lower bound (95%)", \
     "" using 1:6 with lines lw 1 dt 3 lc rgb "gray" title "max. lower bound with these runs"
unset multiplot

# echo_p99.gnuplot - made by bench/render.py from the TSVs beside it
set terminal pngcairo size 800,500 font ',10' noenhanced
set output 'echo_p99.png'
set title 'Echo, closed loop: p99 latency (lower is better)'
set xlabel 'connections (log scale)'
set ylabel 'p99 latency, ms (log scale)'
set logscale x 10
set xrange [5:20000]
set grid
set key below
set format y '%g'
set logscale y 10
$d0 << EOD
10 0.4076
100 4.2926
1000 11.7309
10000 170.918
EOD
$d1 << EOD
10 0.8643
100 7.3073
1000 11.2067
10000 126.353
EOD
$d2 << EOD
10 0.4198
100 13.566
1000 52.6909
10000 513.802
EOD
$d3 << EOD
10 0.4035
100 3.3915
1000 12.1242
10000 193.987
EOD
$d4 << EOD
10 0.4362
100 10.9445
1000 50.5938
10000 641.729
EOD
$d5 << EOD
10 0.4116
100 4.3581
1000 11.5999
10000 200.278
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#009e73' title 'epoll C', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#56b4e9' title 'threads C', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#e69f00' title 'Go', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#7f7f7f' title 'legacy_echo, plain', \
     $d5 using 1:2 with linespoints lw 2 pt 10 lc rgb '#0060ad' title 'legacy_echo, nprun -p 2'

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
10 0.1751
100 11.5999
1000 107.479
10000 1082.13
EOD
$d1 << EOD
10 0.257
100 4.0468
1000 62.1281
10000 557.842
EOD
$d2 << EOD
10 0.4567
100 3.8175
1000 54.7881
10000 683.672
EOD
$d3 << EOD
10 0.3092
100 2.7034
1000 78.1189
10000 591.397
EOD
$d4 << EOD
10 0.4116
100 4.4237
1000 61.0796
10000 977.273
EOD
$d5 << EOD
10 0.1444
100 9.3716
1000 125.305
10000 1669.33
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#009e73' title 'epoll C', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#56b4e9' title 'threads C', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#e69f00' title 'Go', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#7f7f7f' title 'legacy_echo, plain', \
     $d5 using 1:2 with linespoints lw 2 pt 10 lc rgb '#0060ad' title 'legacy_echo, nprun -p 2'

# echo_rps.gnuplot - made by bench/render.py from the TSVs beside it
set terminal pngcairo size 800,500 font ',10' noenhanced
set output 'echo_rps.png'
set title 'Echo, closed loop: requests/s (higher is better)'
set xlabel 'connections (log scale)'
set ylabel 'requests/s (thousands)'
set logscale x 10
set xrange [5:20000]
set grid
set key below
set format y '%g'
set yrange [0:*]
$d0 << EOD
10 150.809
100 253.082
1000 201.237
10000 118.469
EOD
$d1 << EOD
10 160.133
100 227.966
1000 234.071
10000 129.818
EOD
$d2 << EOD
10 178.639
100 223.494
1000 174.6
10000 196.243
EOD
$d3 << EOD
10 136.162
100 170.201
1000 192.739
10000 106.961
EOD
$d4 << EOD
10 173.427
100 187.559
1000 151.491
10000 147.209
EOD
$d5 << EOD
10 188.278
100 215.343
1000 202.911
10000 101.507
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#009e73' title 'epoll C', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#56b4e9' title 'threads C', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#e69f00' title 'Go', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#7f7f7f' title 'legacy_echo, plain', \
     $d5 using 1:2 with linespoints lw 2 pt 10 lc rgb '#0060ad' title 'legacy_echo, nprun -p 2'

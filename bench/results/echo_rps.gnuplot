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
10 164.247
100 136.328
1000 66.266
10000 32.282
EOD
$d1 << EOD
10 140.098
100 140.043
1000 40.248
10000 21.398
EOD
$d2 << EOD
10 145.485
100 166.286
1000 151.572
10000 92.882
EOD
$d3 << EOD
10 107.251
100 124.484
1000 68.206
10000 32.341
EOD
$d4 << EOD
10 164.974
100 121.62
1000 130.697
10000 50.728
EOD
$d5 << EOD
10 158.285
100 110.971
1000 56.693
10000 30.77
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#009e73' title 'epoll C', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#56b4e9' title 'threads C', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#e69f00' title 'Go', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#7f7f7f' title 'legacy_echo, plain', \
     $d5 using 1:2 with linespoints lw 2 pt 10 lc rgb '#0060ad' title 'legacy_echo, nprun -p 2'

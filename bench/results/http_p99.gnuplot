# http_p99.gnuplot - made by bench/render.py from the TSVs beside it
set terminal pngcairo size 800,500 font ',10' noenhanced
set output 'http_p99.png'
set title 'HTTP keep-alive: p99 latency (lower is better)'
set xlabel 'connections (log scale)'
set ylabel 'p99 latency, ms (log scale)'
set logscale x 10
set xrange [5:20000]
set grid
set key below
set format y '%g'
set logscale y 10
$d0 << EOD
10 15.51
100 22.82
1000 141.93
10000 867.92
EOD
$d1 << EOD
10 12.66
100 38.28
1000 208.31
10000 1320
EOD
$d2 << EOD
10 0.408
100 1140
1000 694.92
10000 756.52
EOD
$d3 << EOD
10 5.37
100 3.34
1000 35.76
10000 328.2
EOD
$d4 << EOD
10 1.72
100 29.2
1000 410.87
10000 1030
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#e69f00' title 'Go net/http', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#c8a000' title 'Go raw net', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#7f7f7f' title 'legacy_http, plain', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#0060ad' title 'legacy_http, nprun -p 2'

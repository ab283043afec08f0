# http_rps.gnuplot - made by bench/render.py from the TSVs beside it
set terminal pngcairo size 800,500 font ',10' noenhanced
set output 'http_rps.png'
set title 'HTTP keep-alive: requests/s (higher is better)'
set xlabel 'connections (log scale)'
set ylabel 'requests/s (thousands)'
set logscale x 10
set xrange [5:20000]
set grid
set key below
set format y '%g'
set yrange [0:*]
$d0 << EOD
10 123.411
100 47.8214
1000 31.6951
10000 16.4292
EOD
$d1 << EOD
10 39.7006
100 42.6568
1000 23.5505
10000 14.8895
EOD
$d2 << EOD
10 123.094
100 63.3205
1000 33.3005
10000 17.3128
EOD
$d3 << EOD
10 88.825
100 71.203
1000 61.388
10000 31.936
EOD
$d4 << EOD
10 112.551
100 110.161
1000 33.056
10000 20.218
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#e69f00' title 'Go net/http', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#c8a000' title 'Go raw net', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#7f7f7f' title 'legacy_http, plain', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#0060ad' title 'legacy_http, nprun -p 2'

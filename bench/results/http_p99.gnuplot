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
10 0.64
100 4.4
1000 15.64
10000 198.75
EOD
$d1 << EOD
10 4.24
100 11.11
1000 43.54
10000 329.99
EOD
$d2 << EOD
10 1.67
100 5.27
1000 13.65
10000 173.78
EOD
$d3 << EOD
10 0.748
100 2.01
1000 23.42
10000 145.43
EOD
$d4 << EOD
10 1.75
100 4.29
1000 16.37
10000 211.33
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#e69f00' title 'Go net/http', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#c8a000' title 'Go raw net', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#7f7f7f' title 'legacy_http, plain', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#0060ad' title 'legacy_http, nprun -p 2'

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
10 103.271
100 138.926
1000 161.282
10000 83.3885
EOD
$d1 << EOD
10 57.3905
100 70.6345
1000 83.7761
10000 65.4397
EOD
$d2 << EOD
10 90.4658
100 130.473
1000 138.547
10000 82.8402
EOD
$d3 << EOD
10 122.272
100 133.691
1000 69.976
10000 67.734
EOD
$d4 << EOD
10 128.109
100 148.387
1000 138.974
10000 78.035
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#e69f00' title 'Go net/http', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#c8a000' title 'Go raw net', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#7f7f7f' title 'legacy_http, plain', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#0060ad' title 'legacy_http, nprun -p 2'

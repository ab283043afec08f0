# memory.gnuplot - made by bench/render.py from the TSVs beside it
set terminal pngcairo size 800,500 font ',10' noenhanced
set output 'memory.png'
set title 'Memory per held connection: RSS + kernel stacks (lower is better)'
set xlabel 'connections (log scale)'
set ylabel 'KiB per connection'
set logscale x 10
set xrange [5:20000]
set grid
set key below
set format y '%g'
set yrange [0:*]
$d0 << EOD
10 63.6
100 12.04
1000 6.88
10000 6.37
EOD
$d1 << EOD
10 0.4
100 0.04
1000 0
10000 0
EOD
$d2 << EOD
10 34.8
100 28.96
1000 28.41
10000 28.29
EOD
$d3 << EOD
10 17.2
100 8.56
1000 7.84
10000 7.44
EOD
$d4 << EOD
10 34.8
100 28.96
1000 28.35
10000 28.29
EOD
$d5 << EOD
10 12.8
100 13.8
1000 12.82
10000 12.7
EOD
plot $d0 using 1:2 with linespoints lw 2 pt 5 lc rgb '#9400d3' title 'netpoll', \
     $d1 using 1:2 with linespoints lw 2 pt 6 lc rgb '#009e73' title 'epoll C', \
     $d2 using 1:2 with linespoints lw 2 pt 7 lc rgb '#56b4e9' title 'threads C', \
     $d3 using 1:2 with linespoints lw 2 pt 8 lc rgb '#e69f00' title 'Go', \
     $d4 using 1:2 with linespoints lw 2 pt 9 lc rgb '#7f7f7f' title 'legacy_echo, plain', \
     $d5 using 1:2 with linespoints lw 2 pt 10 lc rgb '#0060ad' title 'legacy_echo, nprun -p 2'

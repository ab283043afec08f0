#!/bin/sh
# t/bench/render-check.sh - bench/render.py on the tiny fixture in
# t/bench/fixture/, into a scratch directory: RESULTS.md must have the
# machine, the ratio rows and the absolute rows the fixture implies, and
# the gnuplot scripts a log x axis (gnuplot itself is not run: no
# benchmark runs here, `make bench` does that).
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
[ -x "$py" ] || py=python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/render-check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
cp "$here"/fixture/*.tsv "$tmp"/ || exit 2
if ! "$py" "$here/../../bench/render.py" "$tmp" --no-plots; then
    echo "render-check: bench/render.py failed"
    exit 1
fi
md=$tmp/RESULTS.md
bad=0
has() { # FILE TEXT: TEXT is a line (part) of FILE
    grep -qF -- "$2" "$1" && return 0
    echo "render-check: $(basename "$1") lacks: $2"
    bad=1
}
has "$md" 'Machine: Test CPU, 2 cores, 4.0 GiB, Linux 6.1.'
has "$md" '| ratio | 10 conns | 100 conns | better |'
has "$md" '| requests/s, netpoll / epoll C | 0.92 | 1.25 | higher |'
has "$md" '| memory per connection, netpoll / threads C | - | 0.21 | lower |'
has "$md" '| echo requests/s, nprun / plain | 0.80 | higher |'
has "$md" '| python3 socketserver echo | 1001 | 4 | 2.40K | 3.60K | 1.50 | 1000 connections held |'
has "$md" '| switch ns (raw) | 5.2 | boost fcontext | 5.6 | 0.929 | lower |'
has "$md" '| netpoll | 100 | 100.0K | 400 us | 1.50 ms | 4.0 us | 6.0 | 0.0 | 6.0 | 4 |'
has "$md" '| legacy_http, nprun -p 2 | 1000 | 50.0K | 20.00 ms | 19.0 | 19.0 | 0.0 | 4 |'
has "$md" '| echo requests/s, nprun / plain, split cores | 20.00 | higher |'
has "$md" 'unmodified echo server, requests/s, nprun / plain, split cores | - | - | 20.00 | higher |'
has "$md" '| legacy_echo, nprun -p 1, split cores | 1000 | 60.0K |'
has "$md" '| echo requests/s, nprun / epoll C | 0.90 | higher |'
has "$md" '| epoll C (echo_epoll) | 1000 | 80.0K |'
# ratios before absolute figures
r=$(grep -n '^## Ratios' "$md" | cut -d: -f1)
a=$(grep -n '^## Absolute figures' "$md" | cut -d: -f1)
if [ -z "$r" ] || [ -z "$a" ] || [ "$r" -ge "$a" ]; then
    echo "render-check: want '## Ratios' before '## Absolute figures'"
    bad=1
fi
for p in echo_rps echo_p99 memory http_rps; do
    [ -f "$tmp/$p.gnuplot" ] || { echo "render-check: no $p.gnuplot"; bad=1; continue; }
    has "$tmp/$p.gnuplot" 'set logscale x 10'
done
has "$tmp/echo_rps.gnuplot" "set output 'echo_rps.png'"
[ $bad = 0 ] && echo "render-check: ok"
exit $bad

#!/bin/sh
# bench/real.sh - real Debian programs, unmodified, plain and under nprun:
# the server's OS threads at load and its rate, side by side.
#
#   sh bench/real.sh BUILD_DIR OUT_TSV      (bench/run.sh's [real] section)
#
#   python3 -m http.server   ThreadingHTTPServer (a thread per connection)
#                            on a generated tree, wrk -t2 -c100 on a 4 KiB
#                            file (HTTP/1.0: a connection per request)
#   python3 socketserver     ThreadingTCPServer echo (t/shim/real/echo_server.py),
#                            1000 connections held (echo_client.py)
#   redis-server             one event loop; redis-benchmark -c 50, SET and
#                            GET, a row each
#   nginx                    master and 2 worker processes (threads of all
#                            three), wrk -t2 -c100 on a 4 KiB file
#   wrk, curl                the clients under nprun, against a plain nginx:
#                            wrk -t2 -c100; curl --parallel, 100 transfers
#   mariadbd                 a thread per connection (InnoDB); mariadb-slap,
#                            200 connections of generated mixed SQL
#   apache2                  mpm_worker, 2 children of 128 threads (a thread
#                            per connection), wrk -t2 -c100 on a 4 KiB file
#   C++ pool, fork, daemon   t/shim/real's pool_echo.cpp, fork_echo.c and
#                            daemon_echo.c, loaded by echo_client.py
#
# Each runs plain, then under `nprun -p REAL_PROCS`; the load generators
# always run plain.  Started, sampled (largest Threads: seen) and stopped
# with t/shim/real/lib.sh, as t/shim/real/run.sh does when it checks them.
# Appends "program mode threads rps note" lines to OUT_TSV (a header
# first); a program that is not installed is skipped.
#
# Environment: REAL_PROCS (2), REAL_SECS (5, the window of each load),
# PYTHON (default /usr/bin/python3).

build=${1:?usage: sh bench/real.sh BUILD_DIR OUT_TSV}
tsv=${2:?usage: sh bench/real.sh BUILD_DIR OUT_TSV}
PATH=$PATH:/usr/sbin:/sbin
export PATH
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
procs=${REAL_PROCS:-2}
secs=${REAL_SECS:-5}
py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=$(command -v python3 2>/dev/null)
# shellcheck disable=SC3045 # dash and bash both have ulimit -H and -n
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

nprun=$build/bin/nprun
modes=plain
if [ -x "$nprun" ] && [ -f "$build/lib/libnetpoll-preload.so" ]; then
    NPRUN_PRELOAD=$build/lib/libnetpoll-preload.so
    export NPRUN_PRELOAD
    modes="plain $procs"
else
    echo "$nprun or the preload shim missing: plain runs only"
fi
unset LD_PRELOAD NP_PROCS NP_STACK_SIZE NP_POLLER NPDEBUG

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-real.XXXXXX") || exit 2
chmod 755 "$tmp" # nginx's workers run as nobody when the master is root
groups=
sampler=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    [ -n "$sampler" ] && : >"$tmp/sampler.stop" && wait "$sampler"
    for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

fail() { # MODE MESSAGE LOG...: say so, with the end of the logs
    echo "$tc $(label "$1"): $2"
    shift 2
    for f in "$@"; do [ -s "$f" ] && tail -n 5 "$f" | cut -c1-160 | sed 's/^/    | /'; done
}
label() { if [ "$1" = plain ]; then echo plain; else echo "nprun -p $1"; fi; }
row() { # PROGRAM MODE THREADS RPS NOTE
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$(label "$2")" "$3" "$4" "$5" >>"$tsv"
    echo "$1 $(label "$2"): os_threads=$3 rps=$4 ($5)"
}
have() {
    for p in "$@"; do
        command -v "$p" >/dev/null 2>&1 || { echo "skip $tc: $p not installed"; return 1; }
    done
}

# shellcheck source=t/shim/real/lib.sh
. "$root/t/shim/real/lib.sh"

[ -s "$tsv" ] || printf 'program\tmode\tthreads\trps\tnote\n' >"$tsv"

# wrk_load MODE PORT [tree]: wrk -t2 -c100 on /4k.bin while the server
# of the last start is sampled; a row for program $tc
wrk_load() {
    sample_start "$bg" "${3:-}"
    # --timeout 10s: a connection the listen queue dropped (python's holds 5)
    # is retried by the kernel after 1 s and 3 s, which is not an error.
    timeout -s KILL $((secs + 30)) wrk -t2 -c100 -d"${secs}s" --timeout 10s "http://127.0.0.1:$2/4k.bin" \
        >"$tmp/wrk.log" 2>&1
    sample_stop
    wrk_check "$tmp/wrk.log"
    if [ -n "$wrk_why" ]; then
        fail "$1" "wrk: $wrk_why" "$tmp/wrk.log"
        row "$tc" "$1" "$os_threads" "" "wrk -t2 -c100: $wrk_why"
    else
        row "$tc" "$1" "$os_threads" "$wrk_rps" "wrk -t2 -c100, 4 KiB file"
    fi
}

tc=python-http
if have "$py" wrk && make_tree; then
    for m in $modes; do
        port=$(free_port)
        # shellcheck disable=SC2046 # runner's words
        start http-server $(runner "$m") "$py" -m http.server --bind 127.0.0.1 -d "$www" "$port"
        up "$m" "$port" "$tmp/http-server.log" || continue
        tc="python3 -m http.server" wrk_load "$m" "$port"
        stop "$bg" "$bgrp" TERM
    done
fi

tc=python-echo
if have "$py"; then
    for m in $modes; do
        port=$(free_port)
        # shellcheck disable=SC2046
        start echo-server $(runner "$m") "$py" "$root/t/shim/real/echo_server.py" "$port"
        up "$m" "$port" "$tmp/echo-server.log" || continue
        timeout -s KILL 60 "$py" "$root/t/shim/real/echo_client.py" "$port" 1000 --hold \
            --rounds 3 --pid "$bg" >"$tmp/client.log" 2>&1 || fail "$m" "echo_client.py failed" "$tmp/client.log"
        stop "$bg" "$bgrp" TERM
        row "python3 socketserver echo" "$m" "$(sed -n 's/^os_threads=\([0-9-]*\)$/\1/p' "$tmp/client.log")" \
            "$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")" "1000 connections held, 3 rounds"
    done
fi

tc=redis
if have redis-server redis-benchmark; then
    for m in $modes; do
        port=$(free_port)
        mkdir -p "$tmp/redis-$m"
        # shellcheck disable=SC2046
        start redis $(runner "$m") redis-server --port "$port" --bind 127.0.0.1 --save '' \
            --appendonly no --dir "$tmp/redis-$m" --daemonize no --protected-mode no
        up "$m" "$port" "$tmp/redis.log" || continue
        sample_start "$bg"
        timeout -s KILL $((secs * 4 + 30)) redis-benchmark -h 127.0.0.1 -p "$port" -q -c 50 \
            -n $((secs * 60000)) -t set,get >"$tmp/bench.raw" 2>&1
        sample_stop
        stop "$bg" "$bgrp" TERM
        for t in SET GET; do
            r=$(tr '\r' '\n' <"$tmp/bench.raw" | grep 'requests per second' |
                awk -F: -v t="$t" '$1 == t {split($2, a, " "); printf "%.0f", a[1]}')
            [ -n "$r" ] || fail "$m" "redis-benchmark: no $t figure" "$tmp/bench.raw"
            row "redis-server ($t)" "$m" "$os_threads" "$r" "redis-benchmark -c 50, $((secs * 60000)) requests"
        done
    done
fi

tc=nginx
if have nginx wrk && make_tree; then
    for m in $modes; do
        port=$(free_port)
        ndir=$tmp/nginx-$m
        mkdir -p "$ndir"
        nginx_conf "$ndir" "$port" 2
        # shellcheck disable=SC2046
        start nginx $(runner "$m") nginx -p "$ndir" -e "$ndir/error.log" -c "$ndir/nginx.conf"
        up "$m" "$port" "$tmp/nginx.log" "$ndir/error.log" || continue
        tc="nginx (master + 2 workers)" wrk_load "$m" "$port" tree
        stop "$bg" "$bgrp" TERM
    done
fi

# Clients under nprun: wrk and curl against a plain nginx.
if have nginx && make_tree && plain_http; then
    tc=wrk
    if have wrk; then
        for m in $modes; do
            # shellcheck disable=SC2046
            timeout -s KILL $((secs + 30)) $(runner "$m") wrk -t2 -c100 -d"${secs}s" \
                "http://127.0.0.1:$hport/4k.bin" >"$tmp/wrk.log" 2>&1
            wrk_check "$tmp/wrk.log"
            [ -z "$wrk_why" ] || fail "$m" "wrk: $wrk_why" "$tmp/wrk.log"
            row "wrk (the load generator)" "$m" - "${wrk_rps:-}" "wrk -t2 -c100 against a plain nginx"
        done
    fi
    tc=curl
    if have curl; then
        : >"$tmp/par.cfg"
        for i in $(seq 100); do printf 'url = "http://127.0.0.1:%s/4k.bin"\noutput = "/dev/null"\n' "$hport" >>"$tmp/par.cfg"; done
        for m in $modes; do
            t0=$(now_ms)
            # shellcheck disable=SC2046
            timeout -s KILL 60 $(runner "$m") curl -sS --parallel --parallel-max 100 -K "$tmp/par.cfg" \
                >"$tmp/curl.log" 2>&1 || { fail "$m" "curl --parallel failed" "$tmp/curl.log"; continue; }
            row "curl --parallel" "$m" - "$(rate 100 $(($(now_ms) - t0)))" "100 transfers of a 4 KiB file, 100 at once"
        done
    fi
    kill -s KILL -- "-$hgrp" 2>/dev/null
fi

tc=mariadb
if have mariadbd mariadb-install-db mariadb-slap; then
    for m in $modes; do
        port=$(free_port)
        data=$tmp/mariadb-$m
        mariadb_data "$data" || { fail "$m" "mariadb-install-db failed" "$tmp/install-db.log"; break; }
        mariadb_start "$m" "$data" "$port"
        up "$m" "$port" "$tmp/mariadb.log" || continue
        n=$((secs * 8000))
        sample_start "$bg"
        t0=$(now_ms)
        mariadb_slap "$port" --concurrency=200 --iterations=1 --number-of-queries=$n --auto-generate-sql \
            --auto-generate-sql-load-type=mixed --auto-generate-sql-add-autoincrement >"$tmp/slap.log" 2>&1 ||
            fail "$m" "mariadb-slap failed" "$tmp/slap.log"
        ms=$(($(now_ms) - t0))
        sample_stop
        stop "$bg" "$bgrp" TERM
        row "mariadbd (a thread per connection)" "$m" "$os_threads" "$(rate "$n" "$ms")" \
            "mariadb-slap, 200 connections, $n mixed queries"
    done
fi

tc=apache
if have apache2 wrk && make_tree; then
    for m in $modes; do
        port=$(free_port)
        adir=$tmp/apache-$m
        mkdir -p "$adir"
        apache_conf "$adir" "$port"
        apache_start "$m" "$adir"
        up "$m" "$port" "$tmp/apache.log" "$adir/error.log" || continue
        tc="apache2 mpm_worker (2 x 128 threads)" wrk_load "$m" "$port" tree
        stop "$bg" "$bgrp" TERM
    done
fi

# The thread-per-connection servers of t/shim/real: a std::thread pool, a
# child per connection, a daemon; loaded by echo_client.py.
# echo_rows PROGRAM NOTE "CLIENT ARGS" SERVER ARGS...: the server started
# plain and under nprun, loaded by echo_client.py with CLIENT ARGS, a row each
echo_rows() {
    prog=$1 note=$2 cargs=$3 srv=$4
    shift 4
    for m in $modes; do
        port=$(free_port)
        # shellcheck disable=SC2046
        start "$tc" $(runner "$m") "$srv" "$port" "$@"
        up "$m" "$port" "$tmp/$tc.log" || continue
        sample_start "$bg"
        # shellcheck disable=SC2086 # the client's words
        timeout -s KILL 60 "$py" "$root/t/shim/real/echo_client.py" "$port" $cargs >"$tmp/client.log" 2>&1 ||
            fail "$m" "echo_client.py failed" "$tmp/client.log"
        sample_stop
        stop "$bg" "$bgrp" TERM
        row "$prog" "$m" "$os_threads" "$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")" "$note"
    done
}

tc=cxx-pool
if have "${CXX:-c++}" "$py" && "${CXX:-c++}" -std=c++20 -O2 -pthread -o "$tmp/pool_echo" \
    "$root/t/shim/real/pool_echo.cpp" >"$tmp/cc.log" 2>&1; then
    echo_rows "C++ std::thread pool (8 threads)" "500 connections, 32 at once, 5 rounds" \
        "500 --concurrency 32 --rounds 5" "$tmp/pool_echo" 8 60
fi

tc=fork
if have "${CC:-cc}" "$py" && "${CC:-cc}" -std=c11 -D_GNU_SOURCE -O2 -o "$tmp/fork_echo" \
    "$root/t/shim/real/fork_echo.c" >"$tmp/cc.log" 2>&1; then
    echo_rows "fork per connection" "400 connections, 20 at once, 3 rounds" \
        "400 --concurrency 20 --rounds 3" "$tmp/fork_echo" 60
fi

tc=daemon
if have "${CC:-cc}" "$py" && "${CC:-cc}" -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$tmp/daemon_echo" \
    "$root/t/shim/real/daemon_echo.c" >"$tmp/cc.log" 2>&1; then
    for m in $modes; do
        port=$(free_port)
        pf=$tmp/daemon-$m.pid
        # shellcheck disable=SC2046
        timeout -s KILL 20 $(runner "$m") "$tmp/daemon_echo" "$port" "$pf" 60 >"$tmp/daemon.log" 2>&1 </dev/null
        dpid=$(cat "$pf" 2>/dev/null)
        if [ -z "$dpid" ] || ! wait_listen "$port" "$dpid"; then
            fail "$m" "the daemon did not start" "$tmp/daemon.log"
            continue
        fi
        timeout -s KILL 60 "$py" "$root/t/shim/real/echo_client.py" "$port" 300 --hold --rounds 3 \
            --pid "$dpid" >"$tmp/client.log" 2>&1 || fail "$m" "echo_client.py failed" "$tmp/client.log"
        kill -TERM "$dpid" 2>/dev/null
        row "daemon (double fork, closes all fds)" "$m" \
            "$(sed -n 's/^os_threads=\([0-9-]*\)$/\1/p' "$tmp/client.log")" \
            "$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")" "300 connections held, 3 rounds"
    done
fi
exit 0

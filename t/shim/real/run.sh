#!/bin/sh
# Real Debian programs, unmodified, under the preload shim.
#
#   sh t/shim/real/run.sh BUILD_DIR
#
# Each case runs its program plain, then under `nprun -p 1` and `nprun -p 2`
# (BUILD_DIR/bin/nprun with BUILD_DIR/lib/libnetpoll-preload.so), checks the
# answers, and prints one line per run with the server's OS threads at load
# (Threads: of /proc/PID/status, the largest seen; for nginx the master's and
# its workers' together; "?" for a client that was done before the first
# look) and a rough rate:
#
#   python-http   python3 -m http.server (ThreadingHTTPServer) on a generated
#                 tree; 300 urllib GETs at once from a plain client, every
#                 body's sha256 checked
#   python-echo   socketserver.ThreadingTCPServer echo (echo_server.py); 1000
#                 connections held open at once, checksummed echoes; under
#                 nprun -p P it must have <= P + 8 OS threads while they are
#   python-mp     multiprocessing: Pool, ProcessPoolExecutor, Process + Queue
#                 (mp_pool.py)
#   curl          curl against a plain nginx: one fetch, keep-alive (several
#                 URLs, one connection), 100 transfers with --parallel
#   wrk           wrk -t2 -c100 -d3s as the load generator against a plain
#                 nginx: requests, few socket errors
#   redis         redis-server, checked with redis-cli, loaded with
#                 redis-benchmark (plain): its rps beside the plain server's
#   nginx         nginx, master and 2 workers, fetched by curl, loaded by wrk
#   go-static     a CGO_ENABLED=0 Go program: nprun refuses it (exit 2)
#   daemon        daemon_echo.c: double fork, setsid, closes every descriptor,
#                 thread-per-connection echo; serves, and dies on SIGTERM sent
#                 to the pid in its pid file
#   fork          fork_echo.c: a child per connection, reaped on SIGCHLD
#   cxx-pool      pool_echo.cpp: std::thread pool, std::mutex and
#                 std::condition_variable work queue of connections
#   node          node_server.js (libuv: an epoll loop, fs and pbkdf2 in its
#                 thread pool, woken through an eventfd); 40 clients, every
#                 file's sha256 and every key checked (node_client.py)
#   mariadb       mariadbd, a thread per connection (InnoDB): mariadb-slap
#                 with 200 connections of mixed SQL, then 50 writers whose
#                 transactions' rows and sum are checked exactly
#   apache        apache2 with mpm_worker (2 children of 128 threads, a
#                 thread per connection): the tree by curl, wrk with 200
#                 connections, a graceful restart (SIGUSR1), the tree again
#   java          EchoServer.java, a java.lang.Thread per connection: 1000
#                 held, at most P + 8 OS threads under nprun -p P; SIGTERM
#                 runs its shutdown hook
#   postgres      PostgreSQL, a process per connection: pgbench's TPC-B from
#                 20 connections, its sums checked; a parallel query;
#                 connections opened in reasonable time
#   make          GNU make -j8 with a recursive make on its job server: 60
#                 jobs made, in parallel
#   haproxy       haproxy -W, master and a 2-thread worker: answers, reloads
#                 on SIGUSR2, stops on SIGTERM (the master reaps its worker)
#   ruby          exit while 8 threads block on one pipe, one listener and a
#                 queue
#   interrupt     SIGINT to gzip and to python computing, and to sh waiting
#                 with a trap: each takes it as plain
#   unshare       unshare -Ur: a new user namespace, which the kernel gives
#                 a single-threaded process only
#
# Servers get SIGTERM at the end and must exit as they do plain (the status
# is checked). A case whose program is not installed is skipped. Everything
# listens on 127.0.0.1 on free ports; every process runs under timeout -s KILL
# in a process group that the script kills on its way out (the daemon, in a
# session of its own, through its pid file; it also ends itself after 60 s).
#
# Prints "real: N passed, M failed, K skipped" last; exits 1 on a failure.
# Every command has a time limit, and the script a budget: the runs left
# when it has run for REAL_BUDGET seconds (420) fail unrun.
#
# Environment: CC, CXX; REAL_TESTS (a space-separated subset of the case
# names); PYTHON (default /usr/bin/python3, else python3 on PATH);
# REAL_BUDGET.

build=${1:?usage: sh t/shim/real/run.sh BUILD_DIR}
PATH=$PATH:/usr/sbin:/sbin   # nginx is there
export PATH
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/t/shim/real" || exit 2
build=$(cd "$build" && pwd)
out=$build/t/shim/real
CC=${CC:-cc}
CXX=${CXX:-c++}

# 1000 connections plain need a descriptor each in the client and the server.
# shellcheck disable=SC3045 # dash and bash both have ulimit -H and -n
hard=$(ulimit -Hn)
# shellcheck disable=SC3045
ulimit -n "$hard" 2>/dev/null || ulimit -n 20000 2>/dev/null || true

shim=$build/lib/libnetpoll-preload.so
nprun=$build/bin/nprun
if [ -f "$shim" ] && [ -x "$nprun" ]; then
    NPRUN_PRELOAD=$shim
    export NPRUN_PRELOAD
    modes='plain 1 2'
    echo "real: $shim via $nprun: each case plain, then nprun -p 1 and -p 2"
else
    modes=plain
    echo "real: $shim or $nprun missing: the cases run plain only"
fi
unset LD_PRELOAD NP_PROCS NP_STACK_SIZE NP_POLLER NPDEBUG NP_DUMP_SIGNAL

if [ -n "${PYTHON:-}" ]; then
    py=$PYTHON
elif [ -x /usr/bin/python3 ]; then
    py=/usr/bin/python3
else
    py=$(command -v python3 2>/dev/null)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/real-run.XXXXXX") || exit 2
chmod 755 "$tmp"   # nginx's workers run as nobody when the master is root

passed=0
failed=0
skipped=0
groups=       # process groups of the background commands (timeout's pid)
pidfiles=     # pid files of daemons (their own sessions)
sampler=

cleanup() {
    [ -n "$sampler" ] && : > "$tmp/sampler.stop" && wait "$sampler"
    for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
    for f in $pidfiles; do
        [ -s "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

# spent MODE: true, and a failure, once the script has run for its budget
# (REAL_BUDGET seconds, 420): the runs left are not run.
t_start=$(date +%s)
spent() {
    [ $(($(date +%s) - t_start)) -lt "${REAL_BUDGET:-420}" ] && return 1
    fail "$1" "not run: the script's ${REAL_BUDGET:-420} s are spent"
    return 0
}

selected() {
    [ -z "${REAL_TESTS:-}" ] && return 0
    for s in $REAL_TESTS; do [ "$s" = "$1" ] && return 0; done
    return 1
}

# have PROGRAM...: all installed, else the case is skipped (3 runs, or 1
# without the shim) with a message.
have() {
    for p in "$@"; do
        if [ -z "$p" ] || ! command -v "$p" > /dev/null 2>&1; then
            n=$(echo "$modes" | wc -w)
            skipped=$((skipped + n))
            echo "skip $tc: ${p:-python3} not installed ($n runs)"
            return 1
        fi
    done
    return 0
}

label() {   # label MODE: "plain" or "nprun -p P"
    if [ "$1" = plain ]; then echo plain; else echo "nprun -p $1"; fi
}

ok() {   # ok MODE INFO
    passed=$((passed + 1))
    echo "ok $tc $(label "$1") ($2)"
}

# fail MODE MESSAGE LOG...: a failed run, with the end of each log.
fail() {
    failed=$((failed + 1))
    echo "FAIL $tc $(label "$1"): $2"
    shift 2
    for f in "$@"; do
        [ -s "$f" ] || continue
        echo "    --- $(basename "$f")"
        tail -n 12 "$f" | cut -c1-200 | sed 's/^/    | /'
    done
}

# start/up/stop, sample_start/sample_stop, make_tree, nginx_conf, wrk_check...
# shellcheck source=t/shim/real/lib.sh
. "$here/lib.sh"

# ---- 1. python3 -m http.server -----------------------------------------------
case_python_http() {
    have "$py" || return
    make_tree || { fail plain "cannot make the file tree"; return; }
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        # shellcheck disable=SC2046 # runner's words
        start http-server $(runner "$m") "$py" -m http.server --bind 127.0.0.1 -d "$www" "$port"
        up "$m" "$port" "$tmp/http-server.log" || continue
        sample_start "$bg"
        timeout -s KILL 90 "$py" "$here/http_client.py" "http://127.0.0.1:$port" \
            "$tmp/manifest" 300 300 > "$tmp/client.log" 2>&1
        crc=$?
        sample_stop
        stop "$bg" "$bgrp" TERM
        rps=$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")
        if [ "$crc" -ne 0 ]; then
            fail "$m" "the client failed (exit $crc)$server_note" "$tmp/client.log" "$tmp/http-server.log"
        elif [ "$rc" != 143 ]; then
            fail "$m" "the server's exit on SIGTERM: $rc, want 143 (killed by it)$server_note" \
                "$tmp/http-server.log"
        else
            ok "$m" "os_threads=$os_threads, $rps rps, 300 GETs at once"
        fi
    done
}

# ---- 2. socketserver.ThreadingTCPServer echo, 1000 connections held -----------
# hold_1000 SECONDS: echo_client.py holds 1000 connections to the server
# just started ($bg on $port), 3 rounds of checked echoes, then the server
# gets SIGTERM (stop: rc); under nprun -p M at most M + 8 OS threads may
# serve them.  Sets th, rps; false, with why, when that failed.
hold_1000() {
    timeout -s KILL "$1" "$py" "$here/echo_client.py" "$port" 1000 --hold --rounds 3 \
        --pid "$bg" > "$tmp/client.log" 2>&1
    crc=$?
    stop "$bg" "$bgrp" TERM
    th=$(sed -n 's/^os_threads=\([0-9-]*\)$/\1/p' "$tmp/client.log")
    rps=$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")
    why=
    if [ "$crc" -ne 0 ]; then
        why="the client failed (exit $crc)"
    elif [ "$m" != plain ] && { [ -z "$th" ] || [ "$th" -gt $((m + 8)) ]; }; then
        why="os_threads=${th:-missing} with 1000 connections open, want <= $((m + 8))"
    fi
    [ -z "$why" ]
}

case_python_echo() {
    have "$py" || return
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        # shellcheck disable=SC2046
        start echo-server $(runner "$m") "$py" "$here/echo_server.py" "$port"
        up "$m" "$port" "$tmp/echo-server.log" || continue
        if ! hold_1000 40; then
            fail "$m" "$why$server_note" "$tmp/client.log" "$tmp/echo-server.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "the server's exit on SIGTERM: $rc, want 0$server_note" "$tmp/echo-server.log"
        else
            ok "$m" "os_threads=$th with 1000 connections open, $rps echoes/s"
        fi
    done
}

# ---- 3. curl against a plain server --------------------------------------------
case_curl() {
    have curl nginx || return
    make_tree || { fail plain "cannot make the file tree"; return; }
    if ! plain_http; then
        fail plain "the plain nginx did not listen" "$tmp/plain-http.log" "$tmp/nginx-plain/error.log"
        return
    fi
    base=http://127.0.0.1:$hport
    files=$(awk '{print substr($0, index($0, "./") + 2)}' "$tmp/manifest" | grep -v ' ')
    nfiles=$(echo "$files" | wc -l)
    for m in $modes; do
        spent "$m" && continue
        dl=$tmp/dl-$m
        rm -rf "$dl"
        mkdir -p "$dl"
        why=
        # One fetch.
        # shellcheck disable=SC2046
        timeout -s KILL 30 $(runner "$m") curl -sS -o "$dl/one" "$base/c/with%20space.bin" \
            > "$tmp/curl.log" 2>&1 || why="one fetch: exit $?"
        want=$(grep ' \./c/with space\.bin$' "$tmp/manifest" | cut -d' ' -f1)
        got=$([ -f "$dl/one" ] && sha256sum < "$dl/one" | cut -d' ' -f1)
        [ -z "$why" ] && [ "$got" != "$want" ] && why="one fetch: wrong body"
        # Keep-alive: six URLs, one command, one connection.
        if [ -z "$why" ]; then
            set --
            : > "$tmp/ka-want"
            for f in $(echo "$files" | head -n 6); do
                k=$(($# / 3))
                set -- "$@" -o "$dl/ka$k" "$base/$f"
                awk -v f="./$f" -v o="$dl/ka$k" '$2 == f {print $1 "  " o}' "$tmp/manifest" \
                    >> "$tmp/ka-want"
            done
            # shellcheck disable=SC2046
            timeout -s KILL 30 $(runner "$m") curl -sS -w '%{num_connects}\n' "$@" \
                > "$tmp/curl.log" 2>&1 || why="keep-alive: exit $?"
            conns=$(awk '/^[0-9]+$/ {n += $1} END {print n + 0}' "$tmp/curl.log")
            if [ -z "$why" ] && ! sha256sum -c --quiet "$tmp/ka-want" >> "$tmp/curl.log" 2>&1; then
                why="keep-alive: wrong bodies"
            elif [ -z "$why" ] && [ "$conns" -ne 1 ]; then
                why="keep-alive: $conns connections for 6 URLs, want 1"
            fi
        fi
        # 100 transfers at once (--parallel --parallel-max 100).
        if [ -z "$why" ]; then
            : > "$tmp/par.cfg"
            : > "$tmp/par-want"
            i=0
            while [ $i -lt 100 ]; do
                f=$(echo "$files" | sed -n "$((i % nfiles + 1))p")
                printf 'url = "%s/%s"\noutput = "%s/p%d"\n' "$base" "$f" "$dl" $i >> "$tmp/par.cfg"
                awk -v f="./$f" -v o="$dl/p$i" '$2 == f {print $1 "  " o}' "$tmp/manifest" \
                    >> "$tmp/par-want"
                i=$((i + 1))
            done
            t0=$(now_ms)
            # shellcheck disable=SC2046
            start curl-par $(runner "$m") curl -sS --parallel --parallel-max 100 -K "$tmp/par.cfg"
            sample_start "$bg"
            finish "$bgrp" 60
            sample_stop
            t1=$(now_ms)
            cat "$tmp/curl-par.log" >> "$tmp/curl.log"
            if [ "$rc" -ne 0 ]; then
                why="--parallel: exit $rc"
            elif ! sha256sum -c --quiet "$tmp/par-want" >> "$tmp/curl.log" 2>&1; then
                why="--parallel: wrong bodies"
            fi
        fi
        if [ -n "$why" ]; then
            fail "$m" "$why" "$tmp/curl.log"
        else
            ok "$m" "os_threads=$os_threads, $(rate 100 $((t1 - t0))) rps in 100 parallel transfers; one fetch, keep-alive 6 URLs on 1 connection"
        fi
    done
    stop "$hpid" "$hgrp" TERM
}

# ---- 4. wrk as the load generator ------------------------------------------------
case_wrk() {
    have wrk nginx || return
    make_tree || { fail plain "cannot make the file tree"; return; }
    if ! plain_http; then
        fail plain "the plain nginx did not listen" "$tmp/plain-http.log" "$tmp/nginx-plain/error.log"
        return
    fi
    for m in $modes; do
        spent "$m" && continue
        # shellcheck disable=SC2046
        start wrk $(runner "$m") wrk -t2 -c100 -d3s "http://127.0.0.1:$hport/4k.bin"
        sample_start "$bg"
        sleep 0.5
        shimmed=yes
        grep -q libnetpoll-preload "/proc/$bg/maps" 2>/dev/null || shimmed=no
        finish "$bgrp" 30
        sample_stop
        wrk_check "$tmp/wrk.log"
        if [ "$m" != plain ] && [ "$shimmed" = no ]; then
            fail "$m" "wrk ran without the shim (not in /proc/$bg/maps)" "$tmp/wrk.log"
        elif [ "$rc" -ne 0 ]; then
            fail "$m" "wrk: exit $rc" "$tmp/wrk.log"
        elif [ -n "$wrk_why" ]; then
            fail "$m" "wrk: $wrk_why" "$tmp/wrk.log"
        else
            ok "$m" "os_threads=$os_threads, $wrk_rps rps against plain nginx, $wrk_reqs requests"
        fi
    done
    stop "$hpid" "$hgrp" TERM
}

# ---- 5. redis-server ---------------------------------------------------------------
redis_plain_rps=
case_redis() {
    have redis-server redis-cli redis-benchmark || return
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        rdir=$tmp/redis-$m
        mkdir -p "$rdir"
        # shellcheck disable=SC2046
        start redis $(runner "$m") redis-server --port "$port" --bind 127.0.0.1 --save '' \
            --appendonly no --dir "$rdir" --daemonize no --protected-mode no
        up "$m" "$port" "$tmp/redis.log" || continue
        cli() { timeout -s KILL 10 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>&1; }
        why=
        {
            cli SET greeting "hello world"
            cli GET greeting
            cli INCR counter
            cli INCR counter
            cli INCRBY counter 40
            cli LPUSH list a b c
            cli LRANGE list 0 -1
            cli DEL list
        } > "$tmp/redis-cli.log"
        want='OK
hello world
1
2
42
3
c
b
a
1'
        [ "$(cat "$tmp/redis-cli.log")" = "$want" ] || why="redis-cli answers differ"
        if [ -z "$why" ]; then
            sample_start "$bg"
            timeout -s KILL 60 redis-benchmark -h 127.0.0.1 -p "$port" -q -n 20000 \
                -t set,get,incr,lpush > "$tmp/bench.raw" 2>&1
            brc=$?
            sample_stop
            tr '\r' '\n' < "$tmp/bench.raw" | grep 'requests per second' > "$tmp/bench.log"
            nums=$(awk -F: '{split($2, a, " "); printf "%s%s=%.0f", sep, tolower($1), a[1]; sep=" "}' \
                "$tmp/bench.log")
            if [ "$brc" -ne 0 ] || [ "$(wc -l < "$tmp/bench.log")" -ne 4 ]; then
                why="redis-benchmark: exit $brc, $(wc -l < "$tmp/bench.log") of 4 results"
                tr '\r' '\n' < "$tmp/bench.raw" | tail -n 5 >> "$tmp/bench.log"
            fi
        fi
        stop "$bg" "$bgrp" TERM
        if [ -n "$why" ]; then
            fail "$m" "$why$server_note" "$tmp/redis-cli.log" "$tmp/bench.log" "$tmp/redis.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "redis-server's exit on SIGTERM: $rc, want 0$server_note" "$tmp/redis.log"
        elif [ "$m" = plain ]; then
            redis_plain_rps=$nums
            ok "$m" "os_threads=$os_threads, rps $nums"
        else
            ok "$m" "os_threads=$os_threads, rps $nums; plain server ${redis_plain_rps:-?}"
        fi
    done
}

# ---- 6. nginx -------------------------------------------------------------------------
case_nginx() {
    have nginx curl wrk || return
    make_tree || { fail plain "cannot make the file tree"; return; }
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        ndir=$tmp/nginx-$m
        rm -rf "$ndir"
        mkdir -p "$ndir"
        nginx_conf "$ndir" "$port" 2
        # shellcheck disable=SC2046
        start nginx $(runner "$m") nginx -p "$ndir" -e "$ndir/error.log" -c "$ndir/nginx.conf"
        up "$m" "$port" "$tmp/nginx.log" "$ndir/error.log" || continue
        why=
        fetch_tree "$ndir" "$port" # every file by curl, checked
        [ -n "$why" ] || tree_load 100
        stop_tree
        if [ -n "$why" ]; then
            fail "$m" "$why$server_note" "$tmp/curl.log" "$tmp/wrk.log" "$tmp/nginx.log" "$ndir/error.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "nginx's exit on SIGTERM: $rc, want 0$server_note" "$tmp/nginx.log" "$ndir/error.log"
        elif [ -n "$left" ]; then
            fail "$m" "workers left after the master's exit:$left" "$ndir/error.log"
        else
            ok "$m" "os_threads=$os_threads master+workers, $wrk_rps rps by plain wrk, $k files checked by curl"
        fi
    done
}

# ---- 7. Go programs, static and with cgo ------------------------------------------------
# go_build DIR SOURCE BINARY CGO: SOURCE built offline into DIR/BINARY with
# CGO_ENABLED=CGO; a failure is the case's (plain), its log in DIR.log.
go_build() {
    mkdir -p "$1"
    cp "$here/$2" "$1/main.go"
    if ! (cd "$1" && CGO_ENABLED=$4 GOCACHE=${GOCACHE:-$out/go-cache} GO111MODULE=off \
        timeout -s KILL 180 go build -o "$3" main.go) > "$1.log" 2>&1; then
        fail plain "go build (CGO_ENABLED=$4) failed" "$1.log"
        return 1
    fi
}

case_go_static() {
    have go || return
    gdir=$tmp/go
    go_build "$gdir" static_hello.go hello 0 || return
    for m in $modes; do
        spent "$m" && continue
        if [ "$m" = plain ]; then
            got=$(timeout -s KILL 10 "$gdir/hello" 2>&1)
            if [ "$got" = "hello from a static Go binary" ]; then
                ok "$m" "runs: $got"
            else
                fail "$m" "printed: $got"
            fi
            continue
        fi
        timeout -s KILL 10 "$nprun" -p "$m" -- "$gdir/hello" > "$tmp/go.out" 2> "$tmp/go.err"
        grc=$?
        if [ "$grc" -eq 2 ] && [ ! -s "$tmp/go.out" ] && grep -q 'statically linked' "$tmp/go.err"; then
            ok "$m" "refused, exit 2: $(cat "$tmp/go.err")"
        else
            fail "$m" "want exit 2 and 'statically linked', got exit $grc" "$tmp/go.err" "$tmp/go.out"
        fi
    done
}

# A Go program built with cgo: its threads come from pthread_create, and
# its runtime preempts them with SIGURG.  Under nprun the shim steps aside
# with one line, and the program runs as it does plain: goroutines in tight
# loops while the collector stops the world, then SIGTERM through
# os/signal.
case_go_cgo() {
    have go cc || return
    gdir=$tmp/gocgo
    go_build "$gdir" cgo_preempt.go cgo 1 || return
    for m in $modes; do
        spent "$m" && continue
        why=
        # shellcheck disable=SC2046
        start gocgo $(runner "$m") "$gdir/cgo"
        for _ in $(seq 200); do
            grep -q '^ready 42' "$tmp/gocgo.log" 2>/dev/null && break
            kill -0 "$bg" 2>/dev/null || break
            sleep 0.1
        done
        grep -q '^ready 42' "$tmp/gocgo.log" || why="not ready in 20 s (its loops and collections)"
        kill -TERM "$bg" 2>/dev/null
        finish "$bgrp" 10
        [ -z "$why" ] && ! grep -q '^got SIGTERM' "$tmp/gocgo.log" && why="SIGTERM not seen through os/signal (exit $rc)"
        if [ -z "$why" ] && [ "$m" != plain ] &&
            [ "$(grep -c 'netpoll-preload: Go.s runtime .*schedules its own threads' "$tmp/gocgo.log")" != 1 ]; then
            why="want one line from the shim stepping aside"
        fi
        if [ -n "$why" ]; then fail "$m" "$why" "$tmp/gocgo.log"; else ok "$m" "stepped aside; loops, collections and SIGTERM as plain"; fi
    done
}

# ---- 8. a daemon -------------------------------------------------------------------------------
case_daemon() {
    have "$CC" "$py" || return
    if ! "$CC" -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$out/daemon_echo" "$here/daemon_echo.c" \
        > "$tmp/cc.log" 2>&1; then
        fail plain "daemon_echo.c does not compile" "$tmp/cc.log"
        return
    fi
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        pf=$tmp/daemon-$m.pid
        pidfiles="$pidfiles $pf"
        # shellcheck disable=SC2046
        timeout -s KILL 20 $(runner "$m") "$out/daemon_echo" "$port" "$pf" 60 \
            > "$tmp/daemon.log" 2>&1 < /dev/null
        drc=$?
        dpid=$(cat "$pf" 2>/dev/null)
        if [ "$drc" -ne 0 ] || [ -z "$dpid" ]; then
            fail "$m" "the launch: exit $drc, pid file ${dpid:-missing}" "$tmp/daemon.log"
            continue
        fi
        if ! alive "$dpid" || ! listening "$port"; then
            fail "$m" "the daemon ($dpid) is not running, or not listening on $port"
            kill -KILL "$dpid" 2>/dev/null
            continue
        fi
        fds=$(find "/proc/$dpid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        timeout -s KILL 40 "$py" "$here/echo_client.py" "$port" 300 --hold --rounds 3 \
            --pid "$dpid" > "$tmp/client.log" 2>&1
        crc=$?
        th=$(sed -n 's/^os_threads=\([0-9-]*\)$/\1/p' "$tmp/client.log")
        rps=$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")
        server_note=
        alive "$dpid" || server_note="; the daemon had ended before the SIGTERM"
        kill -TERM "$(cat "$pf")"
        i=0
        while alive "$dpid" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
        if alive "$dpid"; then
            dead="still running 5 s after SIGTERM to the pid in its pid file ($(grep -E '^(State|SigBlk|SigIgn|SigCgt):' "/proc/$dpid/status" | tr -s '\t\n' '  '))"
            kill -KILL "$dpid" 2>/dev/null
        else
            dead=
        fi
        if [ "$crc" -ne 0 ]; then
            fail "$m" "the client failed (exit $crc)$server_note" "$tmp/client.log"
        elif [ -n "$dead" ]; then
            fail "$m" "$dead"
        else
            ok "$m" "os_threads=$th with 300 connections open, $rps echoes/s, $fds descriptors after closing all, ended by SIGTERM via its pid file"
        fi
    done
}

# ---- 9. a child per connection -------------------------------------------------------------------
case_fork() {
    have "$CC" "$py" || return
    if ! "$CC" -std=c11 -D_GNU_SOURCE -O2 -o "$out/fork_echo" "$here/fork_echo.c" \
        > "$tmp/cc.log" 2>&1; then
        fail plain "fork_echo.c does not compile" "$tmp/cc.log"
        return
    fi
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        # shellcheck disable=SC2046
        start fork $(runner "$m") "$out/fork_echo" "$port" 60
        up "$m" "$port" "$tmp/fork.log" || continue
        why=
        timeout -s KILL 40 "$py" "$here/echo_client.py" "$port" 200 --hold --rounds 2 \
            --pid "$bg" > "$tmp/client.log" 2>&1 || why="the client (200 held) failed"
        kids=$(sed -n 's/^children=\([0-9-]*\)$/\1/p' "$tmp/client.log")
        if [ -z "$why" ]; then
            sample_start "$bg"
            timeout -s KILL 40 "$py" "$here/echo_client.py" "$port" 400 --concurrency 20 \
                --rounds 3 >> "$tmp/client.log" 2>&1 || why="the client (400, 20 at once) failed"
            sample_stop
        fi
        rps=$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log" | tail -n 1)
        # Reaped: no child left a moment after the last peer closed.
        i=0
        while [ -n "$(cat /proc/"$bg"/task/*/children 2>/dev/null)" ] && [ $i -lt 60 ]; do
            sleep 0.05
            i=$((i + 1))
        done
        left=$(cat /proc/"$bg"/task/*/children 2>/dev/null | wc -w)
        zombies=0
        # shellcheck disable=SC2013 # pids, one word each
        for c in $(cat /proc/"$bg"/task/*/children 2>/dev/null); do
            alive "$c" || zombies=$((zombies + 1))
        done
        stop "$bg" "$bgrp" TERM
        if [ -n "$why" ]; then
            fail "$m" "$why$server_note" "$tmp/client.log" "$tmp/fork.log"
        elif [ "$left" -ne 0 ]; then
            fail "$m" "$left children ($zombies zombies) 3 s after the clients closed" "$tmp/fork.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "exit on SIGTERM: $rc, want 0 (SIGTERM without SA_RESTART: accept returns EINTR, the loop ends)$server_note" \
                "$tmp/fork.log"
        else
            ok "$m" "os_threads=$os_threads, children=$kids with 200 connections open, $rps echoes/s, all reaped"
        fi
    done
}

# ---- 10. C++ thread pool ------------------------------------------------------------------------
case_cxx_pool() {
    have "$CXX" "$py" || return
    if ! "$CXX" -std=c++20 -O2 -pthread -o "$out/pool_echo" "$here/pool_echo.cpp" \
        > "$tmp/cc.log" 2>&1; then
        fail plain "pool_echo.cpp does not compile" "$tmp/cc.log"
        return
    fi
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        # shellcheck disable=SC2046
        start pool $(runner "$m") "$out/pool_echo" "$port" 8 60
        up "$m" "$port" "$tmp/pool.log" || continue
        sample_start "$bg"
        timeout -s KILL 40 "$py" "$here/echo_client.py" "$port" 500 --concurrency 32 \
            --rounds 5 > "$tmp/client.log" 2>&1
        crc=$?
        sample_stop
        rps=$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")
        stop "$bg" "$bgrp" TERM
        served=$(sed -n 's/^served=\([0-9]*\)$/\1/p' "$tmp/pool.log")
        if [ "$crc" -ne 0 ]; then
            fail "$m" "the client failed (exit $crc)$server_note" "$tmp/client.log" "$tmp/pool.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "exit on SIGTERM: $rc, want 0$server_note" "$tmp/pool.log"
        elif [ "$served" != 500 ]; then
            fail "$m" "served=${served:-missing}, want 500" "$tmp/pool.log"
        else
            ok "$m" "os_threads=$os_threads, $rps echoes/s, 500 connections 32 at once on 8 workers"
        fi
    done
}

# node (libuv): one epoll event loop, fs and crypto in its pool of threads,
# which hand results back through an eventfd.
case_node() {
    have node "$py" || return
    make_tree || { fail plain "cannot make the file tree"; return; }
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        # shellcheck disable=SC2046
        start node $(runner "$m") node "$here/node_server.js" "$port" "$www"
        up "$m" "$port" "$tmp/node.log" || continue
        sample_start "$bg"
        timeout -s KILL 60 "$py" "$here/node_client.py" "$port" "$www" 25 > "$tmp/client.log" 2>&1
        crc=$?
        sample_stop
        stop "$bg" "$bgrp" TERM
        rps=$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")
        if [ "$crc" -ne 0 ]; then
            fail "$m" "the client failed (exit $crc)$server_note" "$tmp/client.log" "$tmp/node.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "exit on SIGTERM: $rc, want 0$server_note" "$tmp/node.log"
        else
            ok "$m" "os_threads=$os_threads, $rps rps, files and pbkdf2 keys from 40 clients, all right"
        fi
    done
}

# Python's multiprocessing: forked workers, handler threads that poll in a
# loop until another thread drains a pipe (they must give way).
case_python_mp() {
    have "$py" || return
    for m in $modes; do
        spent "$m" && continue
        # shellcheck disable=SC2046 # the runner's words
        timeout -s KILL 60 $(runner "$m") "$py" "$here/mp_pool.py" > "$tmp/mp.out" 2>&1
        rc=$?
        if [ "$rc" -eq 0 ] && grep -q 'all answers right' "$tmp/mp.out"; then
            ok "$m" "Pool.map, ProcessPoolExecutor, Process + Queue"
        else
            fail "$m" "exit $rc" "$tmp/mp.out"
        fi
    done
}

# ---- 13. MariaDB: a thread per connection --------------------------------------------------------
# mariadbd (one-thread-per-connection, InnoDB) on a fresh data directory;
# mariadb-slap (plain) drives 200 connections of generated mixed SQL, then
# 50 connections run 2000 transactions of two inserts and an update (by
# LAST_INSERT_ID, the connection's own), whose rows and sum must come back
# exact.
case_mariadb() {
    have mariadbd mariadb-install-db mariadb mariadb-slap || return
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        data=$tmp/mariadb-$m
        mariadb_data "$data" || { fail "$m" "mariadb-install-db failed" "$tmp/install-db.log"; return; }
        mariadb_start "$m" "$data" "$port"
        up "$m" "$port" "$tmp/mariadb.log" "$data/$(hostname).err" || continue
        sql() { timeout -s KILL 30 mariadb --no-defaults -h 127.0.0.1 -P "$port" -u root -N -B "$@" 2>&1; }
        why=
        sql -e 'CREATE DATABASE t; CREATE TABLE t.acct (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB' \
            > "$tmp/sql.log" || why="CREATE failed"
        if [ -z "$why" ]; then
            sample_start "$bg"
            t0=$(now_ms)
            mariadb_slap "$port" --concurrency=200 --iterations=1 --number-of-queries=20000 \
                --auto-generate-sql --auto-generate-sql-load-type=mixed --auto-generate-sql-add-autoincrement \
                > "$tmp/slap.log" 2>&1 || why="mariadb-slap (200 connections) failed"
            ms=$(($(now_ms) - t0))
            [ -n "$why" ] || mariadb_slap "$port" --create-schema=t --concurrency=50 --iterations=1 \
                --number-of-queries=10000 --delimiter=';' \
                --query='BEGIN; INSERT INTO acct (v) VALUES (3); INSERT INTO acct (v) VALUES (4); UPDATE acct SET v = v + 1 WHERE id = LAST_INSERT_ID(); COMMIT' \
                >> "$tmp/slap.log" 2>&1 || why="mariadb-slap (50 writers) failed"
            sample_stop
        fi
        got=$(sql -e 'SELECT COUNT(*), SUM(v) FROM t.acct' | tr '\t' ' ')
        [ -n "$why" ] || [ "$got" = "4000 16000" ] || why="50 writers: rows and sum '$got', want '4000 16000'"
        stop "$bg" "$bgrp" TERM
        if [ -n "$why" ]; then
            fail "$m" "$why$server_note" "$tmp/slap.log" "$tmp/sql.log" "$data/$(hostname).err" "$tmp/mariadb.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "exit on SIGTERM: $rc, want 0$server_note" "$data/$(hostname).err" "$tmp/mariadb.log"
        else
            ok "$m" "os_threads=$os_threads, $(rate 20000 "$ms") queries/s from 200 connections; 50 writers exact"
        fi
    done
}

# ---- 14. Apache httpd, mpm_worker: a thread per connection in each child ----------------------
# Two children of 128 threads (each connection held by one thread for its
# life, in blocking calls); every file of the tree by curl, checked; wrk
# with 200 keep-alive connections; a graceful restart (SIGUSR1: new
# children) and the tree again; SIGTERM ends the master and every child.
apache_tree() { # apache_tree TAG: the tree, checked; why names the fetch
    fetch_tree "$adir" "$port"
    [ -z "$why" ] || why="$why ($1)"
}
case_apache() {
    have apache2 curl wrk || return
    make_tree || { fail plain "cannot make the file tree"; return; }
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        adir=$tmp/apache-$m
        rm -rf "$adir"
        mkdir -p "$adir"
        apache_conf "$adir" "$port"
        apache_start "$m" "$adir"
        up "$m" "$port" "$tmp/apache.log" "$adir/error.log" || continue
        why=
        apache_tree first
        [ -n "$why" ] || tree_load 200
        if [ -z "$why" ]; then
            old=$(cat /proc/"$bg"/task/*/children 2>/dev/null)
            kill -USR1 "$bg" 2>/dev/null
            # New children: none of the old ones left, and they serve.
            i=0
            while [ $i -lt 100 ]; do
                now=$(cat /proc/"$bg"/task/*/children 2>/dev/null)
                gone=1
                for c in $old; do case " $now " in *" $c "*) gone=0 ;; esac; done
                [ $gone = 1 ] && [ -n "$now" ] && break
                sleep 0.1
                i=$((i + 1))
            done
            [ $i -lt 100 ] || why="graceful restart: the old children stayed ($old; now $now)"
            [ -n "$why" ] || apache_tree "after a graceful restart"
        fi
        stop_tree
        if [ -n "$why" ]; then
            fail "$m" "$why$server_note" "$tmp/curl.log" "$tmp/wrk.log" "$tmp/apache.log" "$adir/error.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "exit on SIGTERM: $rc, want 0$server_note" "$tmp/apache.log" "$adir/error.log"
        elif [ -n "$left" ]; then
            fail "$m" "children left after the master's exit:$left" "$adir/error.log"
        else
            ok "$m" "os_threads=$os_threads master+children, $wrk_rps rps by plain wrk, $k files checked twice (a graceful restart between)"
        fi
    done
}

# ---- 15. Java: a java.lang.Thread per connection --------------------------------------------------
# EchoServer.java on the JVM (its GC, JIT and signal-dispatcher threads
# green too): 1000 connections held, checksummed echoes, OS threads
# counted as for python-echo; SIGTERM runs its shutdown hook and ends it
# with 143, as plain.
case_java() {
    have java javac "$py" || return
    if ! timeout -s KILL 120 javac -d "$out" "$here/EchoServer.java" > "$tmp/javac.log" 2>&1; then
        fail plain "EchoServer.java does not compile" "$tmp/javac.log"
        return
    fi
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        # shellcheck disable=SC2046
        start java $(runner "$m") java -Xss256k -Djava.net.preferIPv4Stack=true -cp "$out" EchoServer "$port"
        up "$m" "$port" "$tmp/java.log" || continue
        if ! hold_1000 60; then
            fail "$m" "$why$server_note" "$tmp/client.log" "$tmp/java.log"
        elif [ "$rc" != 143 ] || ! grep -q 'shutting down' "$tmp/java.log"; then
            fail "$m" "exit on SIGTERM: $rc, want 143 after the shutdown hook$server_note" "$tmp/java.log"
        else
            ok "$m" "os_threads=$th with 1000 connections open, $rps echoes/s, shutdown hook on SIGTERM"
        fi
    done
}

# ---- 16. PostgreSQL: a process per connection ----------------------------------------------------
# The postmaster forks a backend per connection (and its helpers and the
# parallel query workers); the backends share memory, wait on semaphores
# there and wake each other with SIGURG through a signalfd.  pgbench's
# TPC-B from 20 connections, checked by its own invariant (the balances
# of accounts, tellers and branches and the history all sum the same; one
# history row per transaction); a query run by parallel workers; SIGINT
# (fast shutdown) ends it with 0.  It refuses to run as root: as root, it
# runs as postgres, with a copy of the shim that user can read.
case_postgres() {
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    have "$pgbin/postgres" "$pgbin/initdb" "$pgbin/pgbench" "$pgbin/psql" "$pgbin/pg_isready" || return
    as=
    pg_nprun=$nprun
    if [ "$(id -u)" = 0 ]; then
        as="setpriv --reuid=postgres --regid=postgres --init-groups --"
        mkdir -p "$tmp/pgshim/bin" "$tmp/pgshim/lib"
        cp "$nprun" "$tmp/pgshim/bin/" 2> /dev/null
        cp -a "$build"/lib/libnetpoll* "$tmp/pgshim/lib/" 2> /dev/null
        chmod -R a+rX "$tmp/pgshim"
        pg_nprun=$tmp/pgshim/bin/nprun
    fi
    if [ ! -d "$tmp/pg-seed" ]; then
        mkdir -p "$tmp/pg-seed" && { [ -z "$as" ] || chown postgres "$tmp/pg-seed"; }
        # shellcheck disable=SC2086 # as's words
        timeout -s KILL 60 $as "$pgbin/initdb" -D "$tmp/pg-seed" -U postgres --auth=trust > "$tmp/initdb.log" 2>&1 || {
            fail plain "initdb failed" "$tmp/initdb.log"
            return
        }
    fi
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        data=$tmp/pg-$m
        rm -rf "$data"
        cp -a "$tmp/pg-seed" "$data"
        run=
        [ "$m" = plain ] || run="$pg_nprun -p $m --"
        [ -z "$as" ] || NPRUN_PRELOAD=$tmp/pgshim/lib/libnetpoll-preload.so
        # shellcheck disable=SC2086
        start postgres $as $run "$pgbin/postgres" -D "$data" \
            -p "$port" -k "$data" -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off
        NPRUN_PRELOAD=$shim
        up "$m" "$port" "$tmp/postgres.log" || continue
        pg() {
            pgc=$1
            shift
            timeout -s KILL 60 "$pgbin/$pgc" -h 127.0.0.1 -p "$port" -U postgres "$@" 2>&1
        }
        pgsql() { pg psql -X -A -t -q -d postgres "$@"; }
        why=
        i=0 # it listens before its start-up process is done
        while ! pg pg_isready -q && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
        pg pgbench -i -s 1 postgres > "$tmp/pgbench.log" || why="pgbench -i failed"
        if [ -z "$why" ]; then
            sample_start "$bg"
            t0=$(now_ms)
            pg pgbench -c 20 -j 2 -t 100 postgres >> "$tmp/pgbench.log" || why="pgbench (20 connections) failed"
            ms=$(($(now_ms) - t0))
            sample_stop
        fi
        conn=$(sed -n 's/^initial connection time = \([0-9]*\).*/\1/p' "$tmp/pgbench.log")
        [ -n "$why" ] || [ "${conn:-99999}" -lt 10000 ] || why="20 connections took ${conn:-?} ms to open"
        sums=$(pgsql -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
            (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) FROM pgbench_history),
            (SELECT count(*) FROM pgbench_history)" | tr '|' ' ')
        set -- $sums
        [ -n "$why" ] || { [ $# = 5 ] && [ "$1" = "$2" ] && [ "$1" = "$3" ] && [ "$1" = "$4" ] && [ "$5" = 2000 ]; } ||
            why="TPC-B sums (accounts, tellers, branches, history; rows) '$sums', want four equal and 2000"
        par=$(pgsql -c "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
            EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM pgbench_accounts;
            SELECT count(*) FROM pgbench_accounts" | tr '\n' ' ')
        [ -n "$why" ] || { echo "$par" | grep -q 'Workers Launched: [1-9]' && echo "$par" | grep -q ' 100000 *$'; } ||
            why="parallel count: '$par'"
        stop "$bg" "$bgrp" INT
        if [ -n "$why" ]; then
            fail "$m" "$why$server_note" "$tmp/pgbench.log" "$tmp/postgres.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "exit on SIGINT: $rc, want 0$server_note" "$tmp/postgres.log"
        else
            ok "$m" "os_threads=$os_threads, $(rate 2000 "$ms") transactions/s from 20 connections opened in $conn ms; sums equal; parallel workers"
        fi
    done
}

# ---- 17. GNU make -j: a job server ----------------------------------------------------------------
# make -j8 runs 40 jobs of 0.1 s and a recursive make of 20 more that
# shares its job server: make waits for its children's SIGCHLD in pselect
# with the signal unblocked only there, and reads job tokens from a pipe
# that its sub-make reads too.  Every target made, in well under the 6 s
# the jobs take one after another.
case_make() {
    have make || return
    mk=$tmp/make
    mkdir -p "$mk/sub"
    printf '%s\n' '.PHONY: all sub' 'all: $(addprefix t,$(shell seq 1 40)) sub' \
        't%:' '	@sleep 0.1; echo $@ > $@.out' 'sub:' '	@$(MAKE) -s -C sub' > "$mk/Makefile"
    printf '%s\n' 'all: $(addprefix s,$(shell seq 1 20))' \
        's%:' '	@sleep 0.1; echo $@ > $@.out' > "$mk/sub/Makefile"
    for m in $modes; do
        spent "$m" && continue
        rm -f "$mk"/*.out "$mk"/sub/*.out
        t0=$(now_ms)
        # shellcheck disable=SC2046
        timeout -s KILL 30 $(runner "$m") make -s -j8 -C "$mk" > "$tmp/make.log" 2>&1
        rc=$?
        ms=$(($(now_ms) - t0))
        made=$(ls "$mk"/*.out "$mk"/sub/*.out 2>/dev/null | wc -l)
        if [ "$rc" != 0 ]; then
            fail "$m" "make -j8: $(describe "$rc") after $ms ms, $made of 60 targets made" "$tmp/make.log"
        elif [ "$made" != 60 ]; then
            fail "$m" "make -j8: $made of 60 targets made" "$tmp/make.log"
        elif [ "$ms" -ge 4000 ]; then
            fail "$m" "make -j8: $ms ms for 60 jobs of 0.1 s, 8 at a time" "$tmp/make.log"
        else
            ok "$m" "60 jobs of 0.1 s, 8 at a time, in $ms ms"
        fi
    done
}

# ---- Ctrl-C: programs that compute, and the shell ----------------------------
# SIGINT to gzip compressing (its handler removes the half-made output and
# exits 130), to python computing in a loop (its handler exits 7),
# and to dash waiting for a child with a trap set (it unblocks with
# sigsetmask).  None of them makes a call the library sees while it
# computes: the handler must interrupt it where it is.
case_interrupt() {
    have gzip "$py" || return
    head -c 100000000 /dev/urandom > "$tmp/big" 2>/dev/null
    for m in $modes; do
        spent "$m" && continue
        why=
        rm -f "$tmp/big.gz"
        # shellcheck disable=SC2046
        start gzip $(runner "$m") gzip -k -f "$tmp/big"
        sleep 0.5
        kill -INT "$bg"
        finish "$bgrp" 10
        if [ "$rc" != 130 ] || [ -e "$tmp/big.gz" ]; then
            why="gzip: $(describe "$rc"), want 130$([ -e "$tmp/big.gz" ] && echo ', its output left')"
        fi
        # shellcheck disable=SC2046
        start py-loop $(runner "$m") "$py" -c 'import signal, sys
signal.signal(signal.SIGINT, lambda *a: sys.exit(7))
while True: pass'
        sleep 0.5
        kill -INT "$bg"
        finish "$bgrp" 10
        [ "$rc" = 7 ] || why="${why:+$why; }python's loop: $(describe "$rc"), want 7 (its handler)"
        t0=$(now_ms)
        # shellcheck disable=SC2046
        start sh-trap $(runner "$m") sh -c 'trap "exit 5" INT; sleep 5 & wait'
        sleep 0.5
        kill -INT "$bg"
        finish "$bgrp" 10
        ms=$(($(now_ms) - t0))
        if [ "$rc" != 5 ] || [ "$ms" -ge 4000 ]; then
            why="${why:+$why; }sh's trap: $(describe "$rc") after $ms ms, want 5 at once"
        fi
        if [ -n "$why" ]; then
            fail "$m" "$why" "$tmp/gzip.log" "$tmp/py-loop.log"
        else
            ok "$m" "SIGINT ends gzip (its output removed), python's loop and sh's wait"
        fi
    done
    rm -f "$tmp/big" "$tmp/big.gz"
}

# ---- haproxy, master and worker (-W) ------------------------------------------
# The master re-executes itself with its signals blocked and unblocks them
# in the new image; SIGUSR2 reloads (a new worker, the old one soft-stops),
# SIGTERM stops the workers and the master waits for them (SIGCHLD).
# The master takes its signals only once it runs its loop, well after it
# logs "Loading success": a SIGUSR2 sent before is lost, plain too (2 runs
# in 10 on a loaded machine). Its CLI (-S) answers only from that loop.
# Lists the processes on the master's CLI; ends 0 once the master is there.
haproxy_cli_up='
import socket, sys, time
end = time.time() + 15
while time.time() < end:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(sys.argv[1])
        s.sendall(b"show proc\n")
        out = b""
        while b"# programs" not in out:
            d = s.recv(4096)
            if not d:
                break
            out += d
        if b" master " in out:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
'
case_haproxy() {
    have haproxy curl "$py" || return
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        printf '%s\n' global '    nbthread 2' defaults '    mode http' '    timeout connect 5s' \
            '    timeout client 30s' '    timeout server 30s' 'frontend fe' "    bind 127.0.0.1:$port" \
            '    http-request return status 200 content-type text/plain string haproxy-ok' > "$tmp/haproxy.cfg"
        # shellcheck disable=SC2046
        rm -f "$tmp/haproxy.sock"
        start haproxy $(runner "$m") haproxy -W -db -S "$tmp/haproxy.sock" -f "$tmp/haproxy.cfg"
        up "$m" "$port" "$tmp/haproxy.log" || continue
        got=$(timeout -s KILL 10 curl -s "http://127.0.0.1:$port/")
        if ! timeout -s KILL 20 "$py" -c "$haproxy_cli_up" "$tmp/haproxy.sock"; then
            stop "$bg" "$bgrp" TERM
            fail "$m" "the master's CLI never listed it" "$tmp/haproxy.log"
            continue
        fi
        kill -USR2 "$bg"
        i=0
        while ! grep -q 'Reloading HAProxy' "$tmp/haproxy.log" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
        sleep 0.5
        again=$(timeout -s KILL 10 curl -s "http://127.0.0.1:$port/")
        # The reload executes the master again: its SIGTERM is its own only
        # once it runs its loop, as at the start (a SIGTERM before kills it,
        # plain too).
        timeout -s KILL 20 "$py" -c "$haproxy_cli_up" "$tmp/haproxy.sock"
        workers=$(cat /proc/"$bg"/task/*/children 2>/dev/null | wc -w)
        stop "$bg" "$bgrp" TERM
        if [ "$got" != haproxy-ok ] || [ "$again" != haproxy-ok ]; then
            fail "$m" "answers before and after the reload: '$got', '$again'" "$tmp/haproxy.log"
        elif ! grep -q 'Reloading HAProxy' "$tmp/haproxy.log"; then
            fail "$m" "SIGUSR2: no reload (the master's signals stayed blocked?)" "$tmp/haproxy.log"
        elif [ "$rc" != 0 ]; then
            fail "$m" "SIGTERM: the master ended with $(describe "$rc")$server_note" "$tmp/haproxy.log"
        else
            ok "$m" "answers, reload on SIGUSR2 ($workers workers after it), stop on SIGTERM"
        fi
    done
}

# ---- ruby: threads blocked on one file, then exit ----------------------------
# exit kills the other threads (Thread#kill: ruby interrupts each blocked
# call with a signal, again and again until it ends), here 3 readers of one
# pipe and 4 accepting threads on one listener.
case_ruby() {
    have ruby || return
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        t0=$(now_ms)
        # shellcheck disable=SC2046
        timeout -s KILL 20 $(runner "$m") ruby -rsocket -e "
            r, w = IO.pipe
            3.times { Thread.new { r.read(1) } }
            s = TCPServer.new('127.0.0.1', $port)
            4.times { Thread.new { loop { s.accept.close } } }
            q = Queue.new
            t = Thread.new { q.pop }
            sleep 0.2
            c = TCPSocket.new('127.0.0.1', $port); c.close
            sleep 0.1
            exit 7" > "$tmp/ruby.log" 2>&1
        rc=$?
        ms=$(($(now_ms) - t0))
        if [ "$rc" != 7 ]; then
            fail "$m" "exit 7 with threads blocked on a pipe, a listener and a queue: $(describe "$rc") after $ms ms" \
                "$tmp/ruby.log"
        elif [ "$ms" -ge 10000 ]; then
            fail "$m" "exit took $ms ms" "$tmp/ruby.log"
        else
            ok "$m" "exit with 8 threads blocked on one pipe, one listener and a queue, in $ms ms"
        fi
    done
}

# A program linked with tcmalloc (swipl is): tcmalloc's first allocation
# calls pthread_once from its sbrk hook holding its spin lock, and the
# shim's start-up runs there.  It must allocate nothing (a failed dlsym
# mallocs its error message: tcmalloc's lock, for ever).
case_tcmalloc() {
    have "$CC" || return
    lib=$(ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 2>/dev/null | head -n 1)
    if [ -z "$lib" ]; then
        n=$(echo "$modes" | wc -w)
        skipped=$((skipped + n))
        echo "skip $tc: libtcmalloc-minimal4 not installed ($n runs)"
        return
    fi
    printf '%s\n' '#include <pthread.h>' '#include <stdio.h>' '#include <stdlib.h>' \
        'static void *run(void *a) { char *p = malloc(64); snprintf(p, 64, "ok %ld", (long)a); return p; }' \
        'int main(void) { char *p = malloc(100); pthread_t t; void *r;' \
        '  if (!p || pthread_create(&t, NULL, run, (void *)7L) || pthread_join(t, &r)) return 1;' \
        '  puts(r); free(r); free(p); return 0; }' > "$tmp/tcm.c"
    if ! "$CC" -O2 -pthread -o "$out/tcmalloc_hello" "$tmp/tcm.c" "$lib" > "$tmp/cc.log" 2>&1; then
        fail plain "a program linked with tcmalloc does not build" "$tmp/cc.log"
        return
    fi
    for m in $modes; do
        spent "$m" && continue
        # shellcheck disable=SC2046
        got=$(timeout -s KILL 10 $(runner "$m") "$out/tcmalloc_hello" 2> "$tmp/tcm.err")
        trc=$?
        if [ "$trc" = 0 ] && [ "$got" = "ok 7" ]; then
            ok "$m" "starts and runs a thread with tcmalloc as its malloc"
        else
            fail "$m" "printed '$got', $(describe "$trc")" "$tmp/tcm.err"
        fi
    done
}

# ---- unshare -U: a single-threaded process's user namespace ---------------
# The kernel makes a new user namespace only for a process with one thread
# (EINVAL otherwise): unshare(1) makes none, and under nprun must have
# none either.  Skipped where the machine refuses user namespaces plain.
case_unshare() {
    have unshare || return
    for m in $modes; do
        spent "$m" && continue
        # shellcheck disable=SC2046
        got=$(timeout -s KILL 10 $(runner "$m") unshare -Ur sh -c 'id -u; cat /proc/self/uid_map' 2> "$tmp/unshare.err")
        urc=$?
        if [ "$m" = plain ] && [ "$urc" != 0 ]; then
            echo "skip $tc: unshare -U refused here plain ($(head -n 1 "$tmp/unshare.err"))"
            skipped=$((skipped + 1))
            return
        fi
        if [ "$urc" = 0 ] && [ "$(echo "$got" | head -n 1)" = 0 ]; then
            ok "$m" "unshare -Ur: root in a new user namespace"
        else
            fail "$m" "unshare -Ur printed '$got', $(describe "$urc")" "$tmp/unshare.err"
        fi
    done
}

for tc in python-http python-echo python-mp curl wrk redis nginx go-static go-cgo daemon fork cxx-pool node mariadb apache java postgres make haproxy ruby tcmalloc interrupt unshare; do
    selected "$tc" || continue
    "case_$(echo "$tc" | tr - _)"
done

echo "real: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

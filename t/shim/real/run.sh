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
#
# Servers get SIGTERM at the end and must exit as they do plain (the status
# is checked). A case whose program is not installed is skipped. Everything
# listens on 127.0.0.1 on free ports; every process runs under timeout -s KILL
# in a process group that the script kills on its way out (the daemon, in a
# session of its own, through its pid file; it also ends itself after 60 s).
#
# Prints "real: N passed, M failed, K skipped" last; exits 1 on a failure.
# Every command has a time limit, and the script a budget: the runs left
# when it has run for REAL_BUDGET seconds (240) fail unrun.
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
# (REAL_BUDGET seconds, 240): the runs left are not run.
t_start=$(date +%s)
spent() {
    [ $(($(date +%s) - t_start)) -lt "${REAL_BUDGET:-240}" ] && return 1
    fail "$1" "not run: the script's ${REAL_BUDGET:-240} s are spent"
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

# runner MODE: the words that run a command in MODE.
runner() {
    if [ "$1" = plain ]; then echo ""; else echo "$nprun -p $1 --"; fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }'; }

# free_port: a port nothing uses on this machine, below the ephemeral range.
free_port() {
    while :; do
        p=$(od -An -N2 -tu2 /dev/urandom | awk '{print 20000 + $1 % 12000}')
        hex=$(printf '%04X' "$p")
        if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
            awk -v h=":$hex" '$2 ~ h"$" || $3 ~ h"$" {f = 1} END {exit !f}'; then
            echo "$p"
            return
        fi
    done
}

# alive PID: the process exists and is no zombie.
alive() {
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# listening PORT: something listens on 127.0.0.1:PORT.
listening() {
    hex=$(printf '%04X' "$1")
    awk -v a="0100007F:$hex" '$2 == a && $4 == "0A" {f = 1} END {exit !f}' /proc/net/tcp
}

# start NAME CMD...: runs CMD in the background, in a process group of its
# own, killed after 90 s, output in $tmp/NAME.log. Sets bg (its pid, which is
# CMD's own after nprun's exec) and bgrp (the group, timeout's pid).
start() {
    name=$1
    shift
    rm -f "$tmp/$name.pid"
    # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
    timeout -s KILL 90 sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
        "$tmp/$name.pid" "$@" < /dev/null > "$tmp/$name.log" 2>&1 &
    bgrp=$!
    groups="$groups $bgrp"
    i=0
    while [ ! -s "$tmp/$name.pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    bg=$(cat "$tmp/$name.pid" 2>/dev/null)
}

# wait_listen PORT PID [SECONDS]: until PID listens on PORT; 1 if it died or
# took longer than SECONDS (10).
wait_listen() {
    i=0
    while ! listening "$1"; do
        alive "$2" || return 1
        [ $i -ge $((${3:-10} * 20)) ] && return 1
        sleep 0.05
        i=$((i + 1))
    done
}

# up MODE PORT LOG...: the server of the last start listens on PORT and, under
# nprun, has the shim mapped; else a failure (with the LOGs), its group killed.
up() {
    if ! wait_listen "$2" "$bg" 20; then
        upwhy="it did not listen on port $2"
    elif [ "$1" != plain ] && ! grep -q libnetpoll-preload "/proc/$bg/maps" 2>/dev/null; then
        upwhy="it runs without the shim (not in /proc/$bg/maps)"
    else
        return 0
    fi
    upmode=$1
    shift 2
    fail "$upmode" "$upwhy" "$@"
    kill -s KILL -- "-$bgrp" 2>/dev/null
    return 1
}

# finish GROUP SECONDS: waits for the background command to end by itself;
# sets rc (124 when it had to be killed).
finish() {
    i=0
    while [ -d "/proc/$1" ] && alive "$1"; do
        if [ $i -ge $(($2 * 20)) ]; then
            kill -s KILL -- "-$1" 2>/dev/null
            wait "$1" 2>/dev/null
            rc=124
            return
        fi
        sleep 0.05
        i=$((i + 1))
    done
    wait "$1"
    rc=$?
}

# describe STATUS: "exit status N" or "killed by SIGNAME".
describe() {
    if [ "$1" -gt 128 ] 2>/dev/null; then
        echo "killed by SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"
    else
        echo "exit status $1"
    fi
}

# stop PID GROUP SIGNAL: sends SIGNAL to the server and waits up to 10 s for
# it to end; sets rc (its exit status as the shell reports it), or
# rc=timeout after killing its group. When the server had already ended,
# server_note says how (for the failure messages), else it is empty.
stop() {
    server_note=
    if ! alive "$1"; then
        finish "$2" 10
        server_note="; the server had ended before the SIGTERM, $(describe "$rc")"
        kill -s KILL -- "-$2" 2>/dev/null
        return
    fi
    kill "-$3" "$1" 2>/dev/null
    i=0
    while alive "$1"; do
        if [ $i -ge 200 ]; then
            kill -s KILL -- "-$2" 2>/dev/null
            wait "$2" 2>/dev/null
            rc=timeout
            return
        fi
        sleep 0.05
        i=$((i + 1))
    done
    finish "$2" 10
    kill -s KILL -- "-$2" 2>/dev/null   # anything left in the group
}

# threads_of PID [tree]: "STARTTIME THREADS": the start time of PID (to
# tell it from a later process with its number) and the Threads: of PID, and
# of its children with tree; nothing once PID has ended.
threads_of() {
    tp=$1
    [ "${2:-}" = tree ] && tp="$tp $(cat /proc/"$1"/task/*/children 2>/dev/null)"
    { cat "/proc/$1/stat" && for q in $tp; do cat "/proc/$q/status"; done; } 2>/dev/null |
        awk 'NR == 1 {st = $22} /^Threads:/ {n += $2} END {if (st != "") print st, n + 0}'
}

# sample_start PID [tree] / sample_stop: the largest Threads: of PID (with
# its children with tree) while the sampler ran, in os_threads ("?" when PID
# ended before a look). The sampler ends when told to (by a file: a signal
# can be lost between fork and the subshell's own handlers), when PID ends,
# or after 120 s.
sample_start() {
    echo '?' > "$tmp/threads"   # when PID ended before a look
    rm -f "$tmp/sampler.stop"
    (
        first=$(threads_of "$1" "${2:-}")
        st0=${first% *}
        max=${first#* }
        [ -n "$first" ] && echo "$max" > "$tmp/threads"
        i=0
        while [ -n "$first" ] && [ ! -f "$tmp/sampler.stop" ] && [ $i -lt 2400 ]; do
            now=$(threads_of "$1" "${2:-}")
            [ "${now% *}" = "$st0" ] || break
            n=${now#* }
            if [ "$n" -gt "$max" ]; then
                max=$n
                echo "$max" > "$tmp/threads"
            fi
            sleep 0.05
            i=$((i + 1))
        done
    ) &
    sampler=$!
}
sample_stop() {
    : > "$tmp/sampler.stop"
    wait "$sampler" 2>/dev/null
    sampler=
    os_threads=$(cat "$tmp/threads")
}

# A file tree to serve: sizes from 0 to 300 kB, a name with a space, and
# its manifest (sha256sum lines, ./path).
www=$tmp/www
make_tree() {
    [ -f "$tmp/manifest" ] && return 0
    mkdir -p "$www/a/b" "$www/c" || return 1
    i=0
    for size in 0 1 13 100 512 1000 1460 4096 4097 8192 10000 16384 32768 65535 65536 \
        70000 100000 131072 200000 300001; do
        case $((i % 3)) in 0) d=$www ;; 1) d=$www/a/b ;; *) d=$www/c ;; esac
        head -c "$size" /dev/urandom > "$d/f$i-$size.bin"
        i=$((i + 1))
    done
    printf 'hello, world\n' > "$www/index.txt"
    head -c 5000 /dev/urandom > "$www/c/with space.bin"
    head -c 4096 /dev/urandom > "$www/4k.bin"
    chmod -R a+rX "$www"
    (cd "$www" && find . -type f -exec sha256sum {} + | sort -k2) > "$tmp/manifest"
}

# An nginx configuration: nginx_conf DIR PORT WORKERS.
nginx_conf() {
    mkdir -p "$1/tmp"
    cat > "$1/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $3;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$2;
        root $www;
    }
}
EOF
}

# A plain nginx serving the tree to the clients under test (curl, wrk);
# sets hport, hpid, hgrp.
plain_http() {
    hport=$(free_port)
    mkdir -p "$tmp/nginx-plain"
    nginx_conf "$tmp/nginx-plain" "$hport" 2
    start plain-http nginx -p "$tmp/nginx-plain" -e "$tmp/nginx-plain/error.log" \
        -c "$tmp/nginx-plain/nginx.conf"
    hpid=$bg
    hgrp=$bgrp
    wait_listen "$hport" "$hpid"
}

# wrk_check LOG: wrk's numbers are sane (requests, few socket errors, no
# error statuses); sets wrk_reqs, wrk_rps, wrk_why.
wrk_check() {
    wrk_reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$1")
    wrk_rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1" | awk '{printf "%.0f", $1}')
    sockerr=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$1" |
        awk '{print $1 + $2 + $3 + $4}')
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$1")
    wrk_why=
    if [ -z "$wrk_reqs" ] || [ "$wrk_reqs" -lt 100 ]; then
        wrk_why="${wrk_reqs:-no} requests"
    elif [ "${sockerr:-0}" -gt 5 ]; then
        wrk_why="$sockerr socket errors"
    elif [ "${non2xx:-0}" -gt 0 ]; then
        wrk_why="$non2xx responses not 2xx or 3xx"
    fi
}

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
case_python_echo() {
    have "$py" || return
    for m in $modes; do
        spent "$m" && continue
        port=$(free_port)
        # shellcheck disable=SC2046
        start echo-server $(runner "$m") "$py" "$here/echo_server.py" "$port"
        up "$m" "$port" "$tmp/echo-server.log" || continue
        timeout -s KILL 40 "$py" "$here/echo_client.py" "$port" 1000 --hold --rounds 3 \
            --pid "$bg" > "$tmp/client.log" 2>&1
        crc=$?
        stop "$bg" "$bgrp" TERM
        th=$(sed -n 's/^os_threads=\([0-9-]*\)$/\1/p' "$tmp/client.log")
        rps=$(sed -n 's/.* rps=\([0-9]*\)$/\1/p' "$tmp/client.log")
        if [ "$crc" -ne 0 ]; then
            fail "$m" "the client failed (exit $crc)$server_note" "$tmp/client.log" "$tmp/echo-server.log"
        elif [ "$m" != plain ] && { [ -z "$th" ] || [ "$th" -gt $((m + 8)) ]; }; then
            fail "$m" "os_threads=${th:-missing} with 1000 connections open, want <= $((m + 8))" \
                "$tmp/client.log"
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
        # Every file of the tree by curl, in one command, checked.
        set --
        : > "$tmp/ng-want"
        k=0
        while read -r h f; do
            f=${f#./}
            u=$(echo "$f" | sed 's/ /%20/g')
            set -- "$@" -o "$ndir/got$k" "http://127.0.0.1:$port/$u"
            echo "$h  $ndir/got$k" >> "$tmp/ng-want"
            k=$((k + 1))
        done < "$tmp/manifest"
        if ! timeout -s KILL 30 curl -sS -f "$@" > "$tmp/curl.log" 2>&1; then
            why="curl failed"
        elif ! sha256sum -c --quiet "$tmp/ng-want" > "$tmp/curl.log" 2>&1; then
            why="curl: wrong bodies"
        fi
        if [ -z "$why" ]; then
            sample_start "$bg" tree
            timeout -s KILL 30 wrk -t2 -c100 -d2s "http://127.0.0.1:$port/4k.bin" \
                > "$tmp/wrk.log" 2>&1
            wrc=$?
            sample_stop
            wrk_check "$tmp/wrk.log"
            if [ "$wrc" -ne 0 ]; then
                why="wrk: exit $wrc"
            elif [ -n "$wrk_why" ]; then
                why="wrk: $wrk_why"
            fi
        fi
        workers=$(cat /proc/"$bg"/task/*/children 2>/dev/null)
        stop "$bg" "$bgrp" TERM
        left=
        for w in $workers; do alive "$w" && left="$left $w"; done
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

# ---- 7. a static Go program ---------------------------------------------------------------
case_go_static() {
    have go || return
    gdir=$tmp/go
    mkdir -p "$gdir"
    cp "$here/static_hello.go" "$gdir/main.go"
    if ! (cd "$gdir" && CGO_ENABLED=0 GOCACHE=${GOCACHE:-$out/go-cache} GO111MODULE=off \
        timeout -s KILL 120 go build -o hello main.go) > "$tmp/go.log" 2>&1; then
        fail plain "go build failed" "$tmp/go.log"
        return
    fi
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

for tc in python-http python-echo python-mp curl wrk redis nginx go-static daemon fork cxx-pool; do
    selected "$tc" || continue
    "case_$(echo "$tc" | tr - _)"
done

echo "real: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

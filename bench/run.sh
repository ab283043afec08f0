#!/usr/bin/env bash
# bench/run.sh - run netpoll and its peers side by side, report ratios.
#
# Usage: bench/run.sh [BUILD_DIR]      (default: build; `make bench` calls it)
#
# Expects the netpoll programs built by the Makefile in BUILD_DIR/bench:
#   switch_np yield_np spawn_np park_np deadline_np wake_np echo_np http_np
# (a missing one is reported and its rows are skipped).  Builds the peers
# itself into BUILD_DIR/bench: C/C++ with cc/c++, Go with `go build`
# (offline, no modules, GOCACHE under BUILD_DIR).  Every pair runs
# back to back, in one run, on this machine; the table gives
# ratio = netpoll / peer.  The echo servers run twice: closed loop (every
# connection sends again as soon as its echo is back: throughput, CPU per
# request) and at a fixed offered load (every server gets the same rate:
# latency at equal work).  Two sections compare netpoll with itself: the
# echo server under each poller port (peer: the epoll port) and the
# ping-pong with deadlines set before every operation (peer: none).
#
# Environment:
#   BENCH_QUICK=1        ~2 minute smoke run (small counts, 1 s windows)
#   BENCH_QUICK=2        under a minute (make bench-quick): the echo section
#                        alone, 10/100/1000 connections, 1 s windows
#   BENCH_SECTIONS="..." the sections to run (default all: switch yield
#                        spawn park deadline wake echo echo-load ports http
#                        legacy real)
#   BENCH_OUT=DIR        machine-readable results and their rendering
#                        (default BUILD_DIR/bench/results; make bench:
#                        bench/results)
#   BENCH_SECONDS=5      measurement window of each echo/HTTP run
#   BENCH_CONNS="10 100 1000 10000"  echo connection counts
#   BENCH_PORT_CONNS="100 1000"      echo counts of the poller port comparison
#   BENCH_RATE=50000     fixed-load echo: requests/s offered to every server
#   BENCH_LOAD_CONNS="100 1000"      connection counts of the fixed-load echo
#   BENCH_HTTP_CONNS="10 100 1000 10000" wrk connection counts
#   BENCH_PORT=18000     first TCP port used on 127.0.0.1
#   BENCH_STACK=16384    NP_STACK_SIZE for park_np
#   BENCH_WAKE_N="1000 10000 50000"  descriptors parked on one worker (wake_np);
#                        counts beyond the descriptor limit are skipped
#   BENCH_REPEAT=1       echo/HTTP: run every server this many times
#                        (interleaved), keep each one's best-rps run
#   BENCH_ONLY=legacy    run only the [legacy] section (plain threads vs nprun vs Go)
#   BENCH_LEGACY_CONNS="10 100 1000 10000"  connection counts of the [legacy] section
#   BENCH_LEGACY_PROCS=2 nprun -p of the [legacy] servers
#   BENCH_LEGACY_RATE=50000  [legacy] fixed-load echo at the largest count:
#                        requests/s offered to each server
#   BENCH_TLS_N=1000000  tls_switch round trips per mode
#   BENCH_EXEC_N=1000    /bin/true runs per mode for [exec]
#   CC, CXX, GO          compilers
#
# Output: progress and the table on stdout; the same in
# BUILD_DIR/bench/results.txt; server logs in BUILD_DIR/bench/logs/.
# The [real] section is bench/real.sh: python3 http.server and a
# socketserver echo, redis-server, nginx, plain and under nprun -p 2 (as
# t/shim/real/run.sh starts them, with its t/shim/real/lib.sh).
# In BENCH_OUT: a TSV per section (header line, then one line per server
# and connection count; bench/render.py documents the columns),
# machine.tsv, and what bench/render.py makes of them: RESULTS.md (ratios
# first, absolute figures second) and PNG plots (gnuplot, log x axis).
# Re-run under bash when started as `sh bench/run.sh`.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
mkdir -p "$BUILD/bench/logs" || exit 1
BUILD=$(cd "$BUILD" && pwd)
B=$BUILD/bench
RES=$B/results.txt
LOGS=$B/logs
: >"$RES"

QUICK=${BENCH_QUICK:-0}
SECTIONS=${BENCH_SECTIONS:-"switch yield spawn park deadline wake echo echo-load ports http legacy real"}
if [ "$QUICK" = 2 ]; then
    SECS=${BENCH_SECONDS:-1}
    CONNS=${BENCH_CONNS:-"10 100 1000"}
    HTTP_CONNS=${BENCH_HTTP_CONNS:-"100"}
    SECTIONS=${BENCH_SECTIONS:-echo}
    N_SWITCH=1000000 N_UCTX=100000 N_YIELD=200000 N_SPAWN=100000 N_PARK=100000
    N_DEADLINE=50000
    N_WAKE=1000
elif [ "$QUICK" = 1 ]; then
    SECS=${BENCH_SECONDS:-1}
    CONNS=${BENCH_CONNS:-"100 1000"}
    HTTP_CONNS=${BENCH_HTTP_CONNS:-"100"}
    N_SWITCH=1000000 N_UCTX=100000 N_YIELD=200000 N_SPAWN=100000 N_PARK=100000
    N_DEADLINE=50000
    N_WAKE=1000
else
    SECS=${BENCH_SECONDS:-5}
    CONNS=${BENCH_CONNS:-"10 100 1000 10000"}
    HTTP_CONNS=${BENCH_HTTP_CONNS:-"10 100 1000 10000"}
    N_SWITCH=5000000 N_UCTX=500000 N_YIELD=2000000 N_SPAWN=1000000 N_PARK=1000000
    N_DEADLINE=200000
    N_WAKE=5000
fi
PORT_CONNS=${BENCH_PORT_CONNS:-"100 1000"}
RATE=${BENCH_RATE:-50000}
LOAD_CONNS=${BENCH_LOAD_CONNS:-"100 1000"}
PORT=${BENCH_PORT:-18000}
STACK=${BENCH_STACK:-16384}
REPEAT=${BENCH_REPEAT:-1}
CC=${CC:-cc}
CXX=${CXX:-c++}
GO=${GO:-go}
CFLAGS="-O2 -Wall"
SERVER_LIFE=900 # seconds: hard cap on any server, even if this script dies

ulimit -n "$(ulimit -Hn)" 2>/dev/null
export LD_LIBRARY_PATH="$BUILD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

log() { printf '%s\n' "$*" | tee -a "$RES"; }
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }

# ---- machine-readable results: BENCH_OUT/SECTION.tsv -------------------
OUT=${BENCH_OUT:-$B/results}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.tsv "$OUT"/*.gnuplot "$OUT"/*.png "$OUT/RESULTS.md" "$OUT/run.txt"
tsv() { # SECTION FIELD...: one tab-separated line into OUT/SECTION.tsv
    local f=$OUT/$1.tsv
    shift
    (IFS=$'\t'; printf '%s\n' "$*") >>"$f"
}
tsv machine key value
tsv machine date "$(date -u '+%Y-%m-%d %H:%M UTC')"
tsv machine cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
tsv machine cores "$(nproc)"
tsv machine kernel "$(uname -sr)"
tsv machine memory "$(awk '/^MemTotal:/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
tsv machine load_at_start "$(cut -d' ' -f1-3 /proc/loadavg)"
tsv machine mode "$(case $QUICK in 2) echo quick ;; 1) echo smoke ;; *) echo full ;; esac)"
tsv machine window_s "$SECS"
tsv machine repeat "$REPEAT"
tsv machine nprun_procs "${BENCH_LEGACY_PROCS:-2}"
note() { printf '%s\n' "$*" | tee -a "$RES" >&2; }

# ---- servers: started under timeout(1), always killed on exit ----------
SERVERS=() # timeout(1) pids
SPID=      # pid of the server process itself
STPID=     # its timeout(1) wrapper

cleanup() {
    local p
    for p in "${SERVERS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${SERVERS[@]}"; do
        kill -0 "$p" 2>/dev/null && { sleep 0.2; kill -KILL "$p" 2>/dev/null; }
        wait "$p" 2>/dev/null
    done
    SERVERS=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

listening() { # port: is a socket listening on it (IPv4 or v6)?
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A" \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

take_port() { # sets port to the next free one from PORT on
    local _
    for _ in $(seq 1000); do
        port=$PORT
        PORT=$((PORT + 1))
        listening "$port" || return 0
    done
}

# start_server NAME PORT CMD...: sets SPID/STPID; 1 if it does not listen
start_server() {
    local name=$1 port=$2
    shift 2
    timeout -s KILL "$SERVER_LIFE" "$@" "$port" >>"$LOGS/$name.log" 2>&1 &
    STPID=$!
    SERVERS+=("$STPID")
    SPID=
    for _ in $(seq 50); do
        SPID=$(awk '{print $1}' "/proc/$STPID/task/$STPID/children" 2>/dev/null)
        [ -z "$SPID" ] && SPID=$(ps -o pid= --ppid "$STPID" 2>/dev/null | awk 'NR==1{print $1}')
        [ -n "$SPID" ] && listening "$port" && break
        kill -0 "$STPID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$SPID" ] || ! listening "$port"; then
        note "  $name did not start listening on $port (see $LOGS/$name.log)"
        stop_server
        return 1
    fi
    sleep 0.2 # let the runtime settle before the baseline RSS
    return 0
}

stop_server() {
    [ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null
    kill -TERM "$STPID" 2>/dev/null
    local _
    for _ in $(seq 20); do
        kill -0 "$STPID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$STPID" 2>/dev/null
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
    wait "$STPID" 2>/dev/null
    local keep=() p
    for p in "${SERVERS[@]}"; do [ "$p" != "$STPID" ] && keep+=("$p"); done
    SERVERS=("${keep[@]}")
    SPID='' STPID=''
}

# ---- building the peers ------------------------------------------------
newer() { # out src...: true when out is missing or older than a source
    local out=$1 s
    shift
    [ -x "$out" ] || return 0
    for s in "$@"; do [ "$s" -nt "$out" ] && return 0; done
    return 1
}

build_c() { # name extra-libs...
    local n=$1
    shift
    newer "$B/$n" "$ROOT/bench/$n.c" || return 0
    "$CC" -std=c11 $CFLAGS -pthread -o "$B/$n" "$ROOT/bench/$n.c" "$@" \
        2>"$LOGS/build-$n.log" || { note "  build of $n failed (see $LOGS/build-$n.log)"; rm -f "$B/$n"; }
}

build_go() { # name
    local n=$1
    [ -n "$HAVE_GO" ] || return 0
    newer "$B/go_$n" "$ROOT/bench/go/$n.go" || return 0
    (cd "$ROOT" && env GOCACHE="$B/gocache" GOPATH="$B/gopath" GOFLAGS=-mod=mod \
        GOPROXY=off GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 \
        "$GO" build -o "$B/go_$n" "bench/go/$n.go") 2>"$LOGS/build-go_$n.log" ||
        { note "  go build of $n failed (see $LOGS/build-go_$n.log)"; rm -f "$B/go_$n"; }
}

log "netpoll benchmarks  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
log "mode: $([ "$QUICK" = 1 ] && echo quick || echo full), window ${SECS}s x $REPEAT, echo conns: $CONNS, port conns: $PORT_CONNS, http conns: $HTTP_CONNS"
log ""
log "building peers into $B"
HAVE_GO=
command -v "$GO" >/dev/null 2>&1 && HAVE_GO=1 || note "  $GO not found: Go peers skipped"
build_c switch_ucontext
build_c echo_client
build_c echo_epoll
build_c echo_threads
if newer "$B/switch_boost" "$ROOT/bench/switch_boost.cpp"; then
    "$CXX" -std=c++20 $CFLAGS -o "$B/switch_boost" "$ROOT/bench/switch_boost.cpp" \
        -lboost_context 2>"$LOGS/build-switch_boost.log" ||
        { note "  build of switch_boost failed (see $LOGS/build-switch_boost.log)"; rm -f "$B/switch_boost"; }
fi
for g in chanpingpong spawn park echo http httpraw; do build_go "$g"; done
HAVE_WRK=
command -v wrk >/dev/null 2>&1 && HAVE_WRK=1 || note "  wrk not found: HTTP rows skipped"

# ---- the table -----------------------------------------------------------
ROWS=() # "benchmark|netpoll|peer name|peer|better"
row() { ROWS+=("$1|$2|$3|$4|$5"); }

have_np() { # name: netpoll program present? (says so when not)
    if [ -x "$B/$1" ]; then return 0; fi
    note "  netpoll program $B/$1 missing: row skipped"
    return 1
}
have_peer() {
    if [ -x "$B/$1" ]; then return 0; fi
    note "  peer program $B/$1 missing: row skipped"
    return 1
}

# run_fig LABEL CMD...: run a one-line program, print its line, echo field 2
run_fig() {
    local label=$1 out
    shift
    out=$(timeout 300 "$@" 2>>"$LOGS/$label.log" | tail -n 1)
    if [ -z "$out" ]; then
        note "  $label failed (see $LOGS/$label.log)"
        return 1
    fi
    log "  $out" >&2
    printf '%s\n' "$out" | awk '{print $2}'
}

beats() { # a b: true when number a > b, or b is empty
    [ -z "$2" ] || awk -v a="$1" -v b="$2" 'BEGIN{exit !(a+0 > b+0)}'
}

field() { # key line: value of key=value in line
    printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k{print $2; exit}'
}

# echo_measure NAME C: run echo_client with C connections against the server
# just started (SPID, listening on $port), then stop the server.  Sets EOUT
# to the client's line, plus memory per held connection: rss_kib_conn
# (the client's idle VmRSS sample with every connection open, less the
# one before it connected), kstack_kib_conn (KernelStack of /proc/meminfo
# at the server's peak thread count, less before: an OS thread's kernel
# stack, not in its RSS; system-wide, so at most 16 KiB per thread the
# server added, to keep other processes' threads out), their sum
# kib_conn, and threads (the server's peak OS threads); 1 when the
# client failed.
EOUT=
threads_now() { awk '/^Threads:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
echo_measure() {
    local name=$1 c=$2 rc f=$LOGS/echo-sample samp rss0 ks0 rss thr ks thr0
    read -r rss0 ks0 <<<"$(leg_now "$SPID")"
    thr0=$(threads_now "$SPID")
    rm -f "$f" "$f.stop"
    echo "0 0 0" >"$f"
    leg_sampler "$SPID" "$f" &
    samp=$!
    EOUT=$(ECHO_RATE=${ECHO_RATE:-} ECHO_SERVER_PID=$SPID ECHO_IDLE_MS=500 timeout $((SECS + 150)) \
        "$B/echo_client" 127.0.0.1 "$port" "$c" "$SECS" 512 2>>"$LOGS/echo_client.log")
    rc=$?
    touch "$f.stop"
    wait "$samp" 2>/dev/null
    read -r rss thr ks <"$f"
    kill -0 "$SPID" 2>/dev/null || note "  $name died during the run (see $LOGS/$name.log)"
    stop_server
    if [ $rc -ne 0 ] || [ -z "$EOUT" ]; then
        note "  $name c=$c: client failed (rc $rc, see $LOGS/echo_client.log)"
        return 1
    fi
    EOUT="$EOUT $(awk -v c="$c" -v a="$(field srv_rss0_kib "$EOUT")" -v b="$(field srv_rss_idle_kib "$EOUT")" \
        -v k0="$ks0" -v k="$ks" -v t="$thr" -v t0="${thr0:-0}" 'BEGIN{ if (a == "" || b+0 < 0) exit;
        r=(b-a)/c; kc=(k-k0)/c; if (kc < 0) kc=0; if (kc*c > 16*(t-t0)) kc=(t > t0 ? 16*(t-t0)/c : 0);
        printf "rss_kib_conn=%.2f kstack_kib_conn=%.2f kib_conn=%.2f threads=%d", r, kc, r+kc, t }')"
}

# echo_series ARRAY "CONNS" RATE KEEP KEY...: run every echo server at each
# connection count, REPEAT times interleaved, closed loop (RATE empty) or
# at RATE requests/s; per server keep the run with the best rps (KEEP=rps)
# or the lowest p99 (KEEP=p99), its KEYs stored in ARRAY[server,conns,key].
echo_series() {
    local -n A=$1
    local conns=$2 rate=$3 keep=$4 c s sp prog out k
    shift 4
    for c in $conns; do
        for _ in $(seq "$REPEAT"); do
        for sp in $ECHO_SERVERS; do
            s=${sp%%:*} prog=${sp#*:}
            [ -x "$B/$prog" ] || { note "  $prog missing"; continue; }
            take_port
            start_server "$prog" "$port" "$B/$prog" || continue
            ECHO_RATE=$rate echo_measure "$prog" "$c" || continue
            out=$EOUT
            log "  $(printf '%-8s' "$s") $out"
            if [ "$keep" = rps ]; then
                beats "$(field rps "$out")" "${A[$s,$c,rps]:-}" || continue
            else
                [ -z "${A[$s,$c,p99_us]:-}" ] || beats "${A[$s,$c,p99_us]}" "$(field p99_us "$out")" || continue
            fi
            for k in "$@"; do A[$s,$c,$k]=$(field "$k" "$out"); done
        done
        done
    done
}

# ---- legacy servers: plain threads vs nprun vs Go ------------------------
# The same unmodified thread-per-connection servers (bench/legacy_echo.c,
# bench/legacy_http.c: plain C11 + pthreads, default thread attributes, no
# netpoll in them) run plain (an OS thread per connection) and under
# `nprun -p LEG_PROCS` (the preload shim: a green thread per connection on
# a few workers), beside the Go peers (go_echo; go_http and go_httpraw), in
# one run, at each of BENCH_LEGACY_CONNS connections: echo with
# echo_client (closed loop, as [echo]), HTTP with wrk -t2.  Memory per
# connection = ((server VmRSS, peak while the connections are held) -
# (VmRSS before the client)) + ((KernelStack of /proc/meminfo while held,
# at the server's peak thread count) - (before)), over conns; KernelStack
# is system-wide: the kernel stacks of the server's OS threads, plus the
# client's 2 (<0.05 KiB/conn at 1000) and whatever else starts meanwhile
# (least of the samples taken, and at most 16 KiB per OS thread the server
# added, to keep other processes' threads out).  Then bench/tls_switch.c, a
# two-thread ping-pong (condvar, pipe, sched_yield) plain and under
# `nprun -p 1`, where every hand-off is a green-thread switch that also
# switches the thread pointer (TCB, wrfsbase); np_yield (yield_np: the
# same scheduler, no TCB switch) beside it.  BENCH_ONLY=legacy runs this
# section alone.
LEG_CONNS=${BENCH_LEGACY_CONNS:-"10 100 1000 10000"}
LEG_PROCS=${BENCH_LEGACY_PROCS:-2}
# Split cores: in the runs above the client shares the machine's cores with
# the server (and with a server of 10,000 OS threads, whose every wake-up
# may preempt it).  So each server also runs on the first half of the cores
# with the client on the other half, as a server and its clients run on
# separate machines: nprun -p the server's cores, Go's GOMAXPROCS from its
# affinity.  BENCH_LEGACY_SPLIT=0: not run.
NCPU=$(nproc)
LEG_SPLIT=${BENCH_LEGACY_SPLIT:-1}
[ "$NCPU" -ge 2 ] && command -v taskset >/dev/null 2>&1 || LEG_SPLIT=0
SRV_CPUS="0-$((NCPU / 2 - 1))" CLI_CPUS="$((NCPU / 2))-$((NCPU - 1))"
SPLIT_PROCS=$((NCPU / 2)) CLI_THREADS=$((NCPU - NCPU / 2))
# Fixed load as well (echo_client's ECHO_RATE): at the largest count, the
# same rate for each server, one all of them carry, so the latency is
# compared at equal work (a closed loop rewards serving a warm few).
LEG_RATE=${BENCH_LEGACY_RATE:-50000}
LEG_SERVERS="plain nprun go goraw epoll"
[ "$LEG_SPLIT" = 1 ] && LEG_SERVERS="$LEG_SERVERS plain-split nprun-split go-split goraw-split epoll-split"
LEG_CLIENT=() LEG_CLIENT_T=2
if [ "$QUICK" = 1 ]; then N_TLS=${BENCH_TLS_N:-200000}; else N_TLS=${BENCH_TLS_N:-1000000}; fi
NPRUN=$BUILD/bin/nprun
declare -A LG # LG[server,kind,conns,key]
declare -A LEG_EXEC # LEG_EXEC[plain|nprun]: us per /bin/true run by a shell
N_EXEC=${BENCH_EXEC_N:-1000}
LEG_TLS= LEG_TLS_NP= LEG_YIELD=

leg_now() { # pid: "VmRSS-of-pid KernelStack" in KiB (KernelStack: least of 3, 0.1 s apart)
    local k v _ rss=-1 ks=-1 i
    while read -r k v _; do [ "$k" = VmRSS: ] && rss=$v; done 2>/dev/null <"/proc/$1/status"
    for i in 1 2 3; do
        while read -r k v _; do [ "$k" = KernelStack: ] && break; done </proc/meminfo
        { [ "$ks" -lt 0 ] || [ "$v" -lt "$ks" ]; } && ks=$v
        [ $i -lt 3 ] && sleep 0.1
    done
    echo "$rss $ks"
}

# leg_sampler PID FILE: every 0.2 s, until PID is gone or FILE.stop
# exists: the peaks of PID's VmRSS and Threads, and KernelStack when PID
# had its peak thread count (the least of those samples: other processes'
# threads come and go) into FILE as "rss threads kstack" (KiB, count, KiB)
leg_sampler() {
    local pid=$1 f=$2 rss=0 thr=0 ks=0 k v t _
    while kill -0 "$pid" 2>/dev/null && [ ! -e "$f.stop" ]; do
        t=0
        while read -r k v _; do
            case $k in
            VmRSS:) [ "$v" -gt "$rss" ] && rss=$v ;;
            Threads:) t=$v ;;
            esac
        done 2>/dev/null <"/proc/$pid/status"
        while read -r k v _; do
            [ "$k" = KernelStack: ] && break
        done </proc/meminfo
        if [ "$t" -gt "$thr" ]; then
            thr=$t ks=$v
        elif [ "$t" -eq "$thr" ] && [ "$v" -lt "$ks" ]; then
            ks=$v
        fi
        echo "$rss $thr $ks" >"$f.tmp" && mv -f "$f.tmp" "$f"
        sleep 0.2
    done
}

leg_us() { # wrk latency (1.23ms) -> microseconds
    awk -v v="$1" 'BEGIN{u=v; sub(/[0-9.]+/,"",u); n=v+0;
        if(u=="us")n=n; else if(u=="ms")n*=1000; else if(u=="s")n*=1000000; else n=-1;
        printf "%.0f\n", n}'
}

# leg_run KIND NAME C: echo_client (KIND echo) or wrk (http) with C
# connections against the server just started (SPID on $port), memory
# sampled meanwhile; stops the server.  Sets LOUT ("key=value ..."); 1 on
# failure.
LOUT=
leg_run() {
    local kind=$1 name=$2 c=$3 rc out samp f=$LOGS/leg-sample rss0 ks0 rss thr ks rps p99 errs= thr0
    read -r rss0 ks0 <<<"$(leg_now "$SPID")"
    thr0=$(threads_now "$SPID")
    rm -f "$f" "$f.stop"
    echo "0 0 0" >"$f"
    leg_sampler "$SPID" "$f" &
    samp=$!
    if [ "${kind%-rate}" = echo ]; then
        local rate=
        [ "$kind" = echo-rate ] && rate=$LEG_RATE
        out=$(ECHO_RATE=$rate ECHO_SERVER_PID=$SPID ECHO_IDLE_MS=500 ECHO_THREADS=$LEG_CLIENT_T timeout $((SECS + 150)) \
            "${LEG_CLIENT[@]}" "$B/echo_client" 127.0.0.1 "$port" "$c" "$SECS" 512 2>>"$LOGS/echo_client.log")
        rc=$?
        rps=$(field rps "$out") p99=$(field p99_us "$out")
    else
        out=$(timeout $((SECS + 90)) "${LEG_CLIENT[@]}" wrk -t"$LEG_CLIENT_T" -c"$c" -d"${SECS}s" --timeout 10s --latency \
            "http://127.0.0.1:$port/" 2>>"$LOGS/wrk.log")
        rc=$?
        rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/{print $2}')
        p99=$(leg_us "$(printf '%s\n' "$out" | awk '$1=="99%"{print $2}')")
        errs=$(printf '%s\n' "$out" | awk '/Socket errors|Non-2xx/{printf "%s ", $0}' | tr -s ' ')
        [ -n "$rps" ] || printf '%s\n' "$out" >>"$LOGS/wrk.log"
    fi
    touch "$f.stop"
    wait "$samp" 2>/dev/null
    read -r rss thr ks <"$f"
    local died=
    if ! kill -0 "$SPID" 2>/dev/null; then
        wait "$STPID" 2>/dev/null
        died=$?
        [ "$died" -gt 128 ] && died="$died, signal $((died - 128))"
        note "  $name c=$c died during the run (exit status $died; see $LOGS/$name.log): run not counted"
    fi
    stop_server
    [ -z "$died" ] || return 1
    if [ $rc -ne 0 ] || [ -z "$rps" ]; then
        note "  $name c=$c: $([ "${kind%-rate}" = echo ] && echo echo_client || echo wrk) failed (rc $rc, see $LOGS/$([ "${kind%-rate}" = echo ] && echo echo_client || echo wrk).log)"
        return 1
    fi
    LOUT=$(awk -v c="$c" -v rps="$rps" -v p99="$p99" -v r0="$rss0" -v r="$rss" -v k0="$ks0" \
        -v k="$ks" -v t="$thr" -v a="$(field srv_rss0_kib "$out")" -v b="$(field srv_rss_idle_kib "$out")" \
        -v t0="${thr0:-0}" 'BEGIN{
        rc=(r-r0)/c; kc=(k-k0)/c;
        if (kc < 0) kc=0; if (kc*c > 16*(t-t0)) kc=(t > t0 ? 16*(t-t0)/c : 0) # [echo]: at most 16 KiB a thread
        printf "rps=%.0f p99_us=%s kib_conn=%.2f rss_kib_conn=%.2f kstack_kib_conn=%.2f threads=%d", rps, p99, rc+kc, rc, kc, t
        # echo: as [echo] figures it (idle RSS, with every connection open)
        if (a != "" && b+0 >= 0) printf " idle_kib_conn=%.2f", (b-a)/c + (kc > 0 ? kc : 0)}')
    # echo: how evenly the round trips were spread over the connections
    # (echo_client's Jain index, and those with none): a closed loop
    # rewards a server that serves a warm few over and over
    [ "${kind%-rate}" = echo ] && LOUT="$LOUT p50_us=$(field p50_us "$out") fairness=$(field fairness "$out") conn_zero=$(field conn_zero "$out")"
    [ -n "$errs" ] && LOUT="$LOUT [${errs% }]"
    return 0
}

legacy_section() {
    local kind c s cmd prog k out
    log ""
    log "[legacy] thread-per-connection servers, unmodified: plain, nprun -p $LEG_PROCS, Go; ${SECS}s per run"
    if [ "$LEG_SPLIT" = 1 ]; then
        log "  and split: each server on CPUs $SRV_CPUS (nprun -p $SPLIT_PROCS), its client on CPUs $CLI_CPUS"
        tsv machine split_server_cpus "$SRV_CPUS"
        tsv machine split_client_cpus "$CLI_CPUS"
        tsv machine split_procs "$SPLIT_PROCS"
    fi
    build_c legacy_echo
    build_c legacy_http
    build_c tls_switch
    if [ ! -x "$NPRUN" ] || [ ! -f "$BUILD/lib/libnetpoll-preload.so" ]; then
        note "  $NPRUN or $BUILD/lib/libnetpoll-preload.so missing (make shim nprun): nprun rows skipped"
    fi
    local conns
    for kind in echo http echo-rate; do
        if [ "$kind" = http ] && [ -z "$HAVE_WRK" ]; then continue; fi
        if [ "${kind%-rate}" = echo ] && ! have_peer echo_client; then continue; fi
        conns=$LEG_CONNS
        [ "$kind" = echo-rate ] && conns=$(printf '%s\n' $LEG_CONNS | sort -n | tail -n 1)
        for c in $conns; do
            for _ in $(seq "$REPEAT"); do
            for s in $LEG_SERVERS; do
                case $kind/${s%-split} in
                echo*/goraw | http*/epoll) continue ;;
                echo-rate/*) [ "$s" = "${s%-split}" ] || continue ;;
                esac
                case ${kind%-rate}/${s%-split} in
                */plain) cmd=("$B/legacy_${kind%-rate}") ;;
                */nprun) cmd=("$NPRUN" -p "$LEG_PROCS" -- "$B/legacy_${kind%-rate}") ;;
                echo/go) cmd=("$B/go_echo") ;;
                echo/epoll) cmd=("$B/echo_epoll") ;; # a thread per CPU of its affinity
                http/go) cmd=("$B/go_http") ;;
                http/goraw) cmd=("$B/go_httpraw") ;;
                esac
                prog=${cmd[${#cmd[@]}-1]}
                LEG_CLIENT=() LEG_CLIENT_T=2
                if [ "$s" != "${s%-split}" ]; then
                    [ "${s%-split}" = nprun ] && cmd=("$NPRUN" -p "$SPLIT_PROCS" -- "$B/legacy_${kind%-rate}")
                    cmd=(taskset -c "$SRV_CPUS" "${cmd[@]}")
                    LEG_CLIENT=(taskset -c "$CLI_CPUS") LEG_CLIENT_T=$CLI_THREADS
                fi
                if [ ! -x "$prog" ] || { [ "${s%-split}" = nprun ] && [ ! -x "$NPRUN" ]; }; then
                    note "  ${prog##*/} or nprun missing: $s $kind skipped"
                    continue
                fi
                take_port
                start_server "legacy-$kind-$s" "$port" "${cmd[@]}" || continue
                if grep -q 'without green threads' "$LOGS/legacy-$kind-$s.log" 2>/dev/null; then
                    note "  the shim is off in $s $kind (see $LOGS/legacy-$kind-$s.log)"
                fi
                leg_run "$kind" "legacy-$kind-$s" "$c" || continue
                log "  $(printf '%-6s %-4s c=%-6s' "$s" "$kind" "$c") $LOUT"
                beats "$(field rps "$LOUT")" "${LG[$s,$kind,$c,rps]:-}" || continue
                for k in rps p99_us kib_conn rss_kib_conn kstack_kib_conn threads idle_kib_conn p50_us fairness conn_zero; do
                    LG[$s,$kind,$c,$k]=$(field "$k" "$LOUT")
                done
                # A closed loop's mean round trip (Little's law): no fair server's p99 is far below it.
                LG[$s,$kind,$c,cycle_us]=$(awk -v c="$c" -v r="${LG[$s,$kind,$c,rps]}" \
                    'BEGIN{ if (r + 0 > 0) printf "%.1f", c * 1e6 / r }')
            done
            done
        done
    done

    log ""
    log "[tls] two pthreads ping-pong, $N_TLS round trips per mode: plain, and nprun -p 1 (green threads, TCB switched)"
    if [ -x "$B/tls_switch" ]; then
        out=$(TLS_MAX_SECONDS=20 timeout 300 "$B/tls_switch" "$N_TLS" 2>>"$LOGS/tls_switch.log" | tail -n 1)
        [ -n "$out" ] && { log "  plain  $out"; LEG_TLS=$out; } || note "  tls_switch failed (see $LOGS/tls_switch.log)"
        if [ -x "$NPRUN" ]; then
            out=$(TLS_MAX_SECONDS=20 timeout 300 "$NPRUN" -p 1 -- "$B/tls_switch" "$N_TLS" \
                2>>"$LOGS/tls_switch-nprun.log" | tail -n 1)
            [ -n "$out" ] && { log "  nprun  $out"; LEG_TLS_NP=$out; } ||
                note "  tls_switch under nprun -p 1 failed (see $LOGS/tls_switch-nprun.log)"
        fi
        if [ -x "$B/yield_np" ]; then
            out=$(NP_PROCS=1 timeout 300 "$B/yield_np" "$N_TLS" 2>>"$LOGS/yield_np.log" | tail -n 1)
            [ -n "$out" ] && { log "  $out (ns per switch, no TCB)"; LEG_YIELD=$(printf '%s\n' "$out" | awk '{print $2}'); }
        fi
    fi

    # What every process run under nprun pays: the shim loaded and the
    # runtime started in the shell and in each command it runs.
    log ""
    log "[exec] a shell running /bin/true $N_EXEC times, plain and under nprun -p $LEG_PROCS (every process preloaded)"
    local loop="i=0; while [ \$i -lt $N_EXEC ]; do /bin/true; i=\$((i + 1)); done" t0 t1
    for m in plain nprun; do
        [ "$m" = plain ] || [ -x "$NPRUN" ] || continue
        t0=$(date +%s%N)
        if [ "$m" = plain ]; then timeout 120 sh -c "$loop"; else timeout 120 "$NPRUN" -p "$LEG_PROCS" -- sh -c "$loop"; fi
        t1=$(date +%s%N)
        LEG_EXEC[$m]=$(((t1 - t0) / 1000 / N_EXEC))
        log "  $m  ${LEG_EXEC[$m]} us per command"
    done
}

klab() { if [ "$1" = echo-rate ]; then echo "echo $LEG_RATE/s"; else echo "$1"; fi; }

legacy_report() {
    local kind c m lab better s W=36 nv
    [ ${#LG[@]} -gt 0 ] || [ -n "$LEG_TLS$LEG_TLS_NP" ] || return 0
    lr() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && b+0 > 0 && a+0 >= 0) printf "%.3g", a/b; else print "-" }'; }
    log ""
    log "legacy servers: plain threads vs nprun -p $LEG_PROCS vs Go (the same binaries plain and under nprun)"
    log "ratio = nprun / peer; Go = go_echo / Go net/http, Go-raw = go_httpraw (the same parser as legacy_http)"
    log "epoll = echo_epoll, the hand-written event loop: what serving connections in arrival order gets"
    log "KiB/conn = ((RSS at load - RSS idle) + (KernelStack at load - before)) / conns"
    log "$(printf "%-${W}s %12s %12s %12s %12s  %s" figure nprun/plain nprun/Go nprun/Go-raw nprun/epoll better)"
    log "$(printf '%.0s-' $(seq $((W + 61))))"
    local x
    for x in "" -split; do
    for kind in echo http echo-rate; do
        for c in $LEG_CONNS; do
            [ -n "${LG[nprun$x,$kind,$c,rps]:-}" ] || continue
            for m in rps:higher p99_us:lower kib_conn:lower; do
                better=${m#*:} m=${m%%:*}
                [ "$kind" != echo-rate ] || [ "$m" = p99_us ] || continue # the same rate for all
                case $m in rps) lab=rps ;; p99_us) lab="p99 us" ;; kib_conn) lab="KiB/conn" ;; esac
                nv=${LG[nprun$x,$kind,$c,$m]:-}
                log "$(printf "%-${W}s %12s %12s %12s %12s  %s" "$(klab "$kind") c=$c $lab${x:+ (split)}" \
                    "$(lr "$nv" "${LG[plain$x,$kind,$c,$m]:-}")" "$(lr "$nv" "${LG[go$x,$kind,$c,$m]:-}")" \
                    "$(lr "$nv" "${LG[goraw$x,$kind,$c,$m]:-}")" "$(lr "$nv" "${LG[epoll$x,$kind,$c,$m]:-}")" "$better")"
            done
        done
    done
    done
    if [ -n "$LEG_TLS" ] && [ -n "$LEG_TLS_NP" ]; then
        for m in cond pipe yield; do
            log "$(printf "%-${W}s %12s %12s %12s  %s" "tls_switch $m ns/rt (-p 1)" \
                "$(lr "$(field ${m}_rt_ns "$LEG_TLS_NP")" "$(field ${m}_rt_ns "$LEG_TLS")")" - - lower)"
        done
        [ -n "$LEG_YIELD" ] && log "$(printf "%-${W}s %12s %12s %12s  %s" "tls_switch yield vs np_yield" \
            "$(lr "$(field yield_rt_ns "$LEG_TLS_NP")" "$(awk -v y="$LEG_YIELD" 'BEGIN{print 2*y}')")" - - "lower (ratio: vs np_yield rt)")"
    fi
    [ -n "${LEG_EXEC[nprun]:-}" ] && log "$(printf "%-${W}s %12s %12s %12s  %s" "exec /bin/true us (${LEG_EXEC[plain]} plain)" \
        "$(lr "${LEG_EXEC[nprun]}" "${LEG_EXEC[plain]:-}")" - - lower)"
    log ""
    for x in "" -split; do
    [ -z "$x" ] || [ "$LEG_SPLIT" = 1 ] || continue
    log "$(printf "%-${W}s %12s %12s %12s %12s %12s" "figure (absolute)${x:+, split}" plain \
        "nprun -p $([ -n "$x" ] && echo "$SPLIT_PROCS" || echo "$LEG_PROCS")" Go Go-raw epoll)"
    log "$(printf '%.0s-' $(seq $((W + 65))))"
    for kind in echo http echo-rate; do
        for c in $LEG_CONNS; do
            [ -n "${LG[plain$x,$kind,$c,rps]:-}${LG[nprun$x,$kind,$c,rps]:-}${LG[go$x,$kind,$c,rps]:-}" ] || continue
            for m in rps p50_us p99_us cycle_us fairness conn_zero kib_conn rss_kib_conn kstack_kib_conn threads; do
                [ "${kind%-rate}" = echo ] || case $m in p50_us | fairness | conn_zero) continue ;; esac
                [ "$kind" != echo-rate ] || case $m in *kib_conn | threads | cycle_us) continue ;; esac
                case $m in
                rps) lab=rps ;; p99_us) lab="p99 us" ;; kib_conn) lab="KiB/conn" ;;
                p50_us) lab="p50 us" ;; fairness) lab="  fairness (Jain, 1 = even)" ;;
                conn_zero) lab="  connections never answered" ;;
                cycle_us) lab="  conns / rps us (mean round trip)" ;;
                rss_kib_conn) lab="  RSS KiB/conn" ;; kstack_kib_conn) lab="  kernel stack KiB/conn" ;;
                threads) lab="OS threads (peak)" ;;
                esac
                log "$(printf "%-${W}s %12s %12s %12s %12s %12s" "$(klab "$kind") c=$c $lab" "${LG[plain$x,$kind,$c,$m]:--}" \
                    "${LG[nprun$x,$kind,$c,$m]:--}" "${LG[go$x,$kind,$c,$m]:--}" "${LG[goraw$x,$kind,$c,$m]:--}" \
                    "${LG[epoll$x,$kind,$c,$m]:--}")"
            done
        done
    done
    log ""
    done
    for m in cond pipe yield; do
        [ -n "$LEG_TLS$LEG_TLS_NP" ] || break
        nv=$(field ${m}_rt_ns "$LEG_TLS_NP")
        log "$(printf "%-${W}s %12s %12s %12s %12s" "tls_switch $m ns/rt" "$(field ${m}_rt_ns "$LEG_TLS")" \
            "${nv:--}" - -)"
    done
    [ -n "$LEG_YIELD" ] && log "$(printf "%-${W}s %12s %12s %12s %12s" "np_yield ns/rt (no TCB)" - \
        "$(awk -v y="$LEG_YIELD" 'BEGIN{printf "%.1f", 2*y}')" - -)"
    log "(nprun column of the tls_switch rows: nprun -p 1; np_yield: yield_np, NP_PROCS=1, 2 switches)"
}

# write_results: the kept figures of every section into OUT/*.tsv, the log
# as OUT/run.txt, then RESULTS.md and the plots (bench/render.py)
write_results() {
    local s c kind r name np pn pv better ratio py=python3
    if declare -p E >/dev/null 2>&1; then
        tsv echo server conns rps p50_us p99_us cpu_us_req rss_kib_conn kstack_kib_conn kib_conn threads
        for s in np epoll threads go; do
            for c in $CONNS; do
                [ -n "${E[$s,$c,rps]:-}" ] || continue
                tsv echo "$s" "$c" "${E[$s,$c,rps]}" "${E[$s,$c,p50_us]:-}" "${E[$s,$c,p99_us]:-}" \
                    "${E[$s,$c,srv_cpu_us_per_req]:-}" "${E[$s,$c,rss_kib_conn]:-}" \
                    "${E[$s,$c,kstack_kib_conn]:-}" "${E[$s,$c,kib_conn]:-}" "${E[$s,$c,threads]:-}"
            done
        done
        tsv echo_load server conns rate rps p50_us p99_us cpu_us_req
        for s in np epoll threads go; do
            for c in $LOAD_CONNS; do
                [ -n "${L[$s,$c,p99_us]:-}" ] || continue
                tsv echo_load "$s" "$c" "$RATE" "${L[$s,$c,rps]:-}" "${L[$s,$c,p50_us]:-}" \
                    "${L[$s,$c,p99_us]}" "${L[$s,$c,srv_cpu_us_per_req]:-}"
            done
        done
        tsv ports poller conns rps p99_us cpu_us_req
        for s in epoll io_uring poll; do
            for c in $PORT_CONNS; do
                [ -n "${P[$s,$c,rps]:-}" ] || continue
                tsv ports "$s" "$c" "${P[$s,$c,rps]}" "${P[$s,$c,p99_us]:-}" "${P[$s,$c,srv_cpu_us_per_req]:-}"
            done
        done
        tsv http server conns rps p50_us p99_us
        for s in np go goraw; do
            for c in $HTTP_CONNS; do
                [ -n "${H[$s,$c,rps]:-}" ] || continue
                tsv http "$s" "$c" "${H[$s,$c,rps]}" "${H[$s,$c,p50]:-}" "${H[$s,$c,p99]:-}"
            done
        done
    fi
    tsv legacy kind server conns rps p99_us kib_conn rss_kib_conn kstack_kib_conn idle_kib_conn threads
    for kind in echo http; do
        for s in $LEG_SERVERS; do
            for c in $LEG_CONNS; do
                [ -n "${LG[$s,$kind,$c,rps]:-}" ] || continue
                tsv legacy "$kind" "$s" "$c" "${LG[$s,$kind,$c,rps]}" "${LG[$s,$kind,$c,p99_us]:-}" \
                    "${LG[$s,$kind,$c,kib_conn]:-}" "${LG[$s,$kind,$c,rss_kib_conn]:-}" \
                    "${LG[$s,$kind,$c,kstack_kib_conn]:-}" "${LG[$s,$kind,$c,idle_kib_conn]:-}" \
                    "${LG[$s,$kind,$c,threads]:-}"
            done
        done
    done
    if [ -n "$LEG_TLS$LEG_TLS_NP" ]; then
        tsv tls mode cond_rt_ns pipe_rt_ns yield_rt_ns
        [ -n "$LEG_TLS" ] && tsv tls plain "$(field cond_rt_ns "$LEG_TLS")" \
            "$(field pipe_rt_ns "$LEG_TLS")" "$(field yield_rt_ns "$LEG_TLS")"
        [ -n "$LEG_TLS_NP" ] && tsv tls nprun "$(field cond_rt_ns "$LEG_TLS_NP")" \
            "$(field pipe_rt_ns "$LEG_TLS_NP")" "$(field yield_rt_ns "$LEG_TLS_NP")"
        [ -n "$LEG_YIELD" ] && tsv tls np_yield - - "$(awk -v y="$LEG_YIELD" 'BEGIN{printf "%.1f", 2*y}')"
    fi
    tsv ratios benchmark netpoll peer peer_value ratio better
    for r in "${ROWS[@]}"; do
        IFS='|' read -r name np pn pv better <<<"$r"
        ratio=$(awk -v a="$np" -v b="$pv" 'BEGIN{ if (b+0 > 0 && a+0 >= 0) printf "%.3g", a/b; else print "-" }')
        tsv ratios "$name" "$np" "$pn" "$pv" "$ratio" "$better"
    done
    tsv machine load_at_end "$(cut -d' ' -f1-3 /proc/loadavg)"
    cp "$RES" "$OUT/run.txt"
    [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    if "$py" "$ROOT/bench/render.py" "$OUT"; then
        log "results: $OUT/RESULTS.md"
    else
        note "  bench/render.py failed: no RESULTS.md"
    fi
}

if [ "${BENCH_ONLY:-}" = legacy ]; then
    legacy_section
    legacy_report
    log ""
    log "results: $RES"
    write_results
    exit 0
fi

# 1. raw switch
log ""
log "[switch] raw context switch, ns per switch"
if want switch && have_np switch_np; then
    np=$(run_fig switch_np "$B/switch_np" "$N_SWITCH")
    if [ -n "$np" ] && have_peer switch_boost; then
        p=$(run_fig switch_boost "$B/switch_boost" "$N_SWITCH") &&
            row "switch ns (raw)" "$np" "boost fcontext" "$p" lower
    fi
    if [ -n "$np" ] && have_peer switch_ucontext; then
        p=$(run_fig switch_ucontext "$B/switch_ucontext" "$N_UCTX") &&
            row "switch ns (raw)" "$np" "swapcontext" "$p" lower
    fi
fi

# 2. scheduler round trip on one worker
log ""
log "[yield] two green threads / goroutines on one OS thread, ns per switch"
if want yield && have_np yield_np && have_peer go_chanpingpong; then
    np=$(NP_PROCS=1 run_fig yield_np "$B/yield_np" "$N_YIELD") &&
        p=$(run_fig go_chanpingpong "$B/go_chanpingpong" "$N_YIELD") &&
        row "yield ns (1 worker)" "$np" "Go chan, GOMAXPROCS=1" "$p" lower
fi

# 3. spawn + exit
log ""
log "[spawn] spawn+exit of $N_SPAWN threads, ns per thread"
if want spawn && have_np spawn_np && have_peer go_spawn; then
    np=$(run_fig spawn_np "$B/spawn_np" "$N_SPAWN") &&
        p=$(run_fig go_spawn "$B/go_spawn" "$N_SPAWN") &&
        row "spawn+exit ns/thread" "$np" "goroutine+WaitGroup" "$p" lower
fi

# 4. parked threads
log ""
log "[park] $N_PARK parked threads (NP_STACK_SIZE=$STACK), RSS"
if want park && have_np park_np && have_peer go_park; then
    out=$(NP_STACK_SIZE=$STACK timeout 300 "$B/park_np" "$N_PARK" 2>>"$LOGS/park_np.log" | tail -n 1)
    [ -n "$out" ] && log "  $out" || note "  park_np failed (see $LOGS/park_np.log)"
    gout=$(timeout 300 "$B/go_park" "$N_PARK" 2>>"$LOGS/go_park.log" | tail -n 1)
    [ -n "$gout" ] && log "  $gout" || note "  go_park failed (see $LOGS/go_park.log)"
    if [ -n "$out" ] && [ -n "$gout" ]; then
        row "parked KiB/thread" "$(field kib_per_thread "$out")" "goroutine" \
            "$(field kib_per_thread "$gout")" lower
        row "parked RSS MiB (${N_PARK})" "$(field rss_mib "$out")" "goroutine" \
            "$(field rss_mib "$gout")" lower
        # The same threads on 2 KiB packed stacks (np_go_stack)
        sout=$(PARK_STACK=2048 timeout 300 "$B/park_np" "$N_PARK" 2>>"$LOGS/park_np.log" | tail -n 1)
        if [ -n "$sout" ]; then
            log "  $sout (np_go_stack 2048)"
            row "parked KiB/thread, 2K stacks" "$(field kib_per_thread "$sout")" "goroutine" \
                "$(field kib_per_thread "$gout")" lower
        else
            note "  park_np with PARK_STACK=2048 failed (see $LOGS/park_np.log)"
        fi
    fi
fi

# 5. deadlines: the same ping-pong with and without a deadline per operation
log ""
log "[deadline] 64 B ping-pong over a socketpair, 1 worker, $N_DEADLINE round trips, ns"
if want deadline && have_np deadline_np; then
    out=$(NP_PROCS=1 timeout 300 "$B/deadline_np" "$N_DEADLINE" 2>>"$LOGS/deadline_np.log" | tail -n 1)
    if [ -z "$out" ] || [ -z "$(field none_ns "$out")" ]; then
        note "  deadline_np failed (see $LOGS/deadline_np.log)"
    else
        log "  $out"
        none=$(field none_ns "$out")
        row "deadline cost ns/rt" "$(field set_per_op_ns "$out")" "no deadlines" "$none" lower
        row "split deadlines ns/rt" "$(field split_ns "$out")" "no deadlines" "$none" lower
        row "deadline ns/set call" "$(field overhead_ns "$out")" "-" "-" lower
    fi
fi

# 5b. wake-ups with many descriptors parked on one worker, per poller port:
# the figure at the largest count that fits against the same port at the
# smallest (ratio: how the cost of an event grows with the descriptors)
WAKE_N=${BENCH_WAKE_N:-"1000 10000 50000"}
log ""
log "[wake] us per wake-up, N readers parked on one worker (wake_np, $N_WAKE wake-ups, best of 3)"
if want wake && have_np wake_np; then
    for pk in epoll io_uring poll; do
        small= big= bign=
        for wn in $WAKE_N; do
            out=$(NP_POLLER=$pk timeout 600 "$B/wake_np" "$wn" "$N_WAKE" 2>>"$LOGS/wake_np.log" | tail -n 1)
            if [ -z "$out" ]; then
                note "  wake_np $pk n=$wn failed (see $LOGS/wake_np.log)"
                continue
            fi
            log "  $out"
            v=$(field wake_us "$out")
            [ -n "$v" ] || continue # skipped: more descriptors than the limit
            [ -n "$small" ] || { small=$v smalln=$wn; continue; }
            big=$v bign=$wn
        done
        [ -n "$big" ] && row "$pk: wake-up us, n=$bign" "$big" "$pk n=$smalln" "$small" lower
    done
fi

# 6. echo
ECHO_SERVERS="np:echo_np epoll:echo_epoll threads:echo_threads go:go_echo"
declare -A E # E[server,conns,key]
MAXC=0
for c in $CONNS; do [ "$c" -gt "$MAXC" ] && MAXC=$c; done
log ""
log "[echo] closed loop, 512 B messages, ${SECS}s per run, 2 client threads"
if ! want echo; then
    :
elif ! have_peer echo_client; then
    note "  no echo client: echo skipped"
else
    ECHO_OK=
    have_np echo_np && ECHO_OK=1
    [ -n "$ECHO_OK" ] && echo_series E "$CONNS" "" rps \
        rps p50_us p99_us srv_cpu_us_per_req srv_rss0_kib srv_rss_idle_kib \
        rss_kib_conn kstack_kib_conn kib_conn threads
fi
for c in $CONNS; do
    [ -n "${E[np,$c,rps]:-}" ] || continue
    for s in epoll threads go; do
        [ -n "${E[$s,$c,rps]:-}" ] || continue
        row "echo c=$c rps" "${E[np,$c,rps]}" "$s" "${E[$s,$c,rps]}" higher
        row "echo c=$c p50 us" "${E[np,$c,p50_us]}" "$s" "${E[$s,$c,p50_us]}" lower
        row "echo c=$c p99 us" "${E[np,$c,p99_us]}" "$s" "${E[$s,$c,p99_us]}" lower
        row "echo c=$c srv CPU us/req" "${E[np,$c,srv_cpu_us_per_req]}" "$s" \
            "${E[$s,$c,srv_cpu_us_per_req]}" lower
    done
done
rss_per_conn() { # server: KiB per idle connection at MAXC
    local a=${E[$1,$MAXC,srv_rss0_kib]:-} b=${E[$1,$MAXC,srv_rss_idle_kib]:-}
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" -ge 0 ] &&
        awk -v a="$a" -v b="$b" -v c="$MAXC" 'BEGIN{printf "%.2f\n", (b-a)/c}'
}
if [ "$MAXC" -gt 0 ]; then
    npr=$(rss_per_conn np)
    for s in epoll threads go; do
        pr=$(rss_per_conn "$s")
        [ -n "$npr" ] && [ -n "$pr" ] && row "echo idle KiB/conn c=$MAXC" "$npr" "$s" "$pr" lower
    done
fi

# 6b. echo at a fixed load: every server gets the same request rate, so
# the latency figures compare service, not how hard each server lets the
# closed-loop client (sharing the cores) push.  Per server, its run with
# the lowest p99 is kept.
declare -A L # L[server,conns,key]
log ""
log "[echo-load] fixed load, $RATE requests/s in all, 512 B messages, ${SECS}s per run"
[ -n "${ECHO_OK:-}" ] && want echo-load && echo_series L "$LOAD_CONNS" "$RATE" p99 \
    rps p50_us p99_us srv_cpu_us_per_req
for c in $LOAD_CONNS; do
    [ -n "${L[np,$c,p99_us]:-}" ] || continue
    for s in epoll threads go; do
        [ -n "${L[$s,$c,p99_us]:-}" ] || continue
        row "echo $RATE/s c=$c p50 us" "${L[np,$c,p50_us]}" "$s" "${L[$s,$c,p50_us]}" lower
        row "echo $RATE/s c=$c p99 us" "${L[np,$c,p99_us]}" "$s" "${L[$s,$c,p99_us]}" lower
        row "echo $RATE/s c=$c CPU us/req" "${L[np,$c,srv_cpu_us_per_req]}" "$s" \
            "${L[$s,$c,srv_cpu_us_per_req]}" lower
    done
done

# 7. echo_np under each poller port: netpoll against itself, peer = epoll
PORTS="epoll io_uring poll"
declare -A P # P[port,conns,key]
declare -A PSKIP # ports that fell back to epoll
log ""
log "[ports] echo_np with NP_POLLER=epoll, io_uring, poll; as [echo], ${SECS}s per run"
if want ports && have_np echo_np && have_peer echo_client; then
    for pk in $PORTS; do : >"$LOGS/echo_np-$pk.log"; done
    for c in $PORT_CONNS; do
        for _ in $(seq "$REPEAT"); do
        for pk in $PORTS; do
            [ -n "${PSKIP[$pk]:-}" ] && continue
            take_port
            start_server "echo_np-$pk" "$port" env NP_POLLER="$pk" "$B/echo_np" || continue
            if grep -q 'unavailable' "$LOGS/echo_np-$pk.log"; then
                # the runtime fell back to epoll: its figures would be epoll's
                note "  NP_POLLER=$pk unavailable here (see $LOGS/echo_np-$pk.log): its rows skipped"
                PSKIP[$pk]=1
                stop_server
                continue
            fi
            echo_measure "echo_np-$pk" "$c" || continue
            log "  $(printf '%-8s' "$pk") $EOUT"
            beats "$(field rps "$EOUT")" "${P[$pk,$c,rps]:-}" || continue
            for k in rps p99_us srv_cpu_us_per_req; do
                P[$pk,$c,$k]=$(field "$k" "$EOUT")
            done
        done
        done
    done
fi
for c in $PORT_CONNS; do
    [ -n "${P[epoll,$c,rps]:-}" ] || continue
    for pk in io_uring poll; do
        [ -n "${P[$pk,$c,rps]:-}" ] || continue
        row "$pk: echo c=$c rps" "${P[$pk,$c,rps]}" "epoll port" "${P[epoll,$c,rps]}" higher
        row "$pk: echo c=$c srv CPU us/req" "${P[$pk,$c,srv_cpu_us_per_req]}" "epoll port" \
            "${P[epoll,$c,srv_cpu_us_per_req]}" lower
        row "$pk: echo c=$c p99 us" "${P[$pk,$c,p99_us]}" "epoll port" "${P[epoll,$c,p99_us]}" lower
    done
done

# 8. HTTP
log ""
log "[http] wrk -t2 keep-alive hello world, ${SECS}s per run"
declare -A H
to_us() { # wrk latency (e.g. 1.23ms) -> microseconds
    awk -v v="$1" 'BEGIN{u=v; sub(/[0-9.]+/,"",u); n=v+0;
        if(u=="us")n=n; else if(u=="ms")n*=1000; else if(u=="s")n*=1000000; else n=-1;
        printf "%.0f\n", n}'
}
if want http && [ -n "$HAVE_WRK" ] && have_np http_np; then
    for c in $HTTP_CONNS; do
        for _ in $(seq "$REPEAT"); do
        for sp in np:http_np go:go_http goraw:go_httpraw; do
            s=${sp%%:*} prog=${sp#*:}
            [ -x "$B/$prog" ] || { note "  $prog missing"; continue; }
            take_port
            start_server "$prog" "$port" "$B/$prog" || continue
            out=$(timeout $((SECS + 60)) wrk -t2 -c"$c" -d"${SECS}s" --timeout 10s --latency \
                "http://127.0.0.1:$port/" 2>>"$LOGS/wrk.log")
            stop_server
            rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/{print $2}')
            if [ -z "$rps" ]; then
                note "  $s c=$c: wrk failed (see $LOGS/wrk.log)"
                printf '%s\n' "$out" >>"$LOGS/wrk.log"
                continue
            fi
            p50=$(to_us "$(printf '%s\n' "$out" | awk '$1=="50%"{print $2}')")
            p99=$(to_us "$(printf '%s\n' "$out" | awk '$1=="99%"{print $2}')")
            errs=$(printf '%s\n' "$out" | awk '/Socket errors|Non-2xx/{printf "%s ", $0}')
            log "  $(printf '%-6s' "$s") c=$c rps=$rps p50_us=$p50 p99_us=$p99${errs:+ [$errs]}"
            beats "$rps" "${H[$s,$c,rps]:-}" || continue
            H[$s,$c,rps]=$rps H[$s,$c,p50]=$p50 H[$s,$c,p99]=$p99
        done
        done
        for s in go goraw; do
            [ -n "${H[np,$c,rps]:-}" ] && [ -n "${H[$s,$c,rps]:-}" ] || continue
            name=$([ $s = go ] && echo "Go net/http" || echo "Go net, same parser")
            row "http c=$c rps" "${H[np,$c,rps]}" "$name" "${H[$s,$c,rps]}" higher
            row "http c=$c p99 us" "${H[np,$c,p99]}" "$name" "${H[$s,$c,p99]}" lower
        done
    done
fi

# 9. legacy servers: plain threads vs nprun vs Go
want legacy && legacy_section

# 10. real Debian programs (t/shim/real), plain and under nprun -p 2
if want real; then
    log ""
    log "[real] python3 http.server, redis-server, nginx: plain and nprun -p $LEG_PROCS, ${SECS}s per run"
    REAL_PROCS=$LEG_PROCS REAL_SECS=$SECS timeout -s KILL 600 sh "$ROOT/bench/real.sh" "$BUILD" "$OUT/real.tsv" 2>&1 |
        tee -a "$RES" | sed 's/^/  /'
fi

# ---- report --------------------------------------------------------------
log ""
log "ratio = netpoll / peer  (\"better\": which direction favours netpoll)"
log "rows \"io_uring:\"/\"poll:\" are echo_np on that poller port, against its epoll port"
log "rows \"PORT: wake-up us\" are wake_np on that port at its largest count, against its smallest"
W=28 # benchmark column: the longest name
for r in "${ROWS[@]}"; do
    name=${r%%|*}
    [ ${#name} -gt $W ] && W=${#name}
done
log "$(printf "%-${W}s %12s  %-24s %12s %8s  %s" benchmark netpoll peer 'peer fig' ratio better)"
log "$(printf '%.0s-' $(seq $((W + 70))))"
for r in "${ROWS[@]}"; do
    IFS='|' read -r name np pn pv better <<<"$r"
    ratio=$(awk -v a="$np" -v b="$pv" 'BEGIN{ if (b+0 > 0 && a+0 >= 0) printf "%.3g", a/b; else print "-" }')
    log "$(printf "%-${W}s %12s  %-24s %12s %8s  %s" "$name" "$np" "$pn" "$pv" "$ratio" "$better")"
done
[ ${#ROWS[@]} -eq 0 ] && log "(no rows: netpoll programs missing?)"
legacy_report
log ""
log "results: $RES"
write_results
exit 0

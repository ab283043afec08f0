#!/usr/bin/env bash
# bench/demo.sh - the before/after of the preload shim (`make demo`).
#
# Runs one unmodified thread-per-connection echo server,
# BUILD_DIR/bench/legacy_echo (bench/legacy_echo.c: plain C11 + pthreads,
# an OS thread per connection, no netpoll in it), first as it is, then
# under `nprun -p PROCS` (its threads become green threads on a few
# workers), each loaded by BUILD_DIR/bench/echo_client with CONNS
# connections for SECONDS (closed loop, 512 B messages, 127.0.0.1).  While
# the connections are held it samples the server's OS threads
# (/proc/PID/status Threads:), its VmRSS and the kernel's KernelStack
# (/proc/meminfo, system-wide: taken at the server's peak thread count,
# the least of those samples, against the least of 3 before); prints a side-by-side table: OS threads, memory
# (RSS growth + kernel stacks growth over the idle server), throughput,
# p99 round trip.
#
# Usage: bench/demo.sh [BUILD_DIR]   (default: build; `make demo` builds
#        legacy_echo, echo_client, the shim and nprun first)
# Environment: DEMO_CONNS=3000 DEMO_SECONDS=3 DEMO_PROCS=2 DEMO_PORT=17600
# Exit status 1 when a run failed (server died, client failed).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

BUILD=${1:-build}
B=$BUILD/bench
NPRUN=$BUILD/bin/nprun
CONNS=${DEMO_CONNS:-3000}
SECS=${DEMO_SECONDS:-3}
PROCS=${DEMO_PROCS:-2}
PORT=${DEMO_PORT:-17600}
LOG=$B/logs/demo
mkdir -p "$LOG" || exit 1

for f in "$B/legacy_echo" "$B/echo_client" "$NPRUN" "$BUILD/lib/libnetpoll-preload.so"; do
    [ -e "$f" ] || { echo "demo: $f missing (make B=$BUILD demo builds it)" >&2; exit 1; }
done

# Descriptors: the server and the client each need one per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((CONNS + 100)) ]; then
    CONNS=$((nofile - 100))
    echo "demo: descriptor limit $nofile: $CONNS connections" >&2
fi

listening() { # port: is a socket listening on it?
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

kib() { # pid field: a KiB figure of /proc/PID/status, or of /proc/meminfo without a pid
    local k v _ f=/proc/meminfo
    [ -n "$1" ] && f=/proc/$1/status
    while read -r k v _; do [ "$k" = "$2:" ] && { echo "$v"; return; }; done 2>/dev/null <"$f"
    echo 0
}

field() { printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k{print $2; exit}'; }

TPID= SPID=
stop() {
    [ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null
    [ -n "$TPID" ] && { kill -TERM "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null; }
    TPID= SPID=
}
trap stop EXIT
trap 'stop; exit 130' INT TERM

declare -A R # R[mode,key]
FAIL=0

# run MODE CMD...: start the server, load it, sample it, stop it
run() {
    local mode=$1 port rss0 ks0 rss=0 thr=0 ks=0 t v out cpid rc
    shift
    while listening "$PORT"; do PORT=$((PORT + 1)); done
    port=$PORT
    PORT=$((PORT + 1))
    timeout -s KILL 120 "$@" "$port" >"$LOG/server-$mode.log" 2>&1 &
    TPID=$!
    for _ in $(seq 50); do
        SPID=$(awk '{print $1}' "/proc/$TPID/task/$TPID/children" 2>/dev/null)
        [ -z "$SPID" ] && SPID=$(ps -o pid= --ppid "$TPID" 2>/dev/null | awk 'NR==1{print $1}')
        [ -n "$SPID" ] && listening "$port" && break
        sleep 0.1
    done
    if [ -z "$SPID" ] || ! listening "$port"; then
        echo "demo: the $mode server did not start (see $LOG/server-$mode.log)" >&2
        stop
        FAIL=1
        return 1
    fi
    sleep 0.2
    rss0=$(kib "$SPID" VmRSS) ks0=$(kib "" KernelStack)
    for _ in 1 2; do # KernelStack is system-wide: the least of 3 samples
        sleep 0.1
        v=$(kib "" KernelStack); [ "$v" -lt "$ks0" ] && ks0=$v
    done
    ECHO_SERVER_PID=$SPID timeout $((SECS + 60)) "$B/echo_client" 127.0.0.1 "$port" "$CONNS" "$SECS" 512 \
        >"$LOG/client-$mode.out" 2>"$LOG/client-$mode.log" &
    cpid=$!
    # while the connections are held: peak RSS and threads; KernelStack at
    # the peak thread count (the least such sample: other processes'
    # threads come and go)
    while kill -0 "$cpid" 2>/dev/null; do
        v=$(kib "$SPID" VmRSS); [ "$v" -gt "$rss" ] && rss=$v
        t=$(kib "$SPID" Threads) v=$(kib "" KernelStack)
        if [ "$t" -gt "$thr" ]; then
            thr=$t ks=$v
        elif [ "$t" -eq "$thr" ] && [ "$v" -lt "$ks" ]; then
            ks=$v
        fi
        sleep 0.2
    done
    wait "$cpid"
    rc=$?
    out=$(cat "$LOG/client-$mode.out")
    if ! kill -0 "$SPID" 2>/dev/null; then
        echo "demo: the $mode server died under load (see $LOG/server-$mode.log)" >&2
        FAIL=1
    fi
    stop
    if [ $rc -ne 0 ] || [ -z "$out" ]; then
        echo "demo: echo_client failed against the $mode server (rc $rc, see $LOG/client-$mode.log)" >&2
        FAIL=1
        return 1
    fi
    R[$mode,threads]=$thr
    R[$mode,rss]=$((rss - rss0))
    R[$mode,ks]=$((ks - ks0))
    R[$mode,rps]=$(field rps "$out")
    R[$mode,p99]=$(field p99_us "$out")
    R[$mode,ok]=1
}

echo "netpoll demo: one unmodified thread-per-connection echo server (bench/legacy_echo.c,"
echo "pthreads and blocking read/write, no netpoll in it), $CONNS clients for ${SECS}s each way"
echo "  plain:  $B/legacy_echo PORT"
echo "  nprun:  $NPRUN -p $PROCS -- $B/legacy_echo PORT"
run plain "$B/legacy_echo"
run nprun "$NPRUN" -p "$PROCS" -- "$B/legacy_echo"

cell() { # mode key format: the figure, or "failed"
    [ -n "${R[$1,ok]:-}" ] || { echo failed; return; }
    awk -v t="$1" -v th="${R[$1,threads]}" -v r="${R[$1,rss]}" -v k="${R[$1,ks]}" \
        -v rps="${R[$1,rps]}" -v p="${R[$1,p99]}" -v c="$CONNS" -v key="$2" 'BEGIN{
        if (key=="threads") printf "%d", th;
        else if (key=="mem") printf "%.1f MiB", (r+k)/1024;
        else if (key=="rss") printf "%.1f MiB", r/1024;
        else if (key=="ks") printf "%.1f MiB", k/1024;
        else if (key=="perconn") printf "%.1f KiB", (r+k)/c;
        else if (key=="rps") printf "%.0f /s", rps;
        else if (key=="p99") printf "%.1f ms", p/1000;
    }'
}
echo
printf '  %-36s %14s %14s\n' "" "plain" "nprun -p $PROCS"
printf '  %-36s %14s %14s\n' "server OS threads (loaded)" "$(cell plain threads)" "$(cell nprun threads)"
printf '  %-36s %14s %14s\n' "server memory (RSS + kernel stacks)" "$(cell plain mem)" "$(cell nprun mem)"
printf '  %-36s %14s %14s\n' "  RSS growth" "$(cell plain rss)" "$(cell nprun rss)"
printf '  %-36s %14s %14s\n' "  kernel stacks growth" "$(cell plain ks)" "$(cell nprun ks)"
printf '  %-36s %14s %14s\n' "  per connection" "$(cell plain perconn)" "$(cell nprun perconn)"
printf '  %-36s %14s %14s\n' "throughput (echoes, 512 B)" "$(cell plain rps)" "$(cell nprun rps)"
printf '  %-36s %14s %14s\n' "p99 round trip" "$(cell plain p99)" "$(cell nprun p99)"
echo "  (growth: peak while loaded over the idle server; kernel stacks: KernelStack of"
echo "   /proc/meminfo, system-wide; the client runs on the same machine)"
exit $FAIL

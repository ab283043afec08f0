#!/bin/sh
# The dump under the preload shim: an unmodified threaded program run with
# `nprun --dump-on QUIT` lists its legacy threads on SIGQUIT, each with its
# name and the call it is blocked in, and goes on to exit normally.
#   sh t/shim/dump-check.sh BUILD_DIR
# Prints a line per check and "dump: N passed, M failed"; exits 1 on failure.

build=${1:?usage: sh t/shim/dump-check.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd) || exit 2
shim=$build/lib/libnetpoll-preload.so
nprun=$build/bin/nprun
[ -f "$shim" ] && [ -x "$nprun" ] || { echo "dump-check.sh: build $shim and $nprun first" >&2; exit 2; }
mkdir -p "$build/t/shim" || exit 2
prog=$build/t/shim/dump_threads
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -g -fno-omit-frame-pointer -rdynamic -pthread \
    -o "$prog" "$here/dump_threads.c" || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dump-check.XXXXXX") || exit 2
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
unset NP_DUMP_SIGNAL NPDEBUG
NPRUN_PRELOAD=$shim
export NPRUN_PRELOAD

passed=0
failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# wait_for FILE PATTERN: up to 20 s for a line matching PATTERN.
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && return 1
        sleep 0.1
    done
}

mkfifo "$tmp/in" || exit 2
exec 3<>"$tmp/in" # both ends held here: the program's read waits
timeout -k 5 60 "$nprun" -p 2 --dump-on QUIT -- "$prog" < "$tmp/in" > "$tmp/out" 2> "$tmp/err" &
runner=$!
if ! wait_for "$tmp/out" '^ready pid='; then
    fail "the program did not get ready: $(cat "$tmp/out" "$tmp/err")"
    echo "dump: $passed passed, $failed failed"
    exit 1
fi
pid=$(sed -n 's/^ready pid=//p' "$tmp/out")
if grep -q '^quit action=default$' "$tmp/out"; then ok "sigaction(SIGQUIT) reads the default, not the dump's handler"
else fail "sigaction(SIGQUIT) reads: $(grep '^quit action=' "$tmp/out")"; fi
kill -QUIT "$pid"
if wait_for "$tmp/err" '^netpoll: end of dump'; then ok "SIGQUIT: a dump on stderr"
else fail "SIGQUIT: no dump on stderr"; fi

# expect DESCRIPTION NAME STATE FRAME...: the block of the thread named NAME
# (or of main, for NAME "") has STATE and a line with each FRAME in it
# (pthread_mutex_lock and pthread_cond_wait end in tail calls: their frames
# are the shim's functions they jump to).
expect() {
    what=$1 name=$2 state=$3
    shift 3
    if [ -n "$name" ]; then
        awk -v n="\"$name\" (pthread)" 'index($0, "thread ") == 1 { on = index($0, n) > 0 } on' "$tmp/err" > "$tmp/blk"
    else
        awk 'index($0, "thread ") == 1 { on = index($0, "\"") == 0 && index($0, "(pthread)") > 0 } on' "$tmp/err" \
            | awk '/^thread /{b=""} {b=b $0 "\n"} /entry/{if (b ~ / main\+0x/) printf "%s", b}' > "$tmp/blk"
    fi
    bad=
    grep -qF "$state" "$tmp/blk" || bad="no '$state'"
    for f in "$@"; do
        grep -qF "$f" "$tmp/blk" || bad="$bad no frame '$f'"
    done
    if [ -z "$bad" ]; then ok "$what: $(head -n 1 "$tmp/blk")"
    else fail "$what:$bad in:"; sed 's/^/     | /' "$tmp/blk"; fi
}

expect "read(2) on stdin" reader "[IO wait fd 0 read, for " " read+0x" " legacy_reader+0x"
expect "pthread_mutex_lock" locker "[futex 0x" "::mutex_lock(pthread_mutex_t" " legacy_locker+0x"
expect "pthread_cond_wait" waiter "[futex 0x" "::cond_wait(pthread_cond_t" " legacy_waiter+0x"
expect "sleep(3)" sleeper ", deadline in " " nanosleep+0x" " legacy_sleeper+0x"
expect "main in pthread_join" "" "[join thread " " pthread_join+0x" " main+0x"
if grep -q '^worker 1 (tid ' "$tmp/err"; then ok "both workers listed"; else fail "workers missing"; fi

# It goes on: the reader gets its byte, main joins it and exits 0.
echo x >&3
wait "$runner"
rc=$?
pid=
if [ "$rc" = 0 ] && grep -q '^done$' "$tmp/out"; then ok "the program went on and exited 0"
else fail "the program ended with status $rc after the dump"; sed 's/^/     | /' "$tmp/err" | tail -n 5; fi

# The program sends the signal itself: raise(3) and kill(getpid()) from a
# green thread, and raise(3) before any thread, as the dump thread starts.
# Each dumps and goes on; they ended the process, as the default action.
for how in self early; do
    timeout -k 5 30 "$nprun" -p 1 --dump-on QUIT -- "$prog" "$how" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    if [ "$rc" = 0 ] && grep -q '^done$' "$tmp/out" && grep -q '^netpoll: .*green threads' "$tmp/err"; then
        ok "$how: the program's own SIGQUIT dumps, and it goes on"
    else fail "$how: status $rc, dump lines $(grep -c . "$tmp/err")"; fi
done

echo "dump: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# The shim's test driver: unmodified threaded programs, run plain and under
# the netpoll preload shim, must pass the same way.
#
#   sh t/shim/run.sh BUILD_DIR
#
# Compiles each program in t/shim/ (plain C11 / C++20 and pthreads, no
# netpoll header) into BUILD_DIR/t/shim/, then runs it plain and, when
# BUILD_DIR/lib/libnetpoll-preload.so and BUILD_DIR/bin/nprun exist, under
# `nprun -p 1` and `nprun -p 2`. Every run has a time limit (timeout 120) and
# must exit 0. A program that prints `os_threads=K` while it holds
# `connections_open=N` >= 1000 connections must, under nprun -p P, have
# K <= P + 8 OS threads (plain runs just show K).
#
# Prints one line per run, then "shim: N passed, M failed"; exits 1 on any
# failure. Environment: CC, CXX (compilers), SHIM_TEST_CFLAGS (extra flags
# for every program, e.g. -fsanitize=address,undefined), SHIM_TESTS (a
# space-separated subset of the program names).

build=${1:?usage: sh t/shim/run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/t/shim" || exit 2
build=$(cd "$build" && pwd)
out=$build/t/shim
CC=${CC:-cc}
CXX=${CXX:-c++}
extra=${SHIM_TEST_CFLAGS:-}

# Plain runs of 1000 connections need 2 descriptors per connection and more.
# shellcheck disable=SC3045 # dash and bash both have ulimit -H and -n
hard=$(ulimit -Hn)
# shellcheck disable=SC3045
ulimit -n "$hard" 2>/dev/null || ulimit -n 20000 2>/dev/null || true

shim=$build/lib/libnetpoll-preload.so
nprun=$build/bin/nprun
if [ -f "$shim" ] && [ -x "$nprun" ]; then
    have_shim=1
    NPRUN_PRELOAD=$shim   # this build's shim, whatever the caller had set
    export NPRUN_PRELOAD
    echo "shim: $shim via $nprun: each program runs plain, then nprun -p 1 and -p 2"
else
    have_shim=0
    echo "shim: $shim or $nprun missing: building and running the programs plain only"
fi

# name:source:arguments (commas between arguments; the machine has 2 cores
# and an open-file hard limit of 20000)
programs='echo_tls:echo_tls.c:1000,20
http_tls:http_tls.c:1000,20
stdio_sync:stdio_sync.c:
cxx_threads:cxx_threads.cpp:64,100
errno_stress:errno_stress.c:500,3
fork_threads:fork_threads.c:
migrate:migrate.c:
dup_timeout:dup_timeout.c:
pipe_wrong_end:pipe_wrong_end.c:
kernel_wait:kernel_wait.c:
dns_overlap:dns_overlap.c:
nss_overlap:nss_overlap.c:
signal_fd:signal_fd.c:
blocked_burst:blocked_burst.c:
process_life:process_life.c:
signals:signals.c:
pitfalls:pitfalls.c:
event_fds:event_fds.c:
shared_accept:shared_accept.c:
same_fd:same_fd.c:
join_detach:join_detach.c:
writev_pipe:writev_pipe.c:
busy:busy.c:
fork_paths:fork_paths.c:
short_reads:short_reads.c:
mmsg:mmsg.c:
futex_ops:futex_ops.c:
plain_sem_eintr:plain_sem_eintr.c:
glibc_mutex:glibc_mutex.c:
dl_lock:dl_lock.c:
thread_timer:thread_timer.c:
fault_handlers:fault_handlers.c:
send_reset:send_reset.c:
far_timeouts:far_timeouts.c:
fortify:fortify.c:
go_library:go_library.c:
go_no_note:go_no_note.c:
stdio_park:stdio_park.c:
stdio_write_park:stdio_write_park.c:
ptrace_tracer:ptrace_tracer.c:
longjmp_poke:longjmp_poke.c:
thread_ids:thread_ids.c:
syscall_dispatch:syscall_dispatch.c:
slow_syscall:slow_syscall.c:
pending_exits:pending_exits.c:
first_thread_cost:first_thread_cost.c:
thread_affinity:thread_affinity.c:
seccomp_sandbox:seccomp_sandbox.c:
early_env:early_env.c:
gs_base:gs_base.c:
fork_owner:fork_owner.c:
seccomp_trap:seccomp_trap.c:
single_thread:single_thread.c:
closed_stdio:closed_stdio.c:
action_pending:action_pending.c:
ignored_sigwait:ignored_sigwait.c:
sigchld_first_wait:sigchld_first_wait.c:
handler_first_call:handler_first_call.c:
short_sleeps:short_sleeps.c:
main_mutex:main_mutex.c:
nested_signal:nested_signal.c:
fork_thread_end:fork_thread_end.c:
stop_resume:stop_resume.c:
fd_numbers:fd_numbers.c:
sendfile_park:sendfile_park.c:
linger_close:linger_close.c:
yield_spread:yield_spread.c:
own_wrappers:own_wrappers.c:
signal_partial:signal_partial.c:
uring_fds:uring_fds.c:
sleep_left:sleep_left.c:
default_stack:default_stack.c:
c11_threads:c11_threads.c:
thread_gaps:thread_gaps.c:
interrupt_race:interrupt_race.c:
splice_park:splice_park.c:
timer_queue:timer_queue.c:
signal_preempted:signal_preempted.c:
many_blocked:many_blocked.c:'

passed=0
failed=0
log=$(mktemp "${TMPDIR:-/tmp}/shim-run.XXXXXX") || exit 2
trap 'rm -f "$log"' EXIT
trap 'exit 1' HUP INT TERM

fail() {   # fail LINE: a failed run, with the end of its output
    failed=$((failed + 1))
    echo "FAIL $1"
    grep -E 'FAILED|^FAIL|watchdog' "$log" | head -n 10 | sed 's/^/    ! /'
    tail -n 15 "$log" | sed 's/^/    | /'
}

selected() {
    [ -z "${SHIM_TESTS:-}" ] && return 0
    for s in $SHIM_TESTS; do [ "$s" = "$1" ] && return 0; done
    return 1
}

# run NAME MODE PROCS ARGS...: one run; MODE is plain or nprun.
run() {
    name=$1 mode=$2 procs=$3
    shift 3
    if [ "$mode" = plain ]; then
        label="$name plain"
        timeout -k 5 120 "$out/$name" "$@" < /dev/null > "$log" 2>&1
    elif [ "$mode" = off ]; then
        # Preloaded but stepping aside: every call passes straight to glibc,
        # as for a setuid program or an unsupported glibc.
        label="$name nprun -p $procs, NP_SHIM=0"
        NP_SHIM=0 timeout -k 5 120 "$nprun" -p "$procs" -- "$out/$name" "$@" < /dev/null > "$log" 2>&1
    else
        label="$name nprun -p $procs"
        timeout -k 5 120 "$nprun" -p "$procs" -- "$out/$name" "$@" < /dev/null > "$log" 2>&1
    fi
    rc=$?
    threads=$(sed -n 's/^os_threads=\([0-9-]*\)$/\1/p' "$log" | tail -n 1)
    conns=$(sed -n 's/^connections_open=\([0-9]*\)$/\1/p' "$log" | tail -n 1)
    info=
    [ -n "$threads" ] && info=" (os_threads=$threads)"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail "$label: timed out after 120 s$info"
        return
    fi
    if [ "$rc" -ne 0 ]; then
        fail "$label: exit status $rc$info"
        return
    fi
    if [ "$mode" = nprun ] && [ -n "$conns" ] && [ "$conns" -ge 1000 ]; then
        limit=$((procs + 8))
        if [ -z "$threads" ] || [ "$threads" -lt 1 ] || [ "$threads" -gt "$limit" ]; then
            fail "$label: os_threads=${threads:-missing} with $conns connections open, want <= $limit"
            return
        fi
    fi
    passed=$((passed + 1))
    # A program that cannot set up what it tests (dns_overlap: no private
    # namespace) passes and says why.
    skip=$(sed -n 's/^SKIP //p' "$log" | head -n 1)
    [ -n "$skip" ] && info="$info (skipped: $skip)"
    echo "ok $label$info"
}

for entry in $programs; do
    name=${entry%%:*}
    rest=${entry#*:}
    src=${rest%%:*}
    args=$(echo "${rest#*:}" | tr , ' ')
    selected "$name" || continue
    case $src in
    *.cpp) set -- "$CXX" -std=c++20 -O2 -pthread ;;
    *) set -- "$CC" -std=c11 -D_GNU_SOURCE -O2 -pthread ;;
    esac
    # NAME_lib.c beside it: a shared library of its own it links with (its
    # constructors run before the preload shim's)
    libs=
    if [ -f "$here/${name}_lib.c" ]; then
        # shellcheck disable=SC2086 # extra flags are words
        if ! "$@" $extra -fPIC -shared -o "$out/lib${name}.so" "$here/${name}_lib.c" > "$log" 2>&1; then
            fail "$name: ${name}_lib.c does not compile"
            continue
        fi
        libs="-L$out -l$name -Wl,-rpath,$out"
    fi
    # shellcheck disable=SC2086 # extra flags and libs are words
    if ! "$@" $extra -o "$out/$name" "$here/$src" $libs > "$log" 2>&1; then
        fail "$name: does not compile"
        continue
    fi
    # shellcheck disable=SC2086 # args are words
    run "$name" plain 0 $args
    if [ "$have_shim" = 1 ]; then
        # shellcheck disable=SC2086
        run "$name" nprun 1 $args
        # shellcheck disable=SC2086
        run "$name" nprun 2 $args
        # shellcheck disable=SC2086
        run "$name" off 2 $args
    fi
done

echo "shim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# The library imports no name a preload shim interposes: under LD_PRELOAD
# such a call would reach the shim and the engine would recurse into itself
# (the engine calls src/sys.hpp and src/libc_real.cpp instead).
#
# usage: [SHIM=libnetpoll-preload.so] t/imports-check.sh LIB [OBJ...]
# The objects are checked too: the link redirects jemalloc's calls to some of
# these names (-Wl,--wrap), which would hide an engine call to them.  With
# SHIM, every function the shim defines counts as interposed, but for those
# the engine calls on purpose (shim/engine_fds.cpp notes what they open).
set -euf
lib=$1
shift

# The interposed names; __NAME, NAME64 and __NAME_chk are matched as NAME.
interposed='read write readv writev pread pwrite recv recvfrom recvmsg send sendto sendmsg
accept accept4 connect close poll ppoll select pselect epoll_wait epoll_pwait epoll_pwait2
fcntl ioctl dup dup2 dup3 socket socketpair pipe pipe2 nanosleep clock_nanosleep sleep usleep
syscall pthread_create pthread_join pthread_detach pthread_exit pthread_mutex_* pthread_cond_*
pthread_rwlock_* pthread_barrier_* sem_wait sem_timedwait sem_clockwait sem_trywait sem_post
pthread_key_* pthread_getspecific pthread_setspecific pthread_once sched_yield fork sigaction signal
getaddrinfo getnameinfo gethostbyname* gethostbyaddr* res_query res_search res_querydomain res_send
res_nquery res_nsearch res_nquerydomain res_nsend'
on_purpose='epoll_create epoll_create1 eventfd io_uring_queue_init_params'
if [ -n "${SHIM:-}" ]; then
  [ -f "$SHIM" ] || { echo "imports: no $SHIM" >&2; exit 2; }
  for n in $(nm -D --defined-only "$SHIM" | awk '$2 ~ /^[TWi]$/ {sub(/@.*/, "", $3); print $3}'); do
    case " $on_purpose " in *" $n "*) continue ;; esac
    interposed="$interposed $n"
  done
fi

# Prints the interposed names among the symbols on stdin (one a line).
pick() {
  while read -r sym; do
    base=${sym%%@*}
    base=${base#__}
    base=${base%_chk}
    base=${base%64}
    for p in $interposed; do
      case $base in $p) echo "$sym"; break ;; esac
    done
  done
}

fail=0
bad=$(nm -D --undefined-only "$lib" | awk '{print $NF}' | pick)
[ -z "$bad" ] || { echo "imports: $lib imports interposed names:"; echo "$bad"; fail=1; }
for o in "$@"; do
  bad=$(nm --undefined-only "$o" | awk '{print $NF}' | pick)
  [ -z "$bad" ] || { echo "imports: $o calls interposed names:"; echo "$bad"; fail=1; }
done
[ $fail = 0 ] && echo "imports: ok (no interposed name in $(basename "$lib")$([ $# = 0 ] || echo " nor its $# objects"))"
exit $fail

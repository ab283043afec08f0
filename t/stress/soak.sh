#!/bin/sh
# make soak: t/stress/soak.c on each poller in turn, SOAK_SECONDS split
# between them (a third each: one poller per process, as np_init fixes it).
#
# The baseline: the pools keep what their peak needed (a stack pool per
# stack size, each with its own guard-page budget; the descriptor cache;
# the arenas), so soak.c's warm-up first makes a peak of every stack size
# the mix uses and one wave of 10,000 connections (a wave starts only when
# the last has ended: never a higher peak later), and the end of the soak
# is compared with the end of the warm-up, both taken once RSS holds still
# (four samples 0.5 s apart within 512 KiB; the scavenger returns idle
# stacks every 0.5 s, jemalloc its dirty pages over 10 s).
#   Descriptors: exact.
#   Mappings: SOAK_MAPS_TOL (default 16): allocators map and unmap extents
#     as peaks come and go.  Measured: +0 to +2.
#   RSS: SOAK_RSS_TOL_KB (default 8192): each stack pool keeps its 256 most
#     recent stacks committed, which stacks those are (and how deep they
#     were used) varies; allocator caches.  Measured: +0.4 to +1.4 MiB
#     (epoll, io_uring, poll, 10 to 40 s slices).  Before the warm-up made
#     the peak, a later, higher peak touched new stack slots: +13 MiB.
#
# usage: t/stress/soak.sh BUILD_DIR
set -u
b=$1
secs=${SOAK_SECONDS:-120}
pollers=${SOAK_POLLERS:-epoll io_uring poll}
n=$(echo $pollers | wc -w)
slice=$((secs / n)); [ $slice -ge 4 ] || slice=4
fail=0
echo "soak: $secs s, $slice s per poller ($pollers)"
for p in $pollers; do
  # The watchdog inside gives up 200 s past the slice; this is the backstop.
  NP_POLLER=$p SOAK_SECONDS=$slice timeout -s KILL $((slice + 300)) "$b/t/stress/soak" || {
    echo "soak: FAILED ($p, exit $?)"; fail=1; }
done
[ $fail = 0 ] && echo "soak: ok"
exit $fail

#!/bin/sh
# make check-faults: the checksummed echo stress (t/stress/echo_stress.c) on
# each poller, in a build whose system calls fail at random (src/fault.hpp).
# Per poller: a run with every kind of fault but resets (every connection
# without a tight deadline must complete), a run with resets too (a
# connection may end early, the API saying why), and accept under a real
# EMFILE; on io_uring, runs with most of its submissions refused.
# Bounded: each run has a watchdog, and a KILL after it.
#
# usage: t/stress/faults.sh BUILD_DIR      (NP_FAULT_SEED, NP_FAULT_RATE,
#        FAULT_CONNS, FAULT_POLLERS override the defaults)
set -u
b=$1
prog=$b/t/stress/echo_stress
seed=${NP_FAULT_SEED:-$(date +%s)}
rate=${NP_FAULT_RATE:-0.05}
conns=${FAULT_CONNS:-3000}
pollers=${FAULT_POLLERS:-epoll io_uring poll}
fail=0
echo "faults: seed $seed, rate $rate, $conns connections a run (NP_FAULT_SEED=$seed to repeat)"
for p in $pollers; do
  i=0
  for kinds in eintr,eagain,short,emfile,enomem,uring eintr,eagain,short,reset,emfile,enomem,uring; do
    i=$((i + 1))
    r=; [ $i = 2 ] && r=-R
    s=$((seed + i))
    NP_POLLER=$p NP_FAULT_SEED=$s NP_FAULT_RATE=$rate NP_FAULT_KINDS=$kinds \
      timeout -s KILL 90 "$prog" -n "$conns" -s "$s" -t 60 $r
    rc=$?
    if [ $rc != 0 ]; then
      echo "faults: FAILED ($p, kinds $kinds, NP_FAULT_SEED=$s NP_FAULT_RATE=$rate, exit $rc)"
      fail=1
    fi
  done
  # io_uring: nine in ten of its submissions refused (one worker, and two):
  # a refused break poll once left a worker blocked for good.
  if [ $p = io_uring ]; then
    for procs in 1 2; do
      NP_PROCS=$procs NP_POLLER=$p NP_FAULT_SEED=$seed NP_FAULT_RATE=0.9 NP_FAULT_KINDS=uring \
        timeout -s KILL 90 "$prog" -n "$conns" -s "$seed" -t 60 || {
        echo "faults: FAILED ($p, NP_PROCS=$procs, NP_FAULT_KINDS=uring NP_FAULT_SEED=$seed NP_FAULT_RATE=0.9)"; fail=1; }
    done
    # Closes while the ring is full of refused entries: every file let go.
    NP_POLLER=$p NP_FAULT_SEED=$seed NP_FAULT_RATE=0.995 NP_FAULT_KINDS=uring NP_FAULT_QUIET=1 \
      timeout -s KILL 120 "$b/t/stress/uring_close" -n 2000 -t 20 || {
      echo "faults: FAILED (uring_close, NP_FAULT_SEED=$seed NP_FAULT_RATE=0.995)"; fail=1; }
  fi
  # A real EMFILE, no injected faults.
  NP_POLLER=$p NP_FAULT_RATE=0 timeout -s KILL 60 "$prog" -E -t 30 || {
    echo "faults: FAILED ($p, real EMFILE)"; fail=1; }
done
[ $fail = 0 ] && echo "faults: ok"
exit $fail

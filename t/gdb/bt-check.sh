#!/bin/sh
# gdb's backtrace inside a green thread ends at the thread's entry
# (np_ctx_trampoline, whose CFI marks the outermost frame), with no
# "Backtrace stopped" complaint and no garbage frames after it.
set -eu
bin=$1
command -v gdb >/dev/null || { echo "gdb-bt: skipped (no gdb)"; exit 0; }
out=$(gdb -q -batch -ex 'break np_test_breakpoint_here' -ex run -ex bt "$bin" 2>&1) || true
frames=$(printf '%s\n' "$out" | grep -E '^#[0-9]+ ' || true)
last=$(printf '%s\n' "$frames" | tail -1)
fail=0
printf '%s\n' "$frames" | grep -q 'nested' || { echo "gdb-bt: no green frames"; fail=1; }
printf '%s\n' "$last" | grep -q 'np_ctx_trampoline' || { echo "gdb-bt: last frame is not the entry: $last"; fail=1; }
printf '%s\n' "$out" | grep -qi 'backtrace stopped' && { echo "gdb-bt: unwinder complained"; fail=1; }
if [ $fail = 0 ]; then
  echo "gdb-bt: ok ($(printf '%s\n' "$frames" | wc -l) frames, ends at np_ctx_trampoline)"
else
  printf '%s\n' "$out" | tail -20
fi
exit $fail

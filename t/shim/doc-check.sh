#!/bin/sh
# Every function the preload shim defines is listed in netpoll-preload(7).
set -eu
lib=${1:?usage: sh t/shim/doc-check.sh LIBNETPOLL-PRELOAD.SO}
page=$(dirname "$0")/../../man/man7/netpoll-preload.7
missing=0 n=0
for f in $(nm -D --defined-only "$lib" | awk '$2 == "T" || $2 == "W" {print $3}' | grep -v '^_Z'); do
  n=$((n + 1))
  grep -q "^\.Fn $f\b" "$page" || { echo "doc: $f is interposed but not in netpoll-preload(7)"; missing=$((missing + 1)); }
done
echo "doc: $n interposed functions, $missing undocumented"
[ "$missing" -eq 0 ]

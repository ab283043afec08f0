#!/bin/sh
# The library exports np_* only, in NETPOLL_1.x version nodes, with the right
# SONAME.  Which node each symbol is in is pinned by the baseline in t/abi/
# (t/abi/abi-diff.sh): new functions go in a new node, NETPOLL_1.1 and on.
set -eu
lib=$1
fail=0
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libnetpoll.so.1 ] || { echo "abi: SONAME is '$soname'"; fail=1; }
# np_* is the ABI; npshim_* is the preload shim's private seam, in a node
# of its own (include/netpoll_shim.h, not installed).
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TWDBVR]/ {print $3}' | grep -v '^np_' | grep -v '^npshim_' \
      | grep -v '^NETPOLL_1\.[0-9]*$' | grep -v '^NETPOLL_SHIM_PRIVATE$' || true)
[ -z "$bad" ] || { echo "abi: exported besides np_* and npshim_*:"; echo "$bad"; fail=1; }
private=$(nm -D --defined-only --with-symbol-versions "$lib" 2>/dev/null | awk '$3 ~ /^npshim_/ && $3 !~ /@@NETPOLL_SHIM_PRIVATE$/ {print $3}')
[ -z "$private" ] || { echo "abi: not at NETPOLL_SHIM_PRIVATE: $private"; fail=1; }
unversioned=$(nm -D --defined-only --with-symbol-versions "$lib" 2>/dev/null | awk '$3 ~ /^np_/ && $3 !~ /@@NETPOLL_1\.[0-9]+$/ {print $3}')
[ -z "$unversioned" ] || { echo "abi: not in a NETPOLL_1.x node: $unversioned"; fail=1; }
hdr=$(dirname "$0")/../include/netpoll.h
for f in $(grep -o '\bnp_[a-z_]*(' "$hdr" | tr -d '(' | sort -u); do
  nm -D --defined-only "$lib" | grep -q " $f@" || { echo "abi: $f declared but not exported"; fail=1; }
done
[ $fail = 0 ] && echo "abi: ok ($(nm -D --defined-only "$lib" | grep -c ' np_') symbols in NETPOLL_1.x)"
exit $fail

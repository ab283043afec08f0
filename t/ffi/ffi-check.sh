#!/bin/sh
# The library as FFI languages load it: dlopen'ed late, with no
# GLIBC_TUNABLES (its TLS, the private jemalloc's included, must not need
# static TLS to spare: src/jemalloc/build.sh).
#   1. its TLS: no initial-exec model (no DF_STATIC_TLS, no TPOFF relocations)
#   2. ffi_dlopen: every function of include/netpoll.h through libffi
#      (t/ffi/ffi_dlopen.c), and a check that it covers every function the
#      library exports, with the header's number of arguments
#   3. Python's ctypes: green threads with Python entry points and a TCP
#      echo through the ABI (t/ffi/ffi_echo.py)
#   4. the preload shim beside the library can be dlopen'ed too
#
# usage: t/ffi/ffi-check.sh BUILD/t/ffi/ffi_dlopen /abs/path/libnetpoll.so.1.x.y
set -u
bin=$1 lib=$2
dir=$(dirname "$0")
hdr=$dir/../../include/netpoll.h
fail=0
no() { echo "ffi: $*"; fail=1; }
unset GLIBC_TUNABLES

# 1. The TLS model.
readelf -dW "$lib" | grep -q 'STATIC_TLS' && no "$lib needs static TLS (DF_STATIC_TLS)"
ie=$(readelf -rW "$lib" | grep -Ec 'GOTTPOFF|_TPOFF|TLSIE')
[ "$ie" = 0 ] || no "$lib has $ie initial-exec TLS relocations"
tls=$(readelf -lW "$lib" | awk '$1 == "TLS" {print $6}')
echo "ffi: $(basename "$lib"): TLS block ${tls:-none}, no initial-exec relocation, no DF_STATIC_TLS"

# 2. Every function through libffi, and the coverage of the suite.
"$bin" "$lib" || no "ffi_dlopen failed"
# "name nargs" of each prototype in the header (comments out).
protos=$(awk '
  { buf = buf " " $0 }
  END {
    s = buf
    while ((i = index(s, "/*")) > 0) {
      j = index(substr(s, i + 2), "*/")
      s = substr(s, 1, i - 1) " " (j ? substr(s, i + 2 + j + 1) : "")
    }
    while (match(s, /[ *]np_[a-z_0-9]+\(/)) {
      name = substr(s, RSTART + 1, RLENGTH - 2)
      s = substr(s, RSTART + RLENGTH)
      depth = 1; n = 0; body = ""
      for (i = 1; i <= length(s) && depth > 0; i++) {
        ch = substr(s, i, 1)
        if (ch == "(") depth++
        else if (ch == ")") depth--
        else if (ch == "," && depth == 1) n++
        if (depth > 0) body = body ch
      }
      s = substr(s, i)
      gsub(/^[ \t]+|[ \t]+$/, "", body)
      print name, (body == "void" || body == "") ? 0 : n + 1
    }
  }' "$hdr" | sort -u)
covered=$("$bin" "$lib" --list | sort -u)
for f in $(nm -D --defined-only "$lib" | awk '$3 ~ /^np_/ {sub(/@.*/, "", $3); print $3}' | sort -u); do
  printf '%s\n' "$covered" | grep -q "^$f " || no "$f is exported but t/ffi/ffi_dlopen.c does not call it"
  printf '%s\n' "$protos" | grep -q "^$f " || no "$f is exported but not in include/netpoll.h"
done
printf '%s\n' "$covered" | while read -r f n; do
  h=$(printf '%s\n' "$protos" | awk -v f="$f" '$1 == f {print $2}')
  [ "$h" = "$n" ] || { echo "ffi: $f: $n arguments in t/ffi/ffi_dlopen.c, '${h:-none}' in the header"; exit 1; }
done || fail=1

# 3. Python's ctypes.
if command -v python3 >/dev/null; then
  timeout -s KILL 120 python3 "$dir/ffi_echo.py" "$lib" || no "ffi_echo.py failed"
else
  no "python3 missing"
fi

# 4. The preload shim, dlopen'ed (its own TLS is initial-exec, a few bytes:
#    within what glibc keeps spare).
shim=$(dirname "$lib")/libnetpoll-preload.so
if [ -f "$shim" ] && command -v python3 >/dev/null; then
  out=$(timeout -s KILL 60 python3 -c '
import ctypes, sys, threading
ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
ran = []
t = threading.Thread(target=lambda: ran.append(1)); t.start(); t.join()
print("ok" if ran else "thread did not run")' "$shim" 2>&1)
  [ "$out" = ok ] && echo "ffi: $(basename "$shim") dlopen'ed: ok" || no "dlopen of $shim: $out"
fi
[ $fail = 0 ] && echo "ffi: ok"
exit $fail

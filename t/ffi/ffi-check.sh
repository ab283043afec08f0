#!/bin/sh
# dlopen + libffi, as FFI languages load the library.  The engine's private
# jemalloc uses initial-exec TLS (2.6 KiB), more than glibc keeps spare for
# libraries loaded late, so a dlopen needs
# GLIBC_TUNABLES=glibc.rtld.optional_static_tls=4096 (netpoll(7), NOTES);
# without it the failure must be that clear error, not a crash.
set -u
bin=$1 lib=$2
out=$(env -u GLIBC_TUNABLES "$bin" "$lib" 2>&1)
case "$out" in
  *"static TLS"*|*ok*) ;;
  *) echo "ffi: unexpected: $out"; exit 1 ;;
esac
GLIBC_TUNABLES=glibc.rtld.optional_static_tls=4096 "$bin" "$lib" || exit 1

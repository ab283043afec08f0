#!/bin/sh
# The ABI of libnetpoll.so.1 against its committed baseline (t/abi/).
#
#   abi-diff.sh check  LIB OUTDIR   fail on any difference from the baseline
#   abi-diff.sh update LIB OUTDIR   write the baseline anew (make abi-baseline)
#
# The baseline is what abidw (abigail-tools) reads from the library's DWARF
# (it is built with -g): every exported np_* symbol with its version node,
# each function's prototype, and the layout of every type they reach, the
# types of netpoll.h counting as public (--header-file); plus netpoll.h's
# macros, which DWARF does not carry.  The private seam of the preload shim
# (npshim_*, netpoll_shim.h) is left out: shim and library ship together.
# Paths, line numbers and the build directory are left out, so the baseline
# is the same for any checkout of the same sources on Debian 12.
#
# abidiff fails on incompatible changes (exit bit 8) and on any other
# change (bit 4): an added function, and with --harmless the changes that
# keep binaries working but not sources, such as a renamed field.  A
# deliberate addition runs `make abi-baseline` and commits t/abi/ with it.
set -eu
mode=$1 lib=$2 out=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
base=$root/t/abi
case $lib in /*) ;; *) lib=$(pwd)/$lib ;; esac
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
mkdir -p "$out"
# The library's DWARF names its sources relative to the tree (the Makefile
# compiles src/x.cpp with -Iinclude), so the header is named that way too.
cd "$root"

for t in abidw abidiff; do
  command -v $t >/dev/null || { echo "abi-diff: $t not found (apt-get install abigail-tools)" >&2; exit 1; }
done

abidw --header-file include/netpoll.h --drop-private-types --exported-interfaces-only \
      --suppressions t/abi/private.suppr --no-corpus-path --no-comp-dir-path --no-show-locs \
      --no-elf-needed --no-parameter-names --type-id-style hash --out-file "$out/libnetpoll.so.1.abi" "$lib"
${CC:-cc} -std=c11 -E -dM include/netpoll.h | grep -E '^#define (NP|NETPOLL)_' | sort \
  > "$out/netpoll.h.macros"

# Every structure netpoll.h defines must be there with its layout: without
# debug info, or were the header not recognised, it would silently not be.
fail=0
for s in $(sed -n 's/^typedef struct \(np_[a-z_]*\) {.*/\1/p' include/netpoll.h); do
  grep -q "<class-decl name='$s' size-in-bits=" "$out/libnetpoll.so.1.abi" ||
    { echo "abi-diff: no layout of struct $s in the ABI read from $lib (built without -g?)"; fail=1; }
done
[ $fail = 0 ] || exit 1

syms() { sed -n "s/.*<elf-symbol name='\([^']*\)' version='\([^']*\)'.*/\1@\2/p" "$1" | sort; }

if [ "$mode" = update ]; then
  if [ -f "$base/libnetpoll.so.1.abi" ]; then
    rc=0; abidiff --harmless "$base/libnetpoll.so.1.abi" "$out/libnetpoll.so.1.abi" > "$out/abidiff.txt" || rc=$?
    cat "$out/abidiff.txt"
    diff -u "$base/netpoll.h.macros" "$out/netpoll.h.macros" || true
    # Symbols are added in a new version node, never moved or removed.
    syms "$out/libnetpoll.so.1.abi" > "$out/new.syms"
    gone=$(syms "$base/libnetpoll.so.1.abi" | comm -23 - "$out/new.syms" | tr '\n' ' ' | sed 's/ $//')
    if { [ $((rc & 8)) != 0 ] || [ -n "$gone" ]; } && [ "${ABI_BREAK:-0}" != 1 ]; then
      echo "abi-baseline: incompatible with the baseline (above; removed or moved: ${gone:-none})."
      echo "abi-baseline: not written.  A break of libnetpoll.so.1 is ABI_BREAK=1 make abi-baseline."
      exit 1
    fi
    # A released node never grows: new functions go in a node of their own.
    old_nodes=$(syms "$base/libnetpoll.so.1.abi" | sed 's/.*@//' | sort -u)
    for s in $(syms "$base/libnetpoll.so.1.abi" | comm -13 - "$out/new.syms"); do
      if echo "$old_nodes" | grep -qx "${s#*@}"; then
        echo "abi-baseline: note: $s is added to ${s#*@}, a node the baseline had already"
      fi
    done
  fi
  cp "$out/libnetpoll.so.1.abi" "$out/netpoll.h.macros" "$base/"
  echo "abi-baseline: t/abi/libnetpoll.so.1.abi and t/abi/netpoll.h.macros written ($(syms "$base/libnetpoll.so.1.abi" | wc -l) symbols); commit them with the change"
  exit 0
fi

[ -f "$base/libnetpoll.so.1.abi" ] || { echo "abi-diff: no baseline; make abi-baseline"; exit 1; }
rc=0; abidiff --harmless "$base/libnetpoll.so.1.abi" "$out/libnetpoll.so.1.abi" > "$out/abidiff.txt" || rc=$?
[ $rc = 0 ] || { cat "$out/abidiff.txt"; [ $((rc & 3)) = 0 ] || echo "abi-diff: abidiff failed (exit $rc)"; fail=1; }
# abidiff compares symbols by name and version already; the exact list of
# name@version is compared as well, whatever abidiff deems worth a report.
syms "$base/libnetpoll.so.1.abi" > "$out/base.syms"
syms "$out/libnetpoll.so.1.abi" > "$out/new.syms"
diff -u "$out/base.syms" "$out/new.syms" > "$out/syms.diff" ||
  { echo "abi-diff: exported symbols (name@version) differ from the baseline:"; sed -n '3,$p' "$out/syms.diff" | grep '^[-+]'; fail=1; }
diff -u "$base/netpoll.h.macros" "$out/netpoll.h.macros" > "$out/macros.diff" ||
  { echo "abi-diff: netpoll.h macros differ from the baseline:"; sed -n '3,$p' "$out/macros.diff" | grep '^[-+]'; fail=1; }
if [ $fail != 0 ]; then
  echo "abi-diff: $lib differs from the baseline t/abi/ (above)."
  echo "abi-diff: if that is a deliberate addition, make abi-baseline and commit t/abi/ with it."
  exit 1
fi
echo "abi-diff: ok ($(wc -l < "$out/new.syms") symbols, prototypes, types and macros as in t/abi/)"

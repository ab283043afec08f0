#!/bin/sh
# The public header compiles cleanly, as installed, for C and C++ users:
# C11 and C++11/C++20 with -Wall -Wextra -pedantic -Werror, with gcc and,
# when installed, clang.  The program is linked and run once with gcc.
#   header-check.sh INCLUDE_DIR LIB_DIR
set -eu
inc=$1 lib=$2
src=$(dirname "$0")/header/use_netpoll.c
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
W="-Wall -Wextra -pedantic -Werror"
fail=0 n=0
try() {  # compiler std lang [extra flags]
  cc=$1 std=$2 lang=$3; shift 3
  n=$((n + 1))
  $cc -std=$std $W "$@" -I"$inc" -x $lang -c "$src" -o "$tmp/o.o" 2> "$tmp/err" ||
    { echo "header: $cc -std=$std $*:"; cat "$tmp/err"; fail=1; }
}
cxxs="g++" ccs="gcc"
command -v clang >/dev/null && ccs="$ccs clang"
command -v clang++ >/dev/null && cxxs="$cxxs clang++"
for c in $ccs; do
  for std in c11 c17; do try $c $std c -Wstrict-prototypes -Wmissing-prototypes -Wundef -Wshadow; done
  try $c c11 c -D_GNU_SOURCE
done
for c in $cxxs; do
  for std in c++11 c++20; do try $c $std c++ -Wundef -Wshadow -Wold-style-cast -Wzero-as-null-pointer-constant; done
done
[ $fail = 0 ] || exit 1
# Linked against the library and run: every name it uses is exported.
gcc -std=c11 -Wall -Wextra -pedantic -Werror -I"$inc" "$src" -o "$tmp/use" -L"$lib" -Wl,-rpath,"$(cd "$lib" && pwd)" -lnetpoll
"$tmp/use" || { echo "header: the program built from $src failed ($?)"; exit 1; }
echo "header: ok ($n compilations: $ccs / $cxxs; linked and run)"

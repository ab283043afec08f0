#!/bin/sh
# The engine and the preload shim compile for aarch64: every source of the
# library (epoll and poll ports) and of the shim, checked by the aarch64
# cross compiler with warnings as errors.  On aarch64 the shim steps aside
# at start-up (it knows x86-64's thread layout only), but it must build
# there with the rest.
#
# usage: t/arch/build-aarch64.sh [scratch-dir]    (default: <top>/build/t/arch)
#
# Exits 77 (skip) if aarch64-linux-gnu-g++ is not installed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:-$top/build/t/arch}
CXX=${AARCH64_CXX:-aarch64-linux-gnu-g++}

if ! command -v "$CXX" >/dev/null 2>&1; then
    echo "skipped: aarch64 C++ cross compiler not installed ($CXX not found)"
    exit 77
fi

# The configuration an aarch64 machine without liburing would get.
mkdir -p "$out/aarch64"
printf '#ifndef NETPOLL_CONFIG_H\n#define NETPOLL_CONFIG_H\n#define HAVE_EPOLL 1\n#define HAVE_JEMALLOC 1\n#endif\n' \
    > "$out/aarch64/config.h"

cd "$top"
ls src/*.cpp ports/epoll.cpp ports/poll.cpp shim/*.cpp |
    xargs -P2 -n4 "$CXX" -std=c++20 -fsyntax-only -Wall -Wextra -Werror -Iinclude -Isrc -I"$out/aarch64"
echo "aarch64: $(ls src/*.cpp ports/epoll.cpp ports/poll.cpp shim/*.cpp | wc -l) sources compile"

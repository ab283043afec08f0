#!/bin/sh
# Build t/arch/switch_test.c for aarch64 with the aarch64 context switch,
# statically linked, and run it under qemu-aarch64.
#
# usage: t/arch/run-aarch64.sh [build-dir]     (default: <top>/build/t/arch)
#
# Exits 77 (skip) if the cross compiler or qemu-aarch64 is not installed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:-$top/build/t/arch}

CC=${AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64}

for tool in "$CC" "$QEMU"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "skipped: aarch64 cross tools not installed ($tool not found)"
        exit 77
    fi
done

mkdir -p "$out"
bin=$out/switch_test-aarch64
"$CC" -std=c11 -O2 -g -Wall -Wextra -static \
    -o "$bin" \
    "$top/t/arch/switch_test.c" \
    "$top/src/arch/switch_aarch64_aapcs_elf_gas.S"
exec "$QEMU" "$bin"

#!/bin/sh
# make uninstall removes exactly what make install put there: installed
# into a scratch DESTDIR (the default layout, and another PREFIX and
# LIBDIR), then uninstalled, no file or link is left.  Files of others
# beside ours stay.
#   uninstall-check.sh MAKE BUILD_DIR
set -eu
make=$1 b=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for layout in "PREFIX=/usr/local" "PREFIX=/opt/netpoll LIBDIR=/opt/netpoll/lib64"; do
  d=$tmp/root$n; n=$((n + 1))
  mkdir -p "$d/opt/netpoll/lib64/pkgconfig" "$d/usr/local/share/man/man3"
  echo other > "$d/opt/netpoll/lib64/pkgconfig/other.pc"
  echo other > "$d/usr/local/share/man/man3/other.3"
  # shellcheck disable=SC2086
  $make --no-print-directory B="$b" DESTDIR="$d" $layout install > "$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; echo "uninstall: make install $layout failed"; exit 1; }
  files=$(find "$d" ! -type d | wc -l)
  for f in libnetpoll.so libnetpoll.so.1 libnetpoll-preload.so netpoll.pc netpoll.h nprun nprun.1 netpoll.7; do
    [ -n "$(find "$d" -name "$f")" ] || { echo "uninstall: $layout: install put no $f"; exit 1; }
  done
  # shellcheck disable=SC2086
  $make --no-print-directory B="$b" DESTDIR="$d" $layout uninstall > "$tmp/uninstall.log" 2>&1 ||
    { cat "$tmp/uninstall.log"; echo "uninstall: make uninstall $layout failed"; exit 1; }
  left=$(find "$d" ! -type d ! -name 'other.*')
  [ -z "$left" ] || { echo "uninstall: $layout: left behind:"; echo "$left" | sed "s|^$d||"; exit 1; }
  [ "$(find "$d" -name 'other.*' | wc -l)" = 2 ] || { echo "uninstall: $layout: removed a file not its own"; exit 1; }
  echo "uninstall: ok ($layout: $((files - 2)) files and links installed, all removed)"
done

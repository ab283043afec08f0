#!/bin/sh
# The engine's private jemalloc, built from Debian's own source package.
#
# Debian's libjemalloc_pic.a keeps its thread state in initial-exec TLS
# (2.6 KiB), more than glibc keeps spare for libraries loaded late, so a
# library linking it cannot be dlopen'ed (FFI languages: "cannot allocate
# memory in static TLS block").  This builds the same source (apt-get
# source jemalloc, Debian's patches applied, Debian's compiler flags) with
# --disable-initial-exec-tls and TLS descriptors: glibc then puts the state
# in static TLS whenever it fits (a program linked with the library, or
# preloading it) and in dynamic TLS after a dlopen.  Names carry the
# npje_ prefix; the Makefile links the archive statically and hidden.
#
# usage: src/jemalloc/build.sh DIR      writes DIR/libjemalloc_pic.a
#
# The source package is fetched once into DIR/pkg (JEMALLOC_PKG= another
# folder holding jemalloc_*.dsc and its tarballs): later builds need no
# network.  Fetching needs a deb-src line for the system's suites; as root
# one is added (/etc/apt/sources.list.d/netpoll-deb-src.list) when missing.
set -eu
dir=$1
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pkg=${JEMALLOC_PKG:-$dir/pkg}
MAKE=${MAKE:-make}
CC=${CC:-cc}
CXX=${CXX:-c++}
say() { echo "jemalloc: $*"; }
die() { echo "jemalloc: $*" >&2; exit 1; }

newest_dsc() { ls "$pkg"/jemalloc_*.dsc 2>/dev/null | sort -V | tail -n 1; }

# deb-src lines for the Debian suites of this release, from the deb lines
# already configured (one-line and deb822 formats).
deb_src_lines() {
  code=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
  [ -n "$code" ] || return 0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    case $f in */netpoll-deb-src.list) continue ;; esac
    awk -v code="$code" '
      $1 == "deb" {
        i = 2; opts = ""
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
        uri = $i; suite = $(i + 1)
        if (suite !~ "^(" code "|stable)([-/](updates|security))?$") next
        line = "deb-src" opts " " uri " " suite
        for (j = i + 2; j <= NF; j++) line = line " " $j
        print line
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v code="$code" '
      function flush(   n, m, u, s, i, j, key) {
        if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/ && uris != "") {
          key = (signed ~ /^\//) ? " [signed-by=" signed "]" : ""
          n = split(uris, u, " "); m = split(suites, s, " ")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            if (s[j] ~ "^(" code "|stable)([-/](updates|security))?$")
              print "deb-src" key " " u[i] " " s[j] " " comps
        }
        types = uris = suites = comps = signed = enabled = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^#/ { next }
      /^[A-Za-z-]+:/ {
        k = tolower($1); sub(/:$/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
        if (k == "types") types = v; else if (k == "uris") uris = v
        else if (k == "suites") suites = v; else if (k == "components") comps = v
        else if (k == "signed-by") signed = v; else if (k == "enabled") enabled = tolower(v)
      }
      END { flush() }' "$f"
  done
}

have_source() { apt-cache showsrc --only-source jemalloc 2>/dev/null | grep -q '^Package: jemalloc$'; }

fetch() {
  if ! have_source; then
    [ "$(id -u)" = 0 ] || die "no deb-src line for jemalloc's source package; as root, add one for this system's suites and run apt-get update (or run make as root)"
    lines=$(deb_src_lines | sort -u)
    [ -n "$lines" ] || die "no Debian deb line found in /etc/apt to derive a deb-src line from"
    say "adding /etc/apt/sources.list.d/netpoll-deb-src.list:"
    printf '%s\n' "$lines" | sed 's/^/  /'
    printf '# Added by netpoll'"'"'s build: Debian'"'"'s jemalloc source package.\n%s\n' "$lines" \
      > /etc/apt/sources.list.d/netpoll-deb-src.list
    apt-get -o DPkg::Lock::Timeout=300 update -qq || die "apt-get update failed"
    have_source || die "apt-get update did not bring jemalloc's source package"
  fi
  command -v dpkg-source >/dev/null || die "dpkg-source missing (package dpkg-dev)"
  rm -rf "$pkg.tmp"
  mkdir -p "$pkg.tmp"
  sandbox=
  [ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root" # a folder _apt may not write to
  (cd "$pkg.tmp" && apt-get -qq $sandbox source --download-only jemalloc) || die "apt-get source jemalloc failed"
  mkdir -p "$pkg"
  mv "$pkg.tmp"/* "$pkg"/
  rmdir "$pkg.tmp"
}

[ -n "$(newest_dsc)" ] || fetch
dsc=$(newest_dsc)
[ -n "$dsc" ] || die "no jemalloc_*.dsc in $pkg"
say "building $(basename "$dsc" .dsc) (Debian's source package) into $dir, once"

# Unpack, Debian's patches applied, the tarballs checked against the .dsc
# (whose signature gpgv cannot check without debian-keyring: apt checked
# the download against the archive's signed index).
rm -rf "$dir/src" "$dir/obj"
dpkg-source --no-copy -x "$dsc" "$dir/src" >"$dir/unpack.log" 2>&1 ||
  { cat "$dir/unpack.log" >&2; die "dpkg-source -x $dsc failed"; }

# Debian's own choices (debian/rules): the page size jemalloc assumes (4 KiB
# on x86, 64 KiB elsewhere) and 2 MiB huge pages, and its C++ operators
# (the engine's own operator new lands in jemalloc, never in the host's
# malloc).  Not its profiling nor its documentation.
case $(uname -m) in
  x86_64 | i?86) lgpage=12 ;;
  *) lgpage=16 ;;
esac
# TLS descriptors: static-TLS speed when glibc could place the block there
# (x86-64 needs asking; aarch64 uses them already).
tlsflags=
case $($CC -dumpmachine) in x86_64-*) tlsflags=-mtls-dialect=gnu2 ;; esac
# Debian's flags, less debug info (its archive ships stripped; -g0 also
# takes a third off the build).
cflags="$(dpkg-buildflags --get CFLAGS 2>/dev/null || echo -O2) $tlsflags -g0"
cxxflags="$(dpkg-buildflags --get CXXFLAGS 2>/dev/null || echo -O2) $tlsflags -g0"
cppflags=$(dpkg-buildflags --get CPPFLAGS 2>/dev/null || true)

mkdir -p "$dir/obj"
cd "$dir/obj"
CC=$CC CXX=$CXX CFLAGS=$cflags CXXFLAGS=$cxxflags CPPFLAGS=$cppflags "$dir/src/configure" -q \
  --with-version=VERSION \
  --with-jemalloc-prefix=npje_ --with-private-namespace=npje_ --without-export \
  --disable-initial-exec-tls --disable-shared --enable-static \
  --disable-doc --disable-prof --disable-libdl \
  --with-lg-page=$lgpage --with-lg-hugepage=21 >configure.log 2>&1 ||
  { tail -n 20 configure.log >&2; die "configure failed (see $dir/obj/configure.log)"; }

# Inside make -jN the jobserver (MAKEFLAGS) decides; alone, two jobs.
jobs=-j2
case ${MAKEFLAGS:-} in *jobserver*) jobs= ;; esac
$MAKE $jobs lib/libjemalloc_pic.a >make.log 2>&1 ||
  { tail -n 20 make.log >&2; die "build failed (see $dir/obj/make.log)"; }

# Not one initial-exec TLS relocation (their TPOFF relocations).
if readelf -rW lib/libjemalloc_pic.a | grep -Eq 'GOTTPOFF|_TPOFF|TLSIE'; then
  die "the archive still uses initial-exec TLS"
fi
# Without its constructor: the heap is made at the engine's first
# allocation, not as the library loads, so a process under the shim that
# never starts a thread (a command a shell runs, a CGI script) never pays
# for it (some 40 page faults and a dozen system calls).  The constructor
# is there so that a fork cannot meet a heap half made; the engine's fork
# handler, registered as the library loads, waits for a first allocation
# under way as for any other (src/heap_fork.cpp).
cp lib/libjemalloc_pic.a "$dir/libjemalloc_pic.a.tmp"
objcopy --remove-section=.init_array --remove-section=.rela.init_array "$dir/libjemalloc_pic.a.tmp" ||
  die "objcopy failed"
if readelf -SW "$dir/libjemalloc_pic.a.tmp" | grep -q init_array; then
  die "the archive still has a constructor"
fi
mv "$dir/libjemalloc_pic.a.tmp" "$dir/libjemalloc_pic.a"
say "$dir/libjemalloc_pic.a"

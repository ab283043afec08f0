#!/bin/sh
# Check the manual: every page must pass `mandoc -Tlint -W warning`, and
# every np_* function declared in include/netpoll.h must have its own page,
# man/man3/<function>.3.  Run from anywhere: sh man/check.sh
# Exits non-zero and says why when something is wrong.

top=$(cd "$(dirname "$0")/.." && pwd) || exit 2
header=$top/include/netpoll.h
status=0

if ! command -v mandoc >/dev/null 2>&1; then
    echo "check.sh: mandoc not found" >&2
    exit 2
fi
if [ ! -r "$header" ]; then
    echo "check.sh: cannot read $header" >&2
    exit 2
fi

# 1. Lint every page at warning level.
pages=$(find "$top/man" -name '*.[1-9]' -type f | sort)
if [ -z "$pages" ]; then
    echo "check.sh: no pages under $top/man" >&2
    exit 1
fi
for page in $pages; do
    if ! mandoc -Tlint -W warning "$page"; then
        status=1
    fi
done

# 2. A page for every function.  A declaration is a line that starts with
# a type and names np_something followed by "(": comment lines start with
# "/*" or " *" and do not match.
functions=$(sed -n 's/^[A-Za-z_][A-Za-z0-9_ ]*[ *]\(np_[a-z0-9_]*\)(.*/\1/p' \
    "$header" | sort -u)
if [ -z "$functions" ]; then
    echo "check.sh: no np_* functions found in $header" >&2
    exit 1
fi
missing=0
for fn in $functions; do
    if [ ! -f "$top/man/man3/$fn.3" ]; then
        echo "check.sh: missing man page man/man3/$fn.3" >&2
        missing=$((missing + 1))
    fi
done
if [ "$missing" -ne 0 ]; then
    echo "check.sh: $missing function(s) of netpoll.h without a page" >&2
    status=1
fi

if [ "$status" -eq 0 ]; then
    n=$(echo "$functions" | wc -l)
    echo "check.sh: all pages lint-clean; $n functions documented"
fi
exit $status

#!/bin/sh
# Checks of the nprun launcher: options, errors, exit statuses, the
# environment it hands over, the refusal of static programs.  It does not
# need the shim: NPRUN_PRELOAD points to a dummy file (the dynamic linker
# complains on stderr that it cannot preload it, and goes on).
#   sh t/shim/nprun-check.sh build/bin/nprun
# Prints a line per check and "nprun: N passed, M failed"; exits 1 on failure.

nprun=${1:?usage: nprun-check.sh path/to/nprun}
case $nprun in /*) ;; *) nprun=$(pwd)/$nprun ;; esac
if [ ! -x "$nprun" ]; then
    echo "nprun-check.sh: $nprun is not an executable" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nprun-check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
dummy=$tmp/dummy-preload.so
: > "$dummy"
NPRUN_PRELOAD=$dummy
export NPRUN_PRELOAD
unset LD_PRELOAD NP_PROCS NP_STACK_SIZE NP_POLLER NPDEBUG NP_DUMP_SIGNAL

passed=0
failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }

# run ARGS...: runs nprun, leaving $rc, $tmp/out and $tmp/err.  With
# $user_preload set, nprun alone gets it as LD_PRELOAD (nothing else here
# should try to preload it).
user_preload=
run() {
    if [ -n "$user_preload" ]; then
        LD_PRELOAD=$user_preload "$nprun" "$@" > "$tmp/out" 2> "$tmp/err"
    else
        "$nprun" "$@" > "$tmp/out" 2> "$tmp/err"
    fi
    rc=$?
}

# usage_error DESCRIPTION ARGS...: exit 2, one line on stderr, nothing on stdout.
usage_error() {
    what=$1
    shift
    run "$@"
    lines=$(wc -l < "$tmp/err")
    if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] &&
        grep -q '^nprun: ' "$tmp/err"; then
        ok "$what: exit 2, $(cat "$tmp/err")"
    else
        fail "$what: want exit 2 and one stderr line" "exit $rc, $lines stderr line(s):" \
            "$(cat "$tmp/err")"
    fi
}

# env_is DESCRIPTION EXPECTED ARGS...: nprun ARGS -- sh -c 'echo ...' prints EXPECTED.
show='echo "$LD_PRELOAD|$NP_PROCS|$NP_STACK_SIZE|$NP_POLLER|$NPDEBUG|$NP_DUMP_SIGNAL"'
env_is() {
    what=$1
    want=$2
    shift 2
    run "$@" -- sh -c "$show"
    got=$(cat "$tmp/out")
    if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then
        ok "$what: $got"
    else
        fail "$what" "want: $want" "got:  $got (exit $rc)" "$(cat "$tmp/err")"
    fi
}

# ---- help and version ------------------------------------------------------
run --help
if [ "$rc" -eq 0 ] && grep -q '^Usage: nprun' "$tmp/out" && [ ! -s "$tmp/err" ]; then
    ok "--help: exit 0, usage on stdout"
else
    fail "--help" "exit $rc" "$(head -3 "$tmp/out")" "$(cat "$tmp/err")"
fi
run --version
if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/out")" = "nprun (netpoll) 1.0.0" ]; then
    ok "--version: exit 0, $(cat "$tmp/out")"
else
    fail "--version" "exit $rc, printed: $(cat "$tmp/out")"
fi

# ---- usage errors ------------------------------------------------------------
usage_error "-p not a number"      -p x true
usage_error "-p 0"                 -p 0 true
usage_error "-p 257"               -p 257 true
usage_error "-p -1"                -p -1 true
usage_error "--procs=abc"          --procs=abc true
usage_error "-p without a value"   -p
usage_error "-s 1K (too small)"    -s 1K true
usage_error "-s 2G (too large)"    -s 2G true
usage_error "-s 8X (bad suffix)"   -s 8X true
usage_error "--stack= (empty)"     --stack= true
usage_error "--poller kqueue"      --poller kqueue true
usage_error "--dump-on FOO"        --dump-on FOO true
usage_error "--dump-on 0"          --dump-on 0 true
usage_error "--dump-on KILL"       --dump-on KILL true
usage_error "--dump-on SEGV"       --dump-on SEGV true
usage_error "--dump-on 32"         --dump-on 32 true
usage_error "--trace=1"            --trace=1 true
usage_error "unknown long option"  --bogus true
usage_error "unknown short option" -x true
usage_error "no command"
usage_error "no command after options" -p 2 -s 64K
usage_error "no command after --"  -p 2 --
NPRUN_PRELOAD=$tmp/no-such-preload.so
usage_error "NPRUN_PRELOAD to a missing file" true
NPRUN_PRELOAD=$dummy

# ---- exec ----------------------------------------------------------------
run nprun-check-no-such-command
if [ "$rc" -eq 127 ] && grep -q '^nprun: nprun-check-no-such-command: ' "$tmp/err"; then
    ok "command not found: exit 127, $(cat "$tmp/err")"
else
    fail "command not found: want exit 127" "exit $rc: $(cat "$tmp/err")"
fi
printf 'hello\n' > "$tmp/not-executable"
chmod 644 "$tmp/not-executable"
run "$tmp/not-executable"
if [ "$rc" -eq 126 ] && grep -q "^nprun: $tmp/not-executable: " "$tmp/err"; then
    ok "command not executable: exit 126, $(cat "$tmp/err")"
else
    fail "command not executable: want exit 126" "exit $rc: $(cat "$tmp/err")"
fi
run -- sh -c 'exit 7'
if [ "$rc" -eq 7 ]; then ok "exit status passes through: 7"; else fail "exit status: want 7, got $rc"; fi
run sh -c 'kill -TERM $$'
if [ "$rc" -eq 143 ]; then
    ok "death by signal passes through: 143 as the shell reports SIGTERM"
else
    fail "death by signal: want 143, got $rc"
fi
run sh -c 'echo "$0 $1 $2"' zero 'one two' three
if [ "$(cat "$tmp/out")" = "zero one two three" ]; then
    ok "arguments pass through unchanged"
else
    fail "arguments" "got: $(cat "$tmp/out")"
fi

# ---- the environment ---------------------------------------------------------
unset LD_PRELOAD
env_is "LD_PRELOAD set, NP_* from -p -s --poller" "$dummy|3|1048576|poll||" \
    -p 3 -s 1M --poller poll
user_preload=$tmp/theirs.so
env_is "LD_PRELOAD prepended to the user's" "$dummy:$tmp/theirs.so|3|1048576|poll||" \
    -p 3 -s 1M --poller poll
user_preload=
env_is "-p2 -s64K"                 "$dummy|2|65536|||"                -p2 -s64K
env_is "--procs=4 --stack=8M"      "$dummy|4|8388608|||"              --procs=4 --stack=8M
env_is "--procs 5 --stack 1G"      "$dummy|5|1073741824|||"           --procs 5 --stack 1G
env_is "--poller io_uring --trace" "$dummy|||io_uring|netpoll=1|"     --poller io_uring --trace
env_is "--poller epoll"            "$dummy|||epoll||"                 --poller epoll
env_is "--dump-on QUIT"            "$dummy|||||3"                     --dump-on QUIT
env_is "--dump-on SIGUSR1"         "$dummy|||||10"                    --dump-on SIGUSR1
env_is "--dump-on=12"              "$dummy|||||12"                    --dump-on=12
NPDEBUG=other=1
export NPDEBUG
env_is "--trace keeps the user's NPDEBUG" "$dummy||||other=1,netpoll=1|" --trace
unset NPDEBUG
NP_PROCS=6
export NP_PROCS
env_is "the user's NP_PROCS stays without -p" "$dummy|6|16384|||" -s 16K
env_is "-p overrides the user's NP_PROCS" "$dummy|7|16384|||" -s 16K -p 7
unset NP_PROCS

# The shim next to nprun: <dir of nprun>/../lib/libnetpoll-preload.so.
mkdir -p "$tmp/inst/bin" "$tmp/inst/lib"
cp "$nprun" "$tmp/inst/bin/nprun"
unset NPRUN_PRELOAD
"$tmp/inst/bin/nprun" true > "$tmp/out" 2> "$tmp/err"
rc=$?
if [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ]; then
    ok "no library next to nprun: exit 2, $(cat "$tmp/err")"
else
    fail "no library next to nprun: want exit 2 and one stderr line" "exit $rc:" \
        "$(cat "$tmp/err")"
fi
: > "$tmp/inst/lib/libnetpoll-preload.so"
got=$("$tmp/inst/bin/nprun" sh -c 'echo "$LD_PRELOAD"' 2> /dev/null)
if [ "$got" = "$tmp/inst/lib/libnetpoll-preload.so" ]; then
    ok "library found in ../lib next to nprun: $got"
else
    fail "library next to nprun" "want: $tmp/inst/lib/libnetpoll-preload.so" "got:  $got"
fi
NPRUN_PRELOAD=$dummy
export NPRUN_PRELOAD

# ---- programs LD_PRELOAD cannot reach ----------------------------------------------
cc=${CC:-cc}
printf 'int main(void) { return 5; }\n' > "$tmp/prog.c"
if "$cc" -o "$tmp/dyn" "$tmp/prog.c" 2> /dev/null; then
    run "$tmp/dyn"
    if [ "$rc" -eq 5 ]; then
        ok "dynamic program runs: exit 5"
    else
        fail "dynamic program: want exit 5, got $rc" "$(cat "$tmp/err")"
    fi
else
    echo "skip dynamic program: $cc cannot build one"
fi
for kind in static static-pie; do
    if "$cc" "-$kind" -o "$tmp/$kind" "$tmp/prog.c" 2> /dev/null; then
        run "$tmp/$kind"
        lines=$(wc -l < "$tmp/err")
        if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q 'statically linked' "$tmp/err"; then
            ok "$kind program refused: $(cat "$tmp/err")"
        else
            fail "$kind program: want exit 2 and 'statically linked'" "exit $rc:" \
                "$(cat "$tmp/err")"
        fi
        # Found through PATH, as execvp would.
        run -- "$kind"
        if [ "$rc" -ne 2 ]; then
            oldpath=$PATH
            PATH=$tmp:$PATH
            run -- "$kind"
            PATH=$oldpath
            if [ "$rc" -eq 2 ] && grep -q "$tmp/$kind is statically linked" "$tmp/err"; then
                ok "$kind program found through PATH refused"
            else
                fail "$kind program through PATH: want exit 2" "exit $rc: $(cat "$tmp/err")"
            fi
        else
            fail "$kind program: refused though not on PATH" "$(cat "$tmp/err")"
        fi
    else
        echo "skip $kind program: $cc -$kind failed (no libc.a?)"
    fi
done
printf '#!/bin/sh\nexit 4\n' > "$tmp/script"
chmod 755 "$tmp/script"
run "$tmp/script"
if [ "$rc" -eq 4 ]; then ok "#! script runs: exit 4"; else fail "#! script: want 4, got $rc" "$(cat "$tmp/err")"; fi

# A program for another architecture than the shim's (when the shim is ELF).
if command -v aarch64-linux-gnu-gcc > /dev/null 2>&1 && [ "$(uname -m)" != aarch64 ] &&
    aarch64-linux-gnu-gcc -o "$tmp/a64" "$tmp/prog.c" 2> /dev/null; then
    NPRUN_PRELOAD=$tmp/dyn
    run "$tmp/a64"
    NPRUN_PRELOAD=$dummy
    if [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] &&
        grep -q 'another architecture' "$tmp/err"; then
        ok "aarch64 program refused: $(cat "$tmp/err")"
    else
        fail "aarch64 program: want exit 2" "exit $rc: $(cat "$tmp/err")"
    fi
else
    echo "skip program of another architecture: no aarch64-linux-gnu-gcc"
fi

echo "nprun: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

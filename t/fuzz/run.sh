#!/bin/sh
# Runs the fuzz targets built in DIR (DIR/fuzz_TARGET).
#
#   sh t/fuzz/run.sh check DIR TARGET...   each over t/fuzz/corpus/TARGET only
#   sh t/fuzz/run.sh fuzz DIR TARGET...    each for FUZZ_TIME seconds (60)
#   sh t/fuzz/run.sh merge DIR TARGET...   t/fuzz/corpus/TARGET minimized (-merge=1)
#
# Inputs named regress-* reproduced a bug once: merge keeps them.
# fuzz starts from the committed corpus and keeps what it finds in
# DIR/corpus/TARGET; a crash is written to DIR/crash-TARGET-*, and
# reproduced with DIR/fuzz_TARGET FILE.  One target runs at a time.
#
# The preload target runs under nprun ($NPRUN, with $NPRUN_PRELOAD): in
# check mode plainly too, and under -p 1 and -p 2; otherwise -p $NP_PROCS.
mode=${1:?usage: sh t/fuzz/run.sh check|fuzz|merge DIR TARGET...}
dir=${2:?usage: sh t/fuzz/run.sh check|fuzz|merge DIR TARGET...}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
time=${FUZZ_TIME:-60}
passed=0
failed=0
# how T P: the command line that runs target T (P: nprun's -p, 0 plainly)
how() {
    if [ "$1" = preload ] && [ "$2" != 0 ]; then
        if [ ! -x "${NPRUN:-}" ] || [ ! -f "${NPRUN_PRELOAD:-}" ]; then
            echo "fuzz: NPRUN and NPRUN_PRELOAD must name nprun and the shim" >&2
            exit 2
        fi
        echo "$NPRUN -p $2 --"
    fi
}

for t in "$@"; do
    bin=$dir/fuzz_$t
    corpus=$here/corpus/$t
    log=$dir/fuzz_$t.log
    procs=${NP_PROCS:-2}
    case $mode in
    check)
        n=$(ls "$corpus" | wc -l)
        runs=0
        [ "$t" = preload ] && runs="0 1 2"
        for p in $runs; do
            label=$t
            [ "$p" != 0 ] && label="$t under nprun -p $p"
            # shellcheck disable=SC2046 # the runner is words
            if timeout -s KILL 300 $(how "$t" "$p") "$bin" -runs=0 -timeout=10 "$corpus" >"$log" 2>&1; then
                echo "fuzz: $label: $n inputs of t/fuzz/corpus/$t: ok"
                passed=$((passed + 1))
            else
                echo "FAIL fuzz: $label over t/fuzz/corpus/$t (log: $log)"
                tail -n 30 "$log" | sed 's/^/    | /'
                failed=$((failed + 1))
                break
            fi
        done
        ;;
    fuzz)
        mkdir -p "$dir/corpus/$t"
        echo "fuzz: $t for ${time}s"
        # shellcheck disable=SC2046
        if timeout -s KILL $((time + 120)) $(how "$t" "$procs") "$bin" -max_total_time="$time" -timeout=10 -rss_limit_mb=4096 \
            -print_final_stats=1 -artifact_prefix="$dir/crash-$t-" "$dir/corpus/$t" "$corpus" >"$log" 2>&1; then
            grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "$log" | sed "s/^/fuzz: $t: /"
            passed=$((passed + 1))
        else
            echo "FAIL fuzz: $t (log: $log)"
            grep -E 'ERROR|fuzz:|SUMMARY|^artifact_prefix|Test unit written' "$log" | head -n 20 | sed 's/^/    | /'
            failed=$((failed + 1))
        fi
        ;;
    merge)
        new=$dir/merge-$t
        rm -rf "$new" && mkdir -p "$new" "$dir/corpus/$t"
        # shellcheck disable=SC2046
        if timeout -s KILL 1200 $(how "$t" "$procs") "$bin" -merge=1 -use_counters=0 -timeout=10 "$new" "$corpus" "$dir/corpus/$t" >"$log" 2>&1; then
            # the crashes found once (regress-*) stay, by name
            mkdir -p "$new.keep" && cp "$corpus"/regress-* "$new.keep"/ 2>/dev/null
            rm -f "$corpus"/* && cp "$new"/* "$new.keep"/* "$corpus"/ 2>/dev/null
            rm -rf "$new.keep"
            echo "fuzz: $t: $(ls "$corpus" | wc -l) inputs in t/fuzz/corpus/$t"
            passed=$((passed + 1))
        else
            echo "FAIL fuzz: merge of $t (log: $log)"
            failed=$((failed + 1))
        fi
        ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# Benchmark: `ferry once` over a local directory of many small files.
#
#   bench/listen_local.sh              # 100000 files
#   FILES=2000 bench/listen_local.sh   # quicker
#   FERRY=path/to/ferry bench/listen_local.sh   # a given binary, e.g. to compare two builds
#
# Run 1 delivers every file (files/s, peak RSS). Run 2 polls the unchanged
# directory (the steady state), compared with a bare `ls -f` of it.
# Needs GNU time (/usr/bin/time; `apt-get install time`) and python3.
set -euo pipefail

FILES=${FILES:-100000}
SIZE=${SIZE:-100}
LS_RUNS=${LS_RUNS:-5}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

if [[ ! -x /usr/bin/time ]]; then
    echo "error: /usr/bin/time (GNU time) not found; install it: apt-get install time" >&2
    exit 2
fi
if ! /usr/bin/time -f '%e' true >/dev/null 2>&1; then
    echo "error: /usr/bin/time is not GNU time (no -f); install it: apt-get install time" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "error: python3 is needed to create the files" >&2; exit 2; }

if [[ -n ${FERRY:-} ]]; then
    echo "== using FERRY=$FERRY (not building)"
else
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
    echo "== building ferry (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release
    case $CARGO_TARGET_DIR in
        /*) FERRY=$CARGO_TARGET_DIR/release/ferry ;;
        *) FERRY=$ROOT/$CARGO_TARGET_DIR/release/ferry ;;
    esac
fi
[[ -x $FERRY ]] || { echo "error: $FERRY was not built" >&2; exit 3; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
SRC=$TMP/src
OUT=$TMP/out
CONFIG=$TMP/ferry.toml

echo "== creating $FILES files of $SIZE bytes in $SRC"
python3 - "$SRC" "$FILES" "$SIZE" <<'PY'
import os, sys
src, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(src)
data = b"x" * size
for i in range(n):
    fd = os.open(os.path.join(src, "f%07d.dat" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
PY

cat >"$CONFIG" <<EOF
[daemon]
state = "$TMP/state/ferry.db"

[[watch]]
name = "bench"
remote_dir = "$SRC"
local_dir = "$OUT"
stable_for = "0s"
interval = "1s"
EOF

export RUST_LOG=${RUST_LOG:-warn}

# run_timed LABEL CMD...: runs CMD under GNU time, output and logs discarded;
# sets T_WALL (s) and T_RSS (KiB). Fails loudly if CMD fails.
run_timed() {
    local label=$1; shift
    local tf=$TMP/time.$label rc=0
    /usr/bin/time -o "$tf" -f '%e %M' "$@" >/dev/null 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "error: $label failed (exit $rc): $*" >&2
        cat "$tf" >&2 || true
        exit 4
    fi
    read -r T_WALL T_RSS < <(tail -n 1 "$tf")
}

echo "== run 1: ferry once (delivers $FILES files)"
sync
run_timed once1 "$FERRY" once -c "$CONFIG"
W1=$T_WALL R1=$T_RSS

got=$(find "$OUT" -type f | wc -l)
if [[ $got -ne $FILES ]]; then
    echo "FAIL: $OUT holds $got files after run 1, expected $FILES" >&2
    exit 5
fi

echo "== run 2: ferry once (steady state, nothing changed)"
run_timed once2 "$FERRY" once -c "$CONFIG"
W2=$T_WALL R2=$T_RSS

got=$(find "$OUT" -type f | wc -l)
if [[ $got -ne $FILES ]]; then
    echo "FAIL: $OUT holds $got files after run 2, expected $FILES" >&2
    exit 5
fi

echo "== ls -f $SRC x $LS_RUNS"
# Timed with $EPOCHREALTIME (microseconds): GNU time only has 10 ms steps.
ls_times=()
for ((i = 0; i < LS_RUNS; i++)); do
    t0=$EPOCHREALTIME
    ls -f "$SRC" >/dev/null
    t1=$EPOCHREALTIME
    ls_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')")
done
LS=$(printf '%s\n' "${ls_times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

awk -v n="$FILES" -v w1="$W1" -v r1="$R1" -v w2="$W2" -v r2="$R2" -v ls="$LS" \
    -v lsall="${ls_times[*]}" -v size="$SIZE" 'BEGIN {
    rate = (w1 > 0) ? sprintf("%.0f", n / w1) : "inf"
    ratio = (ls > 0) ? sprintf("%.1fx", w2 / ls) : "n/a"
    printf "\n"
    printf "ferry once, local rule, %d files of %d bytes\n", n, size
    printf "%-34s %10s %14s\n", "", "wall (s)", "peak RSS (KiB)"
    printf "%-34s %10.2f %14d   %s files/s\n", "run 1: deliver all", w1, r1, rate
    printf "%-34s %10.2f %14d\n", "run 2: steady-state poll", w2, r2
    printf "%-34s %10.4f %14s   (runs: %s)\n", "ls -f SOURCE (median)", ls, "", lsall
    printf "%-34s %10s\n", "ratio run 2 / ls", ratio
}'

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
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need /usr/bin/python3 -- python3 time
bench_build
bench_workdir local
TMP=$W
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

echo "== run 1: ferry once (delivers $FILES files)"
sync
timed once1 "$FERRY" once -c "$CONFIG"
W1=$(med once1) R1=$(rss_kib once1)

got=$(find "$OUT" -type f | wc -l)
if [[ $got -ne $FILES ]]; then
    echo "FAIL: $OUT holds $got files after run 1, expected $FILES" >&2
    exit 5
fi

echo "== run 2: ferry once (steady state, nothing changed)"
timed once2 "$FERRY" once -c "$CONFIG"
W2=$(med once2) R2=$(rss_kib once2)

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
LS=$(printf '%s\n' "${ls_times[@]}" | median)
printf '%s 0\n' "${ls_times[@]}" > "$W/ls.times"

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

result "Listen local $FILES x $SIZE B, first pass" once1
result "Listen local, unchanged poll of $FILES" once2 "ls -f" ls

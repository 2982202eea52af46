#!/usr/bin/env bash
# What content verification costs: one large file through a local rule,
# side by side in one run, RUNS each, alternating:
#   plain     `ferry once`, no checksum (SHA-256 is still computed as the
#             bytes stream: it is recorded for every file)
#   sidecar   `ferry once` with checksum_file = "{name}.sha256" (read,
#             compared before the rename)
#   cp+sum    the reference: `cp` then `sha256sum` of the copy (a second read)
# Prints medians and the ratios sidecar/plain and sidecar/(cp+sum).
#   bench/checksum.sh [RUNS]          (release build in target/bench)
#   SIZE_MB=256 FERRY=target/debug/ferry bench/checksum.sh 3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${1:-${RUNS:-3}}
SIZE_MB=${SIZE_MB:-1024}
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need /usr/bin/sha256sum -- coreutils time
bench_build
bench_workdir checksum

SRC=$W/src
mkdir -p "$SRC"
echo "== making a $SIZE_MB MiB file in $SRC"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom >"$SRC/big.bin"
(cd "$SRC" && sha256sum big.bin >big.bin.sha256)

config() { # NAME EXTRA
    cat >"$W/$1.toml" <<EOT
[daemon]
state = "$W/$1/state.db"

[[watch]]
name = "bench"
remote_dir = "$SRC"
local_dir = "$W/$1/out"
include = ["big.bin"]
stable_for = "0s"
$2
EOT
}
config plain ''
config sidecar 'checksum_file = "{name}.sha256"'
export RUST_LOG=${RUST_LOG:-warn}

fresh() { rm -rf "$W/plain" "$W/sidecar" "$W/cp"; mkdir -p "$W/cp"; settle; }
for ((i = 1; i <= RUNS; i++)); do
    echo "== run $i of $RUNS"
    fresh
    timed plain "$FERRY" once -c "$W/plain.toml"
    fresh
    timed sidecar "$FERRY" once -c "$W/sidecar.toml"
    cmp "$SRC/big.bin" "$W/sidecar/out/big.bin"
    fresh
    timed cpsum sh -c "cp '$SRC/big.bin' '$W/cp/big.bin' && sync '$W/cp/big.bin' && sha256sum '$W/cp/big.bin'"
done

printf '\n%-28s %10s %12s\n' "" "median (s)" "throughput"
for l in plain sidecar cpsum; do
    printf '%-28s %10.2f %12s\n' "$l" "$(med $l)" "$(mbs $l "$SIZE_MB")"
done
printf '%-28s %10s\n' "sidecar / plain" "$(ratio sidecar plain)"
printf '%-28s %10s\n' "sidecar / (cp+sync+sha256sum)" "$(ratio sidecar cpsum)"
result "Checksum sidecar, $SIZE_MB MiB local" sidecar "cp+sha256sum" cpsum
result "No checksum, $SIZE_MB MiB local" plain "ferry sidecar" sidecar

#!/usr/bin/env bash
# FTP benchmark, side by side in one run against one vsftpd on 127.0.0.1:
#   1. a 1 GiB download: `ferry once` vs curl, alternating, RUNS each
#   2. a 1 GiB upload: the transport's write path (bench/ftp_upload.rs,
#      ferry has no upload command yet) vs `curl -T`
#   3. 10,000 files of 4 KiB: `ferry once` with a rule vs `lftp mirror --parallel=4`
# (and `rclone copy` in 1 and 3 when rclone is installed).
# Prints every run's seconds and peak RSS (/usr/bin/time -f '%e %M'), the
# medians and the ratios. Needs vsftpd, curl, lftp; uses release builds.
#   bench/ftp.sh [RUNS]      (release build in target/bench, as the other scripts)
#   SIZE_MB=256 SMALL=2000 bench/ftp.sh 3
# RUNS may also come from the environment (the argument wins).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${1:-${RUNS:-3}}
SIZE_MB=${SIZE_MB:-1024}
SMALL=${SMALL:-10000}
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need /usr/sbin/vsftpd /usr/bin/curl /usr/bin/lftp /usr/bin/python3 -- vsftpd curl lftp python3 time
bench_build ftp_upload
UPLOAD=$EXAMPLES/ftp_upload

bench_workdir ftp
bench_vsftpd ftp
rclone_remotes
rclone_note
# vsftpd runs as the launching user without chroot, so ferry names the
# real paths ($FTP_DIR/...); curl and lftp use paths relative to anon_root
# ($FTP_REL/...).
mkdir -p "$FTP_DIR/big" "$FTP_DIR/many" "$FTP_DIR/up"
chmod 777 "$FTP_DIR/up"
URL=ftp://127.0.0.1:$FPORT/$FTP_REL

echo "making test data in $W and $FTP_DIR"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$FTP_DIR/big/big.bin"
python3 - "$FTP_DIR/many" "$SMALL" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
block = os.urandom(4096)
for i in range(n):
    with open(os.path.join(d, f"f{i + 1:05d}.dat"), "wb") as f:
        f.write(block)
PY

# ferry configuration: one rule per data set, run one at a time.
config() { # $1 = remote dir, $2 = local dir
    cat > "$W/ferry.toml" <<EOF
[daemon]
state = "$W/state/ferry.db"
max_transfers = 8

[servers.bench]
protocol = "ftp"
host = "127.0.0.1"
port = $FPORT
max_sessions = 4

[[watch]]
name = "bench"
server = "bench"
remote_dir = "$1"
local_dir = "$2"
stable_for = "0s"
EOF
}
count() { find "$1" -type f | wc -l; }

echo "$SIZE_MB MiB download (ferry fsyncs its file before the rename; curl does not)"
for r in $(seq 1 "$RUNS"); do
    rm -rf "$W/state" "$W/out"; config "$FTP_DIR/big" "$W/out"; settle
    timed ferry-get "$FERRY" once -c "$W/ferry.toml"
    cmp -s "$W/out/big.bin" "$FTP_DIR/big/big.bin" || { echo "ferry download differs" >&2; exit 1; }
    rm -rf "$W/out"; mkdir -p "$W/out"; settle
    timed curl-get curl -sS -o "$W/out/big.bin" "$URL/big/big.bin"
    rm -rf "$W/out"; mkdir -p "$W/out"; settle
    # The same durability as ferry: curl, then fsync of the file.
    timed curl-get-sync sh -c "curl -sS -o '$W/out/big.bin' '$URL/big/big.bin' && sync '$W/out/big.bin'"
    if [[ -n $HAVE_RCLONE ]]; then
        rm -rf "$W/out"; mkdir -p "$W/out"; settle
        timed rclone-get rclone copy "$RCLONE_FTP$FTP_REL/big" "$W/out"
    fi
done
rm -rf "$W/out"

echo "$SIZE_MB MiB upload (ferry: Session::write_from via bench/ftp_upload.rs)"
for r in $(seq 1 "$RUNS"); do
    rm -f "$FTP_DIR/up/"*; settle
    timed ferry-put "$UPLOAD" "$FPORT" "$FTP_DIR/big/big.bin" "$FTP_DIR/up/ferry.bin"
    rm -f "$FTP_DIR/up/"*; settle
    timed curl-put curl -sS -T "$FTP_DIR/big/big.bin" "$URL/up/curl.bin"
done

echo "$SMALL files of 4 KiB"
# Every run writes into a directory of its own and nothing is deleted until
# the end: on ext4 without a journal, creating files just after deleting
# thousands makes the inode allocator skip every recently freed inode,
# which made both sides' times swing by 2x with whatever ran before.
for r in $(seq 1 "$RUNS"); do
    rm -rf "$W/state"; config "$FTP_DIR/many" "$W/many.f$r"; sync
    timed ferry-many "$FERRY" once -c "$W/ferry.toml"
    [ "$(count "$W/many.f$r")" -eq "$SMALL" ] || { echo "ferry delivered $(count "$W/many.f$r") files" >&2; exit 1; }
    sync
    timed lftp-many lftp -e "set cmd:fail-exit yes; mirror --parallel=4 $FTP_REL/many $W/many.l$r; quit" "ftp://127.0.0.1:$FPORT"
    [ "$(count "$W/many.l$r")" -eq "$SMALL" ] || { echo "lftp mirrored $(count "$W/many.l$r") files" >&2; exit 1; }
    if [[ -n $HAVE_RCLONE ]]; then
        mkdir -p "$W/many.r$r"; sync
        timed rclone-many rclone copy --transfers=4 "$RCLONE_FTP$FTP_REL/many" "$W/many.r$r"
        [ "$(count "$W/many.r$r")" -eq "$SMALL" ] || { echo "rclone copied $(count "$W/many.r$r") files" >&2; exit 1; }
    fi
done

MB=$(awk -v m="$SIZE_MB" 'BEGIN {print m * 1.048576}')
echo
echo "medians over $RUNS runs (seconds; ratio > 1 means ferry is faster)"
awk -v f="$(med ferry-get)" -v c="$(med curl-get)" -v fr="$(rss_kib ferry-get)" -v cr="$(rss_kib curl-get)" -v mb="$MB" -v m="$SIZE_MB" 'BEGIN {
    printf "download %d MiB: ferry %.2f s (%.0f MB/s, %d KiB)  curl %.2f s (%.0f MB/s, %d KiB)  ratio %.2fx\n", m, f, mb/f, fr, c, mb/c, cr, c/f }'
awk -v f="$(med ferry-get)" -v c="$(med curl-get-sync)" -v m="$SIZE_MB" 'BEGIN {
    printf "download %d MiB: ferry %.2f s  curl + fsync %.2f s  ratio %.2fx\n", m, f, c, c/f }'
[[ -z $HAVE_RCLONE ]] || awk -v f="$(med ferry-get)" -v c="$(med rclone-get)" -v m="$SIZE_MB" 'BEGIN {
    printf "download %d MiB: ferry %.2f s  rclone %.2f s  ratio %.2fx\n", m, f, c, c/f }'
awk -v f="$(med ferry-put)" -v c="$(med curl-put)" -v fr="$(rss_kib ferry-put)" -v cr="$(rss_kib curl-put)" -v mb="$MB" -v m="$SIZE_MB" 'BEGIN {
    printf "upload %d MiB:   ferry %.2f s (%.0f MB/s, %d KiB)  curl %.2f s (%.0f MB/s, %d KiB)  ratio %.2fx\n", m, f, mb/f, fr, c, mb/c, cr, c/f }'
awk -v f="$(med ferry-many)" -v l="$(med lftp-many)" -v fr="$(rss_kib ferry-many)" -v lr="$(rss_kib lftp-many)" -v n="$SMALL" 'BEGIN {
    printf "%d x 4 KiB: ferry %.2f s (%.0f files/s, %d KiB)  lftp %.2f s (%.0f files/s, %d KiB)  ratio %.2fx\n", n, f, n/f, fr, l, n/l, lr, l/f }'
[[ -z $HAVE_RCLONE ]] || awk -v f="$(med ferry-many)" -v l="$(med rclone-many)" -v n="$SMALL" 'BEGIN {
    printf "%d x 4 KiB: ferry %.2f s  rclone %.2f s  ratio %.2fx\n", n, f, l, l/f }'

result "Listen FTP $SIZE_MB MiB, \`ferry once\`" ferry-get curl curl-get 1.0
result "Listen FTP $SIZE_MB MiB, \`ferry once\`" ferry-get "curl + fsync" curl-get-sync
result "Listen FTP $SIZE_MB MiB, \`ferry once\`" ferry-get rclone rclone-get
result "Upload FTP $SIZE_MB MiB, transport alone" ferry-put curl curl-put
result "Listen FTP $SMALL x 4 KiB" ferry-many lftp lftp-many 1.0
result "Listen FTP $SMALL x 4 KiB" ferry-many rclone rclone-many

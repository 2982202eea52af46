#!/usr/bin/env bash
# FTP benchmark, side by side in one run against one vsftpd on 127.0.0.1:
#   1. a 1 GiB download: `ferry once` vs curl, alternating, RUNS each
#   2. a 1 GiB upload: the transport's write path (bench/ftp_upload.rs,
#      ferry has no upload command yet) vs `curl -T`
#   3. 10,000 files of 4 KiB: `ferry once` with a rule vs `lftp mirror --parallel=4`
# Prints every run's seconds and peak RSS (/usr/bin/time -f '%e %M'), the
# medians and the ratios. Needs vsftpd, curl, lftp; uses release builds.
#   bench/ftp.sh [RUNS]      (release build in target/bench, as the other scripts)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
TARGET=$CARGO_TARGET_DIR
for p in /usr/sbin/vsftpd /usr/bin/curl /usr/bin/lftp /usr/bin/time; do
    [ -x "$p" ] || { echo "missing $p: apt-get install vsftpd curl lftp time" >&2; exit 1; }
done
cargo build --release --quiet --bin ferry --example ftp_upload
FERRY="$TARGET/release/ferry"
UPLOAD="$TARGET/release/examples/ftp_upload"

W=$(mktemp -d /var/tmp/ferry-ftp-bench.XXXXXX)
VSFTPD_PID=""
cleanup() { [ -z "$VSFTPD_PID" ] || kill "$VSFTPD_PID" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/root/pub/big" "$W/root/pub/many" "$W/root/pub/up" "$W/empty"
chmod 777 "$W/root/pub" "$W/root/pub/up"
PORT=$(( 30000 + RANDOM % 20000 ))
cat > "$W/vsftpd.conf" <<EOF
listen=YES
listen_address=127.0.0.1
listen_port=$PORT
background=NO
seccomp_sandbox=NO
run_as_launching_user=YES
anonymous_enable=YES
local_enable=NO
anon_root=$W/root
no_anon_password=YES
write_enable=YES
anon_upload_enable=YES
anon_other_write_enable=YES
anon_world_readable_only=NO
anon_umask=022
pasv_min_port=$(( PORT + 1 ))
pasv_max_port=$(( PORT + 200 ))
secure_chroot_dir=$W/empty
xferlog_enable=NO
max_per_ip=0
max_clients=0
EOF
/usr/sbin/vsftpd "$W/vsftpd.conf" & VSFTPD_PID=$!
sleep 0.5

echo "making test data in $W"
head -c 1073741824 /dev/urandom > "$W/root/pub/big/big.bin"
head -c 4096 /dev/urandom > "$W/small"
for i in $(seq -w 1 10000); do cp "$W/small" "$W/root/pub/many/f$i.dat"; done

# vsftpd runs as the launching user without chroot, so ferry names the
# real paths; curl and lftp use paths relative to anon_root.
# ferry configuration: one rule per data set, run one at a time.
config() { # $1 = remote dir, $2 = local dir
    cat > "$W/ferry.toml" <<EOF
[daemon]
state = "$W/state/ferry.db"
max_transfers = 8

[servers.bench]
protocol = "ftp"
host = "127.0.0.1"
port = $PORT
max_sessions = 4

[[watch]]
name = "bench"
server = "bench"
remote_dir = "$1"
local_dir = "$2"
stable_for = "0s"
EOF
}

# Lets the disk finish what the last run left (writeback, and the discard
# of a deleted 1 GiB file on a `discard` mount) before the next timed run,
# so that neither side pays for the other.
settle() { sync; sleep 2; }

# timed LABEL CMD...: runs CMD, appends "seconds rss_kb" to $W/LABEL.times
timed() {
    local label=$1; shift
    /usr/bin/time -f '%e %M' -o "$W/t" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
    cat "$W/t" >> "$W/$label.times"
    printf '  %-14s %6.2f s  %7d KiB peak RSS\n' "$label" $(cat "$W/t")
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
med() { cut -d' ' -f1 "$W/$1.times" | median; }
rss() { cut -d' ' -f2 "$W/$1.times" | sort -n | tail -1; }

echo "1 GiB download (ferry fsyncs its file before the rename; curl does not)"
for r in $(seq 1 "$RUNS"); do
    rm -rf "$W/state" "$W/out"; config "$W/root/pub/big" "$W/out"; settle
    timed ferry-get "$FERRY" once -c "$W/ferry.toml"
    cmp -s "$W/out/big.bin" "$W/root/pub/big/big.bin" || { echo "ferry download differs" >&2; exit 1; }
    rm -rf "$W/out"; mkdir -p "$W/out"; settle
    timed curl-get curl -sS -o "$W/out/big.bin" "ftp://127.0.0.1:$PORT/pub/big/big.bin"
    rm -rf "$W/out"; mkdir -p "$W/out"; settle
    # The same durability as ferry: curl, then fsync of the file.
    timed curl-get-sync sh -c "curl -sS -o '$W/out/big.bin' 'ftp://127.0.0.1:$PORT/pub/big/big.bin' && sync '$W/out/big.bin'"
done
rm -rf "$W/out"

echo "1 GiB upload (ferry: Session::write_from via bench/ftp_upload.rs)"
for r in $(seq 1 "$RUNS"); do
    rm -f "$W/root/pub/up/"*; settle
    timed ferry-put "$UPLOAD" "$PORT" "$W/root/pub/big/big.bin" "$W/root/pub/up/ferry.bin"
    rm -f "$W/root/pub/up/"*; settle
    timed curl-put curl -sS -T "$W/root/pub/big/big.bin" "ftp://127.0.0.1:$PORT/pub/up/curl.bin"
done

echo "10,000 files of 4 KiB"
# Every run writes into a directory of its own and nothing is deleted until
# the end: on ext4 without a journal, creating files just after deleting
# thousands makes the inode allocator skip every recently freed inode,
# which made both sides' times swing by 2x with whatever ran before.
for r in $(seq 1 "$RUNS"); do
    rm -rf "$W/state"; config "$W/root/pub/many" "$W/many.f$r"; sync
    timed ferry-many "$FERRY" once -c "$W/ferry.toml"
    [ "$(ls "$W/many.f$r" | wc -l)" -eq 10000 ] || { echo "ferry delivered $(ls "$W/many.f$r" | wc -l) files" >&2; exit 1; }
    sync
    timed lftp-many lftp -e "set cmd:fail-exit yes; mirror --parallel=4 pub/many $W/many.l$r; quit" "ftp://127.0.0.1:$PORT"
    [ "$(ls "$W/many.l$r" | wc -l)" -eq 10000 ] || { echo "lftp mirrored $(ls "$W/many.l$r" | wc -l) files" >&2; exit 1; }
done

echo
echo "medians over $RUNS runs (seconds; ratio > 1 means ferry is faster)"
awk -v f="$(med ferry-get)" -v c="$(med curl-get)" -v fr="$(rss ferry-get)" -v cr="$(rss curl-get)" 'BEGIN {
    printf "download 1 GiB: ferry %.2f s (%.0f MB/s, %d KiB)  curl %.2f s (%.0f MB/s, %d KiB)  ratio %.2fx\n", f, 1073.741824/f, fr, c, 1073.741824/c, cr, c/f }'
awk -v f="$(med ferry-get)" -v c="$(med curl-get-sync)" 'BEGIN {
    printf "download 1 GiB: ferry %.2f s  curl + fsync %.2f s  ratio %.2fx\n", f, c, c/f }'
awk -v f="$(med ferry-put)" -v c="$(med curl-put)" -v fr="$(rss ferry-put)" -v cr="$(rss curl-put)" 'BEGIN {
    printf "upload 1 GiB:   ferry %.2f s (%.0f MB/s, %d KiB)  curl %.2f s (%.0f MB/s, %d KiB)  ratio %.2fx\n", f, 1073.741824/f, fr, c, 1073.741824/c, cr, c/f }'
awk -v f="$(med ferry-many)" -v l="$(med lftp-many)" -v fr="$(rss ferry-many)" -v lr="$(rss lftp-many)" 'BEGIN {
    printf "10,000 x 4 KiB: ferry %.2f s (%.0f files/s, %d KiB)  lftp %.2f s (%.0f files/s, %d KiB)  ratio %.2fx\n", f, 10000/f, fr, l, 10000/l, lr, l/f }'

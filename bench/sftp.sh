#!/usr/bin/env bash
# SFTP benchmark: ferry against OpenSSH's own `sftp` client, side by side in
# one run, against one OpenSSH sshd on loopback (started here, stopped at exit).
#
#   bench/sftp.sh                    # 1 GiB, 3 runs each, 10000 small files
#   SIZE_MB=256 RUNS=3 SMALL=2000 bench/sftp.sh
#   FERRY_B=/path/to/other/ferry bench/sftp.sh   # A/B of two builds
#
# FERRY_B: a second ferry binary whose `ferry once` runs after each of
# FERRY's, for the download and the small files; the ratios then compare
# the two builds in the same minutes (this machine's swings make that the
# only fair comparison).
# Prints the median seconds of each side, MB/s, files/s, ratios
# (OpenSSH time / ferry time: above 1 means ferry is faster) and ferry's peak RSS.
# Needs root (sshd and a test user), openssh-server, openssh-client, GNU time.
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
SMALL=${SMALL:-10000}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need_root "starts sshd, creates user $BENCH_USER"
bench_need /usr/sbin/sshd /usr/bin/sftp /usr/bin/ssh-keygen /usr/bin/python3 -- openssh-server openssh-client python3 time
bench_build transfer
TRANSFER=$EXAMPLES/transfer

bench_workdir sftp
bench_sshd
rclone_remotes
rclone_note
bench_own "$W/remote" "$W/remote/big" "$W/remote/small" "$W/remote/up"

echo "== making data: ${SIZE_MB} MiB file, $SMALL files of 4 KiB"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$W/remote/big/big.bin"
python3 - "$W/remote/small" "$SMALL" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
block = os.urandom(4096)
for i in range(n):
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(block)
PY
chown -R "$BENCH_USER" "$W/remote"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$W/upload.bin"
chmod 644 "$W/upload.bin"

config() { # $1 = remote dir, $2 = state dir, $3 = local dir
    cat <<CONF
[daemon]
state = "$2/state.db"
max_transfers = 8
[servers.s]
protocol = "sftp"
host = "127.0.0.1"
port = $SPORT
user = "$BENCH_USER"
private_key = "$SSH_KEY"
known_hosts = "$KNOWN_HOSTS"
max_sessions = 8
[[watch]]
name = "bench"
server = "s"
remote_dir = "$1"
local_dir = "$3"
stable_for = "0s"
CONF
}
config "$W/remote/big" "$W/st" "$W/out" > "$W/big.toml"
config "$W/remote/small" "$W/st" "$W/out" > "$W/small.toml"
SFTP=(sftp -q -b - -i "$SSH_KEY" -P "$SPORT" -o UserKnownHostsFile="$KNOWN_HOSTS" -o BatchMode=yes "$BENCH_USER@127.0.0.1")

echo "== download ${SIZE_MB} MiB, $RUNS runs each, alternating"
for i in $(seq "$RUNS"); do
    rm -rf "$W/out" "$W/st"; mkdir -p "$W/out"
    timed ferry_once "$FERRY" once -c "$W/big.toml"
    if [[ -n ${FERRY_B:-} ]]; then
        rm -rf "$W/out" "$W/st"; mkdir -p "$W/out"
        timed ferry_b_once "$FERRY_B" once -c "$W/big.toml"
    fi
    rm -rf "$W/out"; mkdir -p "$W/out"
    timed ferry_get "$TRANSFER" -c "$W/big.toml" s get "$W/remote/big/big.bin" "$W/out/big.bin"
    rm -rf "$W/out"; mkdir -p "$W/out"
    timed sftp_get "${SFTP[@]}" <<<"get $W/remote/big/big.bin $W/out/big.bin"
    if [[ -n $HAVE_RCLONE ]]; then
        rm -rf "$W/out"; mkdir -p "$W/out"
        timed rclone_get rclone copy "$RCLONE_SFTP$W/remote/big" "$W/out"
    fi
done
cmp "$W/out/big.bin" "$W/remote/big/big.bin"

echo "== upload ${SIZE_MB} MiB, $RUNS runs each, alternating"
for i in $(seq "$RUNS"); do
    rm -f "$W/remote/up/"*
    timed ferry_put "$TRANSFER" -c "$W/big.toml" s put "$W/upload.bin" "$W/remote/up/up.bin"
    rm -f "$W/remote/up/"*
    timed sftp_put "${SFTP[@]}" <<<"put $W/upload.bin $W/remote/up/up.bin"
done
cmp "$W/upload.bin" "$W/remote/up/up.bin"

echo "== $SMALL files of 4 KiB, $RUNS runs each, alternating"
# Every run writes into a directory of its own and nothing is deleted until
# the end: on ext4 without a journal, creating files just after deleting
# thousands makes the inode allocator skip every recently freed inode,
# which made both sides' times swing by 2x with whatever ran before.
rm -rf "$W/out" "$W/st"
for i in $(seq "$RUNS"); do
    config "$W/remote/small" "$W/st.$i" "$W/small.f$i" > "$W/small.$i.toml"
    mkdir -p "$W/small.f$i" "$W/small.s$i"; sync
    timed ferry_small "$FERRY" once -c "$W/small.$i.toml"
    [[ $(ls "$W/small.f$i" | wc -l) -eq $SMALL ]] || { echo "ferry delivered $(ls "$W/small.f$i" | wc -l) of $SMALL" >&2; exit 1; }
    if [[ -n ${FERRY_B:-} ]]; then
        config "$W/remote/small" "$W/st.b$i" "$W/small.b$i" > "$W/small.b$i.toml"
        mkdir -p "$W/small.b$i"; sync
        timed ferry_b_small "$FERRY_B" once -c "$W/small.b$i.toml"
        [[ $(ls "$W/small.b$i" | wc -l) -eq $SMALL ]] || { echo "FERRY_B delivered $(ls "$W/small.b$i" | wc -l) of $SMALL" >&2; exit 1; }
    fi
    sync
    timed sftp_small "${SFTP[@]}" <<<"get -r $W/remote/small $W/small.s$i"
    [[ $(ls "$W/small.s$i"/*/ | wc -l) -eq $SMALL ]] || { echo "sftp fetched $(ls "$W/small.s$i"/*/ | wc -l) of $SMALL" >&2; exit 1; }
    if [[ -n $HAVE_RCLONE ]]; then
        mkdir -p "$W/small.r$i"; sync
        timed rclone_small rclone copy --transfers=8 "$RCLONE_SFTP$W/remote/small" "$W/small.r$i"
        [[ $(ls "$W/small.r$i" | wc -l) -eq $SMALL ]] || { echo "rclone fetched $(ls "$W/small.r$i" | wc -l) of $SMALL" >&2; exit 1; }
    fi
done

mb() { awk -v s="$(med "$1")" -v m="$SIZE_MB" 'BEGIN {printf "%.0f", m * 1.048576 / s}'; }
fs() { awk -v s="$(med "$1")" -v n="$SMALL" 'BEGIN {printf "%.0f f/s", n / s}'; }

echo
printf '%-44s %9s %9s %14s\n' "case (median of $RUNS)" seconds MB/s "peak RSS KiB"
for c in ferry_once ${FERRY_B:+ferry_b_once} ferry_get sftp_get ${HAVE_RCLONE:+rclone_get} ferry_put sftp_put; do
    printf '%-44s %9s %9s %14s\n' "$c" "$(med $c)" "$(mb $c)" "$(rss_kib $c)"
done
for c in ferry_small ${FERRY_B:+ferry_b_small} sftp_small ${HAVE_RCLONE:+rclone_small}; do
    printf '%-44s %9s %9s %14s\n' "$c ($SMALL files)" "$(med $c)" "$(fs $c)" "$(rss_kib $c)"
done
echo
echo "download: ferry once (list, fetch, fsync, rename, state) vs sftp get: $(ratio sftp_get ferry_once)"
echo "download: ferry transport alone vs sftp get:                        $(ratio sftp_get ferry_get)"
echo "upload:   ferry transport vs sftp put:                              $(ratio sftp_put ferry_put)"
echo "small files: ferry once vs sftp get -r:                             $(ratio sftp_small ferry_small)"
if [[ -n ${FERRY_B:-} ]]; then
    echo "download: FERRY_B once vs FERRY once (A/B):                        $(ratio ferry_once ferry_b_once)"
    echo "small files: FERRY_B once vs FERRY once (A/B):                     $(ratio ferry_small ferry_b_small)"
fi
if [[ -n $HAVE_RCLONE ]]; then
    echo "download: ferry once vs rclone copy:                                $(ratio rclone_get ferry_once)"
    echo "small files: ferry once vs rclone copy --transfers=8:               $(ratio rclone_small ferry_small)"
fi

result "Listen SFTP $SIZE_MB MiB, \`ferry once\`" ferry_once sftp sftp_get 1.0
result "Listen SFTP $SIZE_MB MiB, \`ferry once\`" ferry_once rclone rclone_get
result "Listen SFTP $SIZE_MB MiB, transport alone" ferry_get sftp sftp_get
result "Upload SFTP $SIZE_MB MiB, transport alone" ferry_put sftp sftp_put 1.0
result "Listen SFTP $SMALL x 4 KiB" ferry_small sftp sftp_small 2.0
result "Listen SFTP $SMALL x 4 KiB" ferry_small rclone rclone_small

#!/usr/bin/env bash
# SFTP benchmark: ferry against OpenSSH's own `sftp` client, side by side in
# one run, against one OpenSSH sshd on loopback (started here, stopped at exit).
#
#   bench/sftp.sh                    # 1 GiB, 3 runs each, 10000 small files
#   SIZE_MB=256 RUNS=3 SMALL=2000 bench/sftp.sh
#
# Prints the median seconds of each side, MB/s, files/s, ratios
# (OpenSSH time / ferry time: above 1 means ferry is faster) and ferry's peak RSS.
# Needs root (sshd and a test user), openssh-server, openssh-client, GNU time.
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
SMALL=${SMALL:-10000}
USER_NAME=ferrytest

cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $(id -u) -eq 0 ]] || { echo "run as root (starts sshd, creates user $USER_NAME)" >&2; exit 2; }
for need in /usr/sbin/sshd /usr/bin/sftp /usr/bin/ssh-keygen /usr/bin/time; do
    [[ -x $need ]] || { echo "missing $need: apt-get install openssh-server openssh-client time" >&2; exit 2; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
echo "== building ferry (release)"
cargo build --release --quiet --bin ferry --example transfer
FERRY=$CARGO_TARGET_DIR/release/ferry
TRANSFER=$CARGO_TARGET_DIR/release/examples/transfer

W=$(mktemp -d /tmp/ferry-bench-sftp.XXXXXX)
SSHD_PID=""
cleanup() {
    [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null || true
    [[ -n ${KEEP:-} ]] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
chmod 755 "$W"

id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/sh "$USER_NAME"
mkdir -p /run/sshd "$W/remote/big" "$W/remote/small" "$W/remote/up" "$W/keys"
ssh-keygen -q -t ed25519 -N '' -f "$W/keys/host" -C host
ssh-keygen -q -t ed25519 -N '' -f "$W/keys/user" -C user
cp "$W/keys/user.pub" "$W/authorized_keys"
chmod 644 "$W/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $W/keys/host
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
PubkeyAuthentication yes
AllowUsers $USER_NAME
Subsystem sftp internal-sftp
MaxStartups 100
CONF
/usr/sbin/sshd -D -e -f "$W/sshd_config" 2>"$W/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.1
done
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$W/keys/host.pub")" > "$W/known_hosts"

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
chown -R "$USER_NAME" "$W/remote"
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
port = $PORT
user = "$USER_NAME"
private_key = "$W/keys/user"
known_hosts = "$W/known_hosts"
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
SFTP=(sftp -q -b - -i "$W/keys/user" -P "$PORT" -o UserKnownHostsFile="$W/known_hosts" -o BatchMode=yes "$USER_NAME@127.0.0.1")

# timed CMD... -> "seconds peak_kib" (the command's own output is discarded)
timed() { /usr/bin/time -f '%e %M' -o "$W/time" "$@" >/dev/null 2>"$W/last.log" || { cat "$W/last.log" >&2; exit 1; }; cat "$W/time"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T RSS
run_case() { # name, then the command
    local name=$1; shift
    local r; r=$(timed "$@")
    T[$name]+="${r% *} "
    local kib=${r#* }
    (( kib > ${RSS[$name]:-0} )) && RSS[$name]=$kib
    return 0
}

echo "== download ${SIZE_MB} MiB, $RUNS runs each, alternating"
for i in $(seq "$RUNS"); do
    rm -rf "$W/out" "$W/st"; mkdir -p "$W/out"
    run_case ferry_once "$FERRY" once -c "$W/big.toml"
    rm -rf "$W/out"; mkdir -p "$W/out"
    run_case ferry_get "$TRANSFER" -c "$W/big.toml" s get "$W/remote/big/big.bin" "$W/out/big.bin"
    rm -rf "$W/out"; mkdir -p "$W/out"
    run_case sftp_get "${SFTP[@]}" <<<"get $W/remote/big/big.bin $W/out/big.bin"
done
cmp "$W/out/big.bin" "$W/remote/big/big.bin"

echo "== upload ${SIZE_MB} MiB, $RUNS runs each, alternating"
for i in $(seq "$RUNS"); do
    rm -f "$W/remote/up/"*
    run_case ferry_put "$TRANSFER" -c "$W/big.toml" s put "$W/upload.bin" "$W/remote/up/up.bin"
    rm -f "$W/remote/up/"*
    run_case sftp_put "${SFTP[@]}" <<<"put $W/upload.bin $W/remote/up/up.bin"
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
    run_case ferry_small "$FERRY" once -c "$W/small.$i.toml"
    [[ $(ls "$W/small.f$i" | wc -l) -eq $SMALL ]] || { echo "ferry delivered $(ls "$W/small.f$i" | wc -l) of $SMALL" >&2; exit 1; }
    sync
    run_case sftp_small "${SFTP[@]}" <<<"get -r $W/remote/small $W/small.s$i"
    [[ $(ls "$W/small.s$i"/*/ | wc -l) -eq $SMALL ]] || { echo "sftp fetched $(ls "$W/small.s$i"/*/ | wc -l) of $SMALL" >&2; exit 1; }
done

med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | median; }
mbs() { awk -v s="$1" -v m="$SIZE_MB" 'BEGIN {printf "%.0f", m * 1.048576 / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
fps() { awk -v s="$1" -v n="$SMALL" 'BEGIN {printf "%.0f", n / s}'; }

echo
printf '%-44s %9s %9s %14s\n' "case (median of $RUNS)" seconds MB/s "peak RSS KiB"
for c in ferry_once ferry_get sftp_get ferry_put sftp_put; do
    s=$(med $c); printf '%-44s %9s %9s %14s\n' "$c" "$s" "$(mbs "$s")" "${RSS[$c]}"
done
for c in ferry_small sftp_small; do
    s=$(med $c); printf '%-44s %9s %9s %14s\n' "$c ($SMALL files)" "$s" "$(fps "$s") f/s" "${RSS[$c]}"
done
echo
echo "download: ferry once (list, fetch, fsync, rename, state) vs sftp get: $(ratio "$(med sftp_get)" "$(med ferry_once)")"
echo "download: ferry transport alone vs sftp get:                        $(ratio "$(med sftp_get)" "$(med ferry_get)")"
echo "upload:   ferry transport vs sftp put:                              $(ratio "$(med sftp_put)" "$(med ferry_put)")"
echo "small files: ferry once vs sftp get -r:                             $(ratio "$(med sftp_small)" "$(med ferry_small)")"

#!/usr/bin/env bash
# Segmented downloads, side by side in one run:
#
#   1. Shaped links (each connection limited to RATE bytes/s: SFTP through
#      bench/throttle.py in front of sshd, FTP from bench/ftp_shaped.py,
#      pyftpdlib pacing each data connection, since FTP data connections
#      bypass a relay), a file of
#      SHAPED_MB MiB: ferry with segments = 4 against ferry with one stream,
#      OpenSSH `sftp`, `lftp pget -n 4` (and rclone --multi-thread-streams 4
#      when installed). Goal: four segments at least 3x faster than one
#      stream and than `sftp`.
#   2. Plain loopback, SIZE_MB MiB both ways: the download with ferry's
#      defaults (segments = 4 above 256 MiB) against one stream (must be no
#      slower), lftp `pget -n 4` and `get`, rclone; the upload (one stream)
#      against lftp `put` and rclone.
#
#   bench/segments.sh                          # 64 MiB shaped at 2 MB/s, 1 GiB loopback, 1 run each
#   SHAPED_MB=40 RATE=4000000 SIZE_MB=256 RUNS=3 bench/segments.sh
#
# Prints medians and ratios (reference time / ferry time: above 1 means
# ferry is faster). Needs root (sshd and a test user), openssh-server,
# openssh-client, vsftpd, lftp, python3, GNU time; rclone is optional.
set -euo pipefail

SHAPED_MB=${SHAPED_MB:-64}
RATE=${RATE:-2000000}
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-1}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need_root "starts sshd, creates user $BENCH_USER"
bench_need /usr/sbin/sshd /usr/bin/sftp /usr/bin/ssh /usr/sbin/vsftpd /usr/bin/lftp /usr/bin/python3 \
    -- openssh-server openssh-client vsftpd lftp python3 python3-pyftpdlib time
/usr/bin/python3 -c 'import pyftpdlib' 2>/dev/null || bench_die "missing pyftpdlib: apt-get install python3-pyftpdlib"
bench_build transfer
TRANSFER=$EXAMPLES/transfer

bench_workdir segments
bench_sshd
bench_vsftpd segments
rclone_remotes
rclone_note

# --- the shaped links ---
TPORT=$(free_port)
python3 bench/throttle.py "$TPORT" "$SPORT" "$RATE" &
BENCH_PIDS+=($!)
wait_port "$TPORT"
# The relay shows sshd's key under its own port.
cp "$KNOWN_HOSTS" "$W/known_hosts"
sed -n "s/^\[127.0.0.1\]:$SPORT /[127.0.0.1]:$TPORT /p" "$KNOWN_HOSTS" >>"$W/known_hosts"
KNOWN_HOSTS=$W/known_hosts

SLOW=$W/slow-ftp
mkdir -p "$SLOW/root/pub" "$SLOW/empty"
chmod 777 "$SLOW/root/pub"
SFPORT=$(free_port 50000)
# FTP's data connections go to ports the server names, past any relay:
# the server itself paces each one (pyftpdlib's ThrottledDTPHandler).
/usr/bin/python3 bench/ftp_shaped.py "$SLOW/root" "$SFPORT" "$RATE" $((SFPORT + 1)) 2>"$SLOW/ftpd.log" &
BENCH_PIDS+=($!)
wait_port "$SFPORT"

echo "== making data: $SHAPED_MB MiB (shaped), $SIZE_MB MiB (loopback)"
bench_own "$W/remote" "$W/remote/shaped" "$W/remote/big" "$W/remote/up"
head -c $((SHAPED_MB * 1024 * 1024)) /dev/urandom >"$W/remote/shaped/shaped.bin"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom >"$W/remote/big/big.bin"
chown -R "$BENCH_USER" "$W/remote"
mkdir -p "$SLOW/root/pub/shaped" "$FTP_DIR/big" "$FTP_DIR/up"
chmod 777 "$FTP_DIR/up"
cp "$W/remote/shaped/shaped.bin" "$SLOW/root/pub/shaped/"
ln "$W/remote/big/big.bin" "$FTP_DIR/big/big.bin" 2>/dev/null || cp "$W/remote/big/big.bin" "$FTP_DIR/big/big.bin"
cp "$W/remote/big/big.bin" "$W/upload.bin"
chmod 644 "$W/upload.bin"

# config PROTOCOL PORT REMOTE_DIR SEGMENTS [THRESHOLD]: a rule fetching
# REMOTE_DIR into $W/out, state in $W/st.
config() {
    local auth threshold=${5:+segment_threshold = \"$5\"}
    if [[ $1 == sftp ]]; then
        auth="user = \"$BENCH_USER\"
private_key = \"$SSH_KEY\"
known_hosts = \"$KNOWN_HOSTS\""
    else
        auth=""
    fi
    cat <<CONF
[daemon]
state = "$W/st/state.db"
[servers.s]
protocol = "$1"
host = "127.0.0.1"
port = $2
$auth
max_sessions = 4
io_timeout = "60s"
segments = $4
$threshold
[[watch]]
name = "bench"
server = "s"
remote_dir = "$3"
local_dir = "$W/out"
stable_for = "0s"
CONF
}
config sftp "$TPORT" "$W/remote/shaped" 4 1MiB >"$W/sftp-shaped-4.toml"
config sftp "$TPORT" "$W/remote/shaped" 1 1MiB >"$W/sftp-shaped-1.toml"
config ftp "$SFPORT" "/pub/shaped" 4 1MiB >"$W/ftp-shaped-4.toml"
config ftp "$SFPORT" "/pub/shaped" 1 1MiB >"$W/ftp-shaped-1.toml"
config sftp "$SPORT" "$W/remote/big" 4 >"$W/sftp-loop-4.toml"
config sftp "$SPORT" "$W/remote/big" 1 >"$W/sftp-loop-1.toml"
config ftp "$FPORT" "$FTP_DIR/big" 4 >"$W/ftp-loop-4.toml"
config ftp "$FPORT" "$FTP_DIR/big" 1 >"$W/ftp-loop-1.toml"

SSH_PROG="ssh -a -x -i $SSH_KEY -o UserKnownHostsFile=$KNOWN_HOSTS -o BatchMode=yes"
# GNU time runs programs, not shell functions: these print arguments.
lftp_sftp() { # PORT COMMANDS
    echo "set cmd:fail-exit yes; set xfer:clobber yes; set sftp:connect-program '$SSH_PROG'; open -u $BENCH_USER, -p $1 sftp://127.0.0.1; $2"
}
lftp_ftp() { # PORT COMMANDS
    echo "set cmd:fail-exit yes; set xfer:clobber yes; open -p $1 ftp://127.0.0.1; $2"
}
fresh() { rm -rf "$W/out" "$W/st"; mkdir -p "$W/out"; settle; }
same() { cmp -s "$1" "$2" || { echo "$2 differs from $1" >&2; exit 1; }; }

RSFTP_SHAPED=""
[[ -n $HAVE_RCLONE ]] && RSFTP_SHAPED=":sftp,host=127.0.0.1,port=$TPORT,user=$BENCH_USER,key_file=$SSH_KEY,known_hosts_file=$KNOWN_HOSTS:"

# how LABEL's ferry run went: split into ranges after the probe, or not
way() {
    local probe late
    probe=$(grep -o 'one stream is slow.*' "$W/$1.log" | head -n 1 || true)
    late=$(grep -o 'one stream slowed down.*' "$W/$1.log" | head -n 1 || true)
    if [[ -n $late ]]; then
        echo "    $1: fast at the probe, split once it slowed (${late#*segments })"
    elif [[ -n $probe ]]; then
        echo "    $1: split after the probe (${probe#*segments })"
        # when the probe ended, the ranges started and the bytes were in
        grep -E 'state="seen"|one stream is slow|one stream slowed|downloading in segments|state="downloaded"' "$W/$1.log" |
            cut -c12-27 | paste -sd' ' | sed 's/^/      at /'
    elif grep -q 'downloading in segments' "$W/$1.log"; then
        echo "    $1: split without a probe"
    else
        echo "    $1: one stream"
    fi
}

echo "== shaped: $SHAPED_MB MiB at $RATE B/s per connection, $RUNS runs each"
S=$W/remote/shaped/shaped.bin
for _ in $(seq "$RUNS"); do
    fresh; timed sftp_seg4 "$FERRY" once -c "$W/sftp-shaped-4.toml"; same "$S" "$W/out/shaped.bin"; way sftp_seg4
    fresh; timed sftp_seg1 "$FERRY" once -c "$W/sftp-shaped-1.toml"; same "$S" "$W/out/shaped.bin"
    fresh; echo "get $S $W/out/shaped.bin" >"$W/get.batch"; timed sftp_openssh sftp -q -b "$W/get.batch" -i "$SSH_KEY" -P "$TPORT" -o UserKnownHostsFile="$KNOWN_HOSTS" -o BatchMode=yes "$BENCH_USER@127.0.0.1"; same "$S" "$W/out/shaped.bin"
    fresh; timed sftp_lftp_pget4 lftp -c "$(lftp_sftp "$TPORT" "pget -n 4 $S -o $W/out/shaped.bin")"; same "$S" "$W/out/shaped.bin"
    if [[ -n $HAVE_RCLONE ]]; then
        fresh; timed sftp_rclone4 rclone copy --multi-thread-streams 4 --multi-thread-cutoff 1M "$RSFTP_SHAPED$W/remote/shaped" "$W/out"
        same "$S" "$W/out/shaped.bin"
    fi
    fresh; timed ftp_seg4 "$FERRY" once -c "$W/ftp-shaped-4.toml"; same "$S" "$W/out/shaped.bin"; way ftp_seg4
    fresh; timed ftp_seg1 "$FERRY" once -c "$W/ftp-shaped-1.toml"; same "$S" "$W/out/shaped.bin"
    fresh; timed ftp_lftp_pget4 lftp -c "$(lftp_ftp "$SFPORT" "pget -n 4 pub/shaped/shaped.bin -o $W/out/shaped.bin")"; same "$S" "$W/out/shaped.bin"
done

echo "== loopback: $SIZE_MB MiB download, $RUNS runs each"
B=$W/remote/big/big.bin
for run in $(seq "$RUNS"); do
    # The two ferry cases swap places every run: the first after the other
    # tools' runs pays for what they left behind (page cache, writeback).
    if ((run % 2)); then
        fresh; timed sftp_loop1 "$FERRY" once -c "$W/sftp-loop-1.toml"; same "$B" "$W/out/big.bin"
    fi
    fresh; timed sftp_loop4 "$FERRY" once -c "$W/sftp-loop-4.toml"; same "$B" "$W/out/big.bin"; way sftp_loop4
    if ! ((run % 2)); then
        fresh; timed sftp_loop1 "$FERRY" once -c "$W/sftp-loop-1.toml"; same "$B" "$W/out/big.bin"
    fi
    fresh; timed sftp_lftp_get lftp -c "$(lftp_sftp "$SPORT" "get $B -o $W/out/big.bin")"; same "$B" "$W/out/big.bin"
    fresh; timed sftp_lftp_loop4 lftp -c "$(lftp_sftp "$SPORT" "pget -n 4 $B -o $W/out/big.bin")"; same "$B" "$W/out/big.bin"
    if [[ -n $HAVE_RCLONE ]]; then
        fresh; timed sftp_rclone_loop4 rclone copy --multi-thread-streams 4 "$RCLONE_SFTP$W/remote/big" "$W/out"; same "$B" "$W/out/big.bin"
    fi
    if ((run % 2)); then
        fresh; timed ftp_loop1 "$FERRY" once -c "$W/ftp-loop-1.toml"; same "$B" "$W/out/big.bin"
    fi
    fresh; timed ftp_loop4 "$FERRY" once -c "$W/ftp-loop-4.toml"; same "$B" "$W/out/big.bin"; way ftp_loop4
    if ! ((run % 2)); then
        fresh; timed ftp_loop1 "$FERRY" once -c "$W/ftp-loop-1.toml"; same "$B" "$W/out/big.bin"
    fi
    fresh; timed ftp_lftp_get lftp -c "$(lftp_ftp "$FPORT" "get $FTP_REL/big/big.bin -o $W/out/big.bin")"; same "$B" "$W/out/big.bin"
    fresh; timed ftp_lftp_loop4 lftp -c "$(lftp_ftp "$FPORT" "pget -n 4 $FTP_REL/big/big.bin -o $W/out/big.bin")"; same "$B" "$W/out/big.bin"
    if [[ -n $HAVE_RCLONE ]]; then
        # rclone's ranges end each data connection early, which vsftpd
        # answers with 426 and rclone takes for a failure (ferry expects it).
        fresh
        if timed_try ftp_rclone_loop4 rclone copy --multi-thread-streams 4 "$RCLONE_FTP$FTP_REL/big" "$W/out" &&
            ! cmp -s "$B" "$W/out/big.bin"; then
            echo "    ftp_rclone_loop4: its copy differs from the source; not counted"
            rm -f "$W/ftp_rclone_loop4.times"
        fi
    fi
done

echo "== loopback: $SIZE_MB MiB upload (one stream), $RUNS runs each"
U=$W/upload.bin
for _ in $(seq "$RUNS"); do
    rm -f "$W/remote/up/"*; settle
    timed sftp_put "$TRANSFER" -c "$W/sftp-loop-1.toml" s put "$U" "$W/remote/up/up.bin"
    rm -f "$W/remote/up/"*; settle
    timed sftp_lftp_put lftp -c "$(lftp_sftp "$SPORT" "put $U -o $W/remote/up/up.bin")"
    rm -f "$FTP_DIR/up/"*; settle
    timed ftp_put "$TRANSFER" -c "$W/ftp-loop-1.toml" s put "$U" "$FTP_DIR/up/up.bin"
    rm -f "$FTP_DIR/up/"*; settle
    timed ftp_lftp_put lftp -c "$(lftp_ftp "$FPORT" "put $U -o $FTP_REL/up/up.bin")"
    if [[ -n $HAVE_RCLONE ]]; then
        rm -f "$W/remote/up/"*; settle
        timed sftp_rclone_put rclone copyto "$U" "$RCLONE_SFTP$W/remote/up/up.bin"
        rm -f "$FTP_DIR/up/"*; settle
        timed ftp_rclone_put rclone copyto "$U" "$RCLONE_FTP$FTP_REL/up/up.bin"
    fi
done
same "$U" "$FTP_DIR/up/up.bin"

echo
echo "== medians (ratio = other's time / ferry's time; above 1: ferry faster)"
line() { # LABEL FERRY_CASE MB [REF_CASE...]
    local label=$1 f=$2 mb=$3 r out
    shift 3
    out=$(printf '%-34s %7.2f s %9s' "$label" "$(med "$f")" "$(mbs "$f" "$mb")")
    for r in "$@"; do
        [[ -s $W/$r.times ]] && out+=$(printf '  %s %.2f s = %s' "$r" "$(med "$r")" "$(ratio "$r" "$f")")
    done
    echo "$out"
}
line "SFTP shaped, segments=4" sftp_seg4 "$SHAPED_MB" sftp_seg1 sftp_openssh sftp_lftp_pget4 sftp_rclone4
line "FTP shaped, segments=4" ftp_seg4 "$SHAPED_MB" ftp_seg1 ftp_lftp_pget4
line "SFTP loopback download, default" sftp_loop4 "$SIZE_MB" sftp_loop1 sftp_lftp_get sftp_lftp_loop4 sftp_rclone_loop4
line "FTP loopback download, default" ftp_loop4 "$SIZE_MB" ftp_loop1 ftp_lftp_get ftp_lftp_loop4 ftp_rclone_loop4
line "SFTP loopback upload" sftp_put "$SIZE_MB" sftp_lftp_put sftp_rclone_put
line "FTP loopback upload" ftp_put "$SIZE_MB" ftp_lftp_put ftp_rclone_put
echo "goals: shaped segments=4 vs one stream and vs sftp: $(goal sftp_seg1 sftp_seg4 3) / $(goal sftp_openssh sftp_seg4 3) (SFTP), $(goal ftp_seg1 ftp_seg4 3) (FTP);"
echo "       loopback default vs one stream (no slower): $(goal sftp_loop1 sftp_loop4 0.97) (SFTP), $(goal ftp_loop1 ftp_loop4 0.97) (FTP)"

result "Segments SFTP ${SHAPED_MB} MiB shaped vs 1 stream" sftp_seg4 "ferry 1 stream" sftp_seg1 3.0
result "Segments SFTP ${SHAPED_MB} MiB shaped vs sftp" sftp_seg4 sftp sftp_openssh 3.0
result "Segments SFTP ${SHAPED_MB} MiB shaped vs lftp pget" sftp_seg4 lftp sftp_lftp_pget4 1.0
result "Segments FTP ${SHAPED_MB} MiB shaped vs 1 stream" ftp_seg4 "ferry 1 stream" ftp_seg1 3.0
result "Segments FTP ${SHAPED_MB} MiB shaped vs lftp pget" ftp_seg4 lftp ftp_lftp_pget4 1.0
result "Segments SFTP ${SIZE_MB} MiB loopback vs 1 stream" sftp_loop4 "ferry 1 stream" sftp_loop1 0.97
result "Segments FTP ${SIZE_MB} MiB loopback vs 1 stream" ftp_loop4 "ferry 1 stream" ftp_loop1 0.97

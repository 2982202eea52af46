#!/usr/bin/env bash
# Send benchmark: ferry's `[[send]]` rules (an outbox on this machine
# uploaded to a server) against the usual upload clients, side by side in
# one run, against one OpenSSH sshd and one vsftpd on 127.0.0.1 (started
# here, stopped at exit).
#
#   bench/send.sh                          # 1 GiB, 10,000 x 4 KiB, 3 runs each
#   SIZE_MB=512 RUNS=3 SMALL=3000 bench/send.sh
#
# Throughput (alternating, RUNS each, medians):
#   SFTP  1 GiB:           `ferry once` vs `sftp -b` put, `lftp mirror -R --parallel=8`
#   SFTP  10,000 x 4 KiB:  `ferry once` vs `sftp -b` put -r, `lftp mirror -R --parallel=8`
#   FTP   1 GiB:           `ferry once` vs `curl -T`, `lftp mirror -R --parallel=8`
#   FTP   10,000 x 4 KiB:  `ferry once` vs `lftp mirror -R --parallel=8`
# ferry's rule: stable_for = "0s", after = { delete = true } (the outbox
# holds hard links to the source data, so the delete costs an unlink);
# every run writes into a server directory of its own.
#
# Latency under `ferry run` (a 4 KiB file at a time, the server directory
# polled every 0.5 ms on this machine):
#   event path:  rescan = "60s", LAT_FILES files renamed into the outbox
#                one at a time, 200 ms apart: the watcher sends each at once;
#   rescan path: rescan = "2s", RESCAN_FILES files hard-linked into the
#                outbox (a link makes no move or close-after-write event, so
#                only the rescan finds it), 0.2-2.2 s apart at random.
#
# Prints every run, the medians, MB/s, files/s, ratios (reference time /
# ferry time: above 1 means ferry is faster), ferry's peak RSS (GNU time)
# and the latency median, p90 and maximum.
# Needs root (sshd and a test user), openssh-server, openssh-client,
# vsftpd, curl, lftp, python3, GNU time.
#
# Knobs: SIZE_MB (1024), SMALL (10000), RUNS (3), PARALLEL (lftp, 8),
# SESSIONS (ferry's max_sessions and max_transfers, 8), LAT_FILES (50),
# RESCAN_FILES (20), PARTS ("sftp ftp latency": which parts to run),
# KEEP=1 (keep the work directory).
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
SMALL=${SMALL:-10000}
RUNS=${RUNS:-3}
PARALLEL=${PARALLEL:-8}
SESSIONS=${SESSIONS:-8}
LAT_FILES=${LAT_FILES:-50}
RESCAN_FILES=${RESCAN_FILES:-20}
PARTS=${PARTS:-sftp ftp latency}
USER_NAME=ferrytest

cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $(id -u) -eq 0 ]] || { echo "run as root (starts sshd and vsftpd, creates user $USER_NAME)" >&2; exit 2; }
for need in /usr/sbin/sshd /usr/bin/sftp /usr/bin/ssh /usr/bin/ssh-keygen /usr/sbin/vsftpd /usr/bin/curl /usr/bin/lftp /usr/bin/python3 /usr/bin/time; do
    [[ -x $need ]] || { echo "missing $need: apt-get install openssh-server openssh-client vsftpd curl lftp python3 time" >&2; exit 2; }
done
has() { [[ " $PARTS " == *" $1 "* ]]; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
echo "== building ferry (release)"
cargo build --release --quiet --bin ferry
FERRY=$CARGO_TARGET_DIR/release/ferry

W=$(mktemp -d /var/tmp/ferry-bench-send.XXXXXX)
SSHD_PID="" VSFTPD_PID="" RUN_PID=""
cleanup() {
    [[ -n $RUN_PID ]] && kill "$RUN_PID" 2>/dev/null || true
    [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null || true
    [[ -n $VSFTPD_PID ]] && kill "$VSFTPD_PID" 2>/dev/null || true
    [[ -n ${KEEP:-} ]] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
chmod 755 "$W"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

# --- sshd, with a test user that owns the SFTP side ($W/sftp)
id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/sh "$USER_NAME"
mkdir -p /run/sshd "$W/keys" "$W/sftp"
chown "$USER_NAME" "$W/sftp"
ssh-keygen -q -t ed25519 -N '' -f "$W/keys/host" -C host
ssh-keygen -q -t ed25519 -N '' -f "$W/keys/user" -C user
cp "$W/keys/user.pub" "$W/authorized_keys"
chmod 644 "$W/authorized_keys"
SPORT=$(free_port)
cat > "$W/sshd_config" <<CONF
Port $SPORT
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
MaxSessions 100
CONF
/usr/sbin/sshd -D -e -f "$W/sshd_config" 2>"$W/sshd.log" &
SSHD_PID=$!
wait_port "$SPORT"
echo "[127.0.0.1]:$SPORT $(cut -d' ' -f1,2 "$W/keys/host.pub")" > "$W/known_hosts"

# --- vsftpd: anonymous, uploads allowed, runs as root without chroot, so
# ferry names real paths ($W/ftp/pub/...) while curl and lftp name paths
# relative to anon_root (pub/...). Every small file is a data connection,
# hence 10,000 passive ports (vsftpd sometimes closes a control connection
# in answer to PASV in the second 10,000-file run, with 1,000 ports or
# 10,000 alike: bench/README.md, "Send").
mkdir -p "$W/ftp/pub" "$W/vsftpd-empty"
chmod 777 "$W/ftp/pub"
FPORT=$(( 20000 + RANDOM % 20000 ))
cat > "$W/vsftpd.conf" <<CONF
listen=YES
listen_address=127.0.0.1
listen_port=$FPORT
background=NO
seccomp_sandbox=NO
run_as_launching_user=YES
anonymous_enable=YES
local_enable=NO
anon_root=$W/ftp
no_anon_password=YES
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_other_write_enable=YES
anon_world_readable_only=NO
anon_umask=022
pasv_min_port=$(( FPORT + 1 ))
pasv_max_port=$(( FPORT + 10000 ))
secure_chroot_dir=$W/vsftpd-empty
xferlog_enable=NO
max_per_ip=0
max_clients=0
idle_session_timeout=600
CONF
/usr/sbin/vsftpd "$W/vsftpd.conf" 2>"$W/vsftpd.log" &
VSFTPD_PID=$!
wait_port "$FPORT"

echo "== making data: ${SIZE_MB} MiB file, $SMALL files of 4 KiB"
mkdir -p "$W/src/big" "$W/src/small" "$W/ob" "$W/st"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$W/src/big/big.bin"
python3 - "$W/src/small" "$SMALL" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
block = os.urandom(4096)
for i in range(n):
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(block)
PY
chmod -R a+rX "$W/src"
sync

# config PROTOCOL OUTBOX REMOTE_DIR STATE_DIR RESCAN
config() {
    cat <<CONF
[daemon]
state = "$4/state.db"
max_transfers = $SESSIONS

CONF
    if [[ $1 == sftp ]]; then cat <<CONF
[servers.d]
protocol = "sftp"
host = "127.0.0.1"
port = $SPORT
user = "$USER_NAME"
private_key = "$W/keys/user"
known_hosts = "$W/known_hosts"
max_sessions = $SESSIONS
CONF
    else cat <<CONF
[servers.d]
protocol = "ftp"
host = "127.0.0.1"
port = $FPORT
max_sessions = $SESSIONS
CONF
    fi
    cat <<CONF

[[send]]
name = "bench"
server = "d"
local_dir = "$2"
remote_dir = "$3"
stable_for = "0s"
rescan = "$5"
after = { delete = true }
CONF
}

SFTP=(sftp -q -b - -i "$W/keys/user" -P "$SPORT" -o UserKnownHostsFile="$W/known_hosts" -o BatchMode=yes "$USER_NAME@127.0.0.1")
LFTP_SFTP="set cmd:fail-exit yes; set sftp:connect-program 'ssh -a -x -i $W/keys/user -o UserKnownHostsFile=$W/known_hosts -o BatchMode=yes'; open -u $USER_NAME, -p $SPORT sftp://127.0.0.1"
LFTP_FTP="set cmd:fail-exit yes; open -p $FPORT ftp://127.0.0.1"

# Lets the disk finish what the last run left (writeback, the discard of a
# deleted gigabyte) before the next timed run, so that no side pays for another.
settle() { sync; sleep 2; }
# timed CASE CMD...: runs CMD under GNU time, appends "seconds peak_kib" to $W/CASE.times
timed() {
    local name=$1; shift
    /usr/bin/time -f '%e %M' -o "$W/t" "$@" >"$W/last.out" 2>"$W/last.log" || { echo "$name failed:" >&2; cat "$W/last.out" "$W/last.log" >&2; exit 1; }
    cat "$W/t" >> "$W/$name.times"
    cp "$W/last.log" "$W/$name.log"
    printf '  %-16s %7.2f s  %8d KiB peak RSS\n' "$name" $(cat "$W/t")
}
# SFTP-side directories belong to the test user.
mkremote() { mkdir -p "$1"; [[ $1 == "$W/sftp/"* ]] && chown "$USER_NAME" "$1"; return 0; }
same_big() { cmp -s "$W/src/big/big.bin" "$1" || { echo "$1 differs from the source" >&2; exit 1; }; rm -f "$1"; }
count_is() { # DIR: every small file there (at any depth), nothing else
    local n; n=$(find "$1" -type f | wc -l)
    [[ $n -eq $SMALL ]] || { echo "$1 holds $n files, not $SMALL" >&2; exit 1; }
}
ferry_once() { # CASE PROTOCOL OUTBOX REMOTE
    config "$2" "$3" "$4" "$W/st/$1.$i" 60s > "$W/$1.$i.toml"
    timed "$1" "$FERRY" once -c "$W/$1.$i.toml"
    # A file whose attempt failed is left for a later pass (`ferry once`
    # still exits 0): the run counts, with a warning and the cause.
    local left; left=$(ls -A "$3" | wc -l)
    if (( left > 0 )); then
        echo "  WARNING: $1 run $i left $left files in the outbox for a later pass:" >&2
        grep -h "WARN\|ERROR" "$W/last.log" | cut -c1-300 | head -5 >&2
        echo "$1 run $i: $left files left for a later pass" >> "$W/warnings"
    fi
}

if has sftp; then
    echo "== SFTP ${SIZE_MB} MiB, $RUNS runs each, alternating"
    for i in $(seq "$RUNS"); do
        mkdir -p "$W/ob/sb.$i"; ln "$W/src/big/big.bin" "$W/ob/sb.$i/big.bin"; mkremote "$W/sftp/fb.$i"; settle
        ferry_once ferry_sftp_big sftp "$W/ob/sb.$i" "$W/sftp/fb.$i"
        same_big "$W/sftp/fb.$i/big.bin"
        mkremote "$W/sftp/ob.$i"; settle
        timed sftp_put_big "${SFTP[@]}" <<<"put $W/src/big/big.bin $W/sftp/ob.$i/big.bin"
        same_big "$W/sftp/ob.$i/big.bin"
        mkremote "$W/sftp/lb.$i"; settle
        timed lftp_sftp_big lftp -c "$LFTP_SFTP; mirror -R --parallel=$PARALLEL $W/src/big $W/sftp/lb.$i"
        same_big "$W/sftp/lb.$i/big.bin"
    done

    echo "== SFTP $SMALL x 4 KiB, $RUNS runs each, alternating"
    # Every run writes into a directory of its own and nothing is deleted
    # until the end: on ext4 without a journal, creating files just after
    # deleting thousands makes the inode allocator skip every recently freed
    # inode (bench/README.md), which swings times by 2x.
    for i in $(seq "$RUNS"); do
        cp -al "$W/src/small" "$W/ob/ss.$i"; mkremote "$W/sftp/fs.$i"; sync
        ferry_once ferry_sftp_small sftp "$W/ob/ss.$i" "$W/sftp/fs.$i"
        [[ -n $(ls -A "$W/ob/ss.$i") ]] || count_is "$W/sftp/fs.$i"
        mkremote "$W/sftp/os.$i"; sync
        timed sftp_put_small "${SFTP[@]}" <<<"put -r $W/src/small $W/sftp/os.$i"
        count_is "$W/sftp/os.$i"
        mkremote "$W/sftp/ls.$i"; sync
        timed lftp_sftp_small lftp -c "$LFTP_SFTP; mirror -R --parallel=$PARALLEL $W/src/small $W/sftp/ls.$i"
        count_is "$W/sftp/ls.$i"
    done
fi

if has ftp; then
    echo "== FTP ${SIZE_MB} MiB, $RUNS runs each, alternating"
    for i in $(seq "$RUNS"); do
        mkdir -p "$W/ob/fb.$i"; ln "$W/src/big/big.bin" "$W/ob/fb.$i/big.bin"; mkremote "$W/ftp/pub/fb.$i"; settle
        ferry_once ferry_ftp_big ftp "$W/ob/fb.$i" "$W/ftp/pub/fb.$i"
        same_big "$W/ftp/pub/fb.$i/big.bin"
        mkremote "$W/ftp/pub/cb.$i"; settle
        timed curl_put_big curl -sS -T "$W/src/big/big.bin" "ftp://127.0.0.1:$FPORT/pub/cb.$i/big.bin"
        same_big "$W/ftp/pub/cb.$i/big.bin"
        mkremote "$W/ftp/pub/lb.$i"; settle
        timed lftp_ftp_big lftp -c "$LFTP_FTP; mirror -R --parallel=$PARALLEL $W/src/big pub/lb.$i"
        same_big "$W/ftp/pub/lb.$i/big.bin"
    done

    echo "== FTP $SMALL x 4 KiB, $RUNS runs each, alternating"
    for i in $(seq "$RUNS"); do
        cp -al "$W/src/small" "$W/ob/fs.$i"; mkremote "$W/ftp/pub/fs.$i"; sync
        ferry_once ferry_ftp_small ftp "$W/ob/fs.$i" "$W/ftp/pub/fs.$i"
        [[ -n $(ls -A "$W/ob/fs.$i") ]] || count_is "$W/ftp/pub/fs.$i"
        mkremote "$W/ftp/pub/ls.$i"; sync
        timed lftp_ftp_small lftp -c "$LFTP_FTP; mirror -R --parallel=$PARALLEL $W/src/small pub/ls.$i"
        count_is "$W/ftp/pub/ls.$i"
    done
fi

# latency PROTOCOL PATH(event|rescan): one `ferry run`, one file at a time
latency() {
    local p=$1 path=$2 name="lat_$1_$2" ob="$W/ob/lat_$1_$2" stage="$W/ob/stage_$1_$2"
    local remote n mode rescan pmin pmax
    if [[ $p == sftp ]]; then remote="$W/sftp/$name"; else remote="$W/ftp/pub/$name"; fi
    if [[ $path == event ]]; then n=$LAT_FILES mode=rename rescan=60s pmin=0.2 pmax=0.2
    else n=$RESCAN_FILES mode=link rescan=2s pmin=0.2 pmax=2.2; fi
    mkdir -p "$ob" "$stage"; mkremote "$remote"
    config "$p" "$ob" "$remote" "$W/st/$name" "$rescan" > "$W/$name.toml"
    : > "$W/$name.ferry.log"
    "$FERRY" run -c "$W/$name.toml" 2>"$W/$name.ferry.log" &
    RUN_PID=$!
    for _ in $(seq 200); do grep -q "ferry started" "$W/$name.ferry.log" && break; sleep 0.05; done
    sleep 1 # the first poll (of an empty outbox) is over
    python3 - "$mode" "$stage" "$ob" "$remote" "$n" "$pmin" "$pmax" > "$W/$name.result" 2>"$W/$name.each" <<'PY'
import os, random, sys, time
mode, stage, outbox, server = sys.argv[1:5]
count, pmin, pmax = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
put = {"rename": os.rename, "link": os.link}[mode]
names = [f"lat{i:04d}.dat" for i in range(count)]
block = os.urandom(4096)
for n in names:
    with open(os.path.join(stage, n), "wb") as f:
        f.write(block)
os.sync()
lat = []
for n in names:
    target = os.path.join(server, n)
    t0 = time.monotonic()
    put(os.path.join(stage, n), os.path.join(outbox, n))
    while not os.path.exists(target):
        if time.monotonic() - t0 > 30:
            sys.exit(f"{n}: not on the server after 30 s")
        time.sleep(0.0005)
    lat.append((time.monotonic() - t0) * 1000)
    time.sleep(random.uniform(pmin, pmax))
print(" ".join(f"{x:.0f}" for x in lat), file=sys.stderr)
s = sorted(lat)
k = len(s)
med = s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2
p90 = s[min(k - 1, -(-9 * k // 10) - 1)]
print(f"{med:.0f} {p90:.0f} {s[-1]:.0f}")
PY
    kill -TERM "$RUN_PID"; wait "$RUN_PID" || true; RUN_PID=""
    printf '  %-18s %3d files: median %5s ms  p90 %5s ms  max %5s ms\n' "$name" "$n" $(cat "$W/$name.result")
}

if has latency; then
    echo "== latency under ferry run (rename -> final name on the server)"
    for p in sftp ftp; do
        latency "$p" event
        latency "$p" rescan
    done
fi

# ---- summary
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
med() { cut -d' ' -f1 "$W/$1.times" | median; }
rss() { cut -d' ' -f2 "$W/$1.times" | sort -n | tail -1 | awk '{printf "%.1f MiB", $1 / 1024}'; }
mbs() { awk -v s="$(med "$1")" -v m="$SIZE_MB" 'BEGIN {printf "%.0f MB/s", m * 1.048576 / s}'; }
fps() { awk -v s="$(med "$1")" -v n="$SMALL" 'BEGIN {printf "%.0f files/s", n / s}'; }
ratio() { awk -v r="$(med "$1")" -v f="$(med "$2")" 'BEGIN {printf "%.2fx", r / f}'; }
goal() { awk -v r="$(med "$1")" -v f="$(med "$2")" -v g="$3" 'BEGIN {print (r / f >= g ? "met" : "NOT met")}'; }
line() { # CASE FERRY REFERENCE RATE GOAL
    printf '| %s | %s s, %s, %s | %s %s s, %s | %s | %s |\n' "$1" "$(med "$2")" "$($4 "$2")" "$(rss "$2")" \
        "$3" "$(med "$3")" "$($4 "$3")" "$(ratio "$3" "$2")" "$5"
}
echo
echo "medians of $RUNS runs; ratio = reference time / ferry time (above 1: ferry faster)"
echo
echo "| case | ferry (seconds, rate, peak RSS) | reference | ratio | goal |"
echo "| --- | --- | --- | --- | --- |"
if has sftp; then
    line "SFTP $SIZE_MB MiB" ferry_sftp_big sftp_put_big mbs "1.3x: $(goal sftp_put_big ferry_sftp_big 1.3)"
    line "SFTP $SIZE_MB MiB" ferry_sftp_big lftp_sftp_big mbs "ahead: $(goal lftp_sftp_big ferry_sftp_big 1.0)"
    line "SFTP $SMALL x 4 KiB" ferry_sftp_small sftp_put_small fps "2x: $(goal sftp_put_small ferry_sftp_small 2.0)"
    line "SFTP $SMALL x 4 KiB" ferry_sftp_small lftp_sftp_small fps "ahead: $(goal lftp_sftp_small ferry_sftp_small 1.0)"
fi
if has ftp; then
    line "FTP $SIZE_MB MiB" ferry_ftp_big curl_put_big mbs ""
    line "FTP $SIZE_MB MiB" ferry_ftp_big lftp_ftp_big mbs "ahead: $(goal lftp_ftp_big ferry_ftp_big 1.0)"
    line "FTP $SMALL x 4 KiB" ferry_ftp_small lftp_ftp_small fps "ahead: $(goal lftp_ftp_small ferry_ftp_small 1.0)"
fi
if has latency; then
    echo
    echo "| latency, \`ferry run\` | files | median | p90 | max |"
    echo "| --- | --- | --- | --- | --- |"
    for p in sftp ftp; do
        read -r m9 p9 x9 < "$W/lat_${p}_event.result"
        echo "| ${p^^}, event path (rename into the outbox, rescan = \"60s\") | $LAT_FILES | $m9 ms | $p9 ms | $x9 ms |"
        read -r m9 p9 x9 < "$W/lat_${p}_rescan.result"
        echo "| ${p^^}, rescan path (hard link, no event, rescan = \"2s\") | $RESCAN_FILES | $m9 ms | $p9 ms | $x9 ms |"
    done
fi
[[ -f $W/warnings ]] && { echo; cat "$W/warnings"; }
echo
echo "every run (seconds):"
for f in "$W"/*.times; do printf '  %-18s %s\n' "$(basename "$f" .times)" "$(cut -d' ' -f1 "$f" | tr '\n' ' ')"; done

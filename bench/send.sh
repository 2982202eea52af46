#!/usr/bin/env bash
# Send benchmark: ferry's `[[send]]` rules (an outbox on this machine
# uploaded to a server) against the usual upload clients, side by side in
# one run, against one OpenSSH sshd and one vsftpd on 127.0.0.1 (started
# here, stopped at exit).
#
#   bench/send.sh                          # 1 GiB, 10,000 x 4 KiB, 3 runs each
#   SIZE_MB=512 RUNS=3 SMALL=3000 bench/send.sh
#
# Throughput (a warm-up run of ferry, then RUNS rounds, each tool in
# turn, every round starting one place later, medians):
#   SFTP  1 GiB:           `ferry once` vs `sftp -b` put, `lftp mirror -R --parallel=8`
#   SFTP  10,000 x 4 KiB:  `ferry once` vs `sftp -b` put -r, `lftp mirror -R --parallel=8`
#   FTP   1 GiB:           `ferry once` vs `curl -T`, `lftp mirror -R --parallel=8`
#   FTP   10,000 x 4 KiB:  `ferry once` vs `lftp mirror -R --parallel=8`
# ferry's rule: stable_for = "0s", after = { delete = true } (the outbox
# holds hard links to the source data, so the delete costs an unlink);
# every run writes into a server directory of its own. Over SFTP ferry
# has the server fsync each upload before its rename (the server's
# `fsync`, default true), and over both it records the SHA-256 of every
# file sent (the rule's `digest`, default true); `sftp`, curl and lftp
# do neither, so ferry also runs bare, with `fsync = false` and `digest =
# false` (BARE), for a like for like row.
#
# Latency under `ferry run` (a 4 KiB file at a time, the server directory
# polled every 0.5 ms on this machine):
#   event path:  rescan = "60s", LAT_FILES files renamed into the outbox
#                one at a time, 200 ms apart: the watcher sends each at once;
#   rescan path: rescan = "2s", the outbox an sshfs mount of a directory
#                on this machine (through the bench's sshd), RESCAN_FILES
#                files renamed into that directory, 0.2-2.2 s apart at
#                random: inotify sees nothing of what happens on the far
#                side of a network file system (as with NFS), so only the
#                rescan finds them.
#
# Prints every run, the medians, MB/s, files/s, ratios (reference time /
# ferry time: above 1 means ferry is faster: of the medians, and the
# median of each round's own ratio), ferry's peak RSS (GNU time)
# and the latency median, p90 and maximum.
# Needs root (sshd and a test user), openssh-server, openssh-client,
# vsftpd, curl, lftp, python3, GNU time, sshfs (the latency's rescan path).
#
# Knobs: SIZE_MB (1024), SMALL (10000), RUNS (3), PARALLEL (lftp, 8),
# SESSIONS (ferry's max_sessions and max_transfers, 8), LAT_FILES (50),
# RESCAN_FILES (20), PARTS ("sftp ftp latency": which parts to run),
# FERRY_B (a second ferry binary: each run of ferry is followed by one of
# it, and the table compares the two: an A/B of two builds in
# the same minutes, which this machine's swings make the only fair one),
# BARE ("1": ferry runs once more per round with the rule's `digest =
# false` and, over SFTP, the server's `fsync = false`: neither a digest
# nor a server fsync, as the reference clients; BARE= leaves them out),
# LFTP_TMP ("1": lftp also runs the small files with `set
# xfer:use-temp-file yes`, a temporary name then a rename per file, as
# ferry; LFTP_TMP= leaves it out), SFTP_F ("1": `sftp` also runs with
# `put -f` / `put -rf`, which has the server fsync each file
# (`fsync@openssh.com`) as ferry's default does, for a like for like
# row; SFTP_F= leaves it out), KEEP=1 (keep the work directory).
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
SMALL=${SMALL:-10000}
RUNS=${RUNS:-3}
PARALLEL=${PARALLEL:-8}
SESSIONS=${SESSIONS:-8}
LAT_FILES=${LAT_FILES:-50}
RESCAN_FILES=${RESCAN_FILES:-20}
PARTS=${PARTS:-sftp ftp latency}
BARE=${BARE-1}
LFTP_TMP=${LFTP_TMP-1}
SFTP_F=${SFTP_F-1}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need_root "starts sshd and vsftpd, creates user $BENCH_USER"
bench_need /usr/sbin/sshd /usr/bin/sftp /usr/bin/ssh /usr/bin/ssh-keygen /usr/sbin/vsftpd /usr/bin/curl /usr/bin/lftp /usr/bin/python3 \
    /usr/bin/sshfs /usr/bin/fusermount3 -- openssh-server openssh-client vsftpd curl lftp python3 time sshfs fuse3
has() { [[ " $PARTS " == *" $1 "* ]]; }
bench_build

bench_workdir send
RUN_PID=""
MOUNTS=()
bench_cleanup_hook() {
    [[ -z $RUN_PID ]] || kill "$RUN_PID" 2>/dev/null || true
    local m
    for m in "${MOUNTS[@]}"; do fusermount3 -u "$m" 2>/dev/null || true; done
}

# --- sshd, with a test user that owns the SFTP side ($W/sftp)
bench_sshd
bench_own "$W/sftp"
# --- vsftpd: ferry names real paths ($FTP_DIR/...) while curl and lftp
# name paths relative to anon_root ($FTP_REL/...). vsftpd sometimes closes
# a control connection in answer to PASV in the second 10,000-file run,
# with 1,000 passive ports or 10,000 alike (bench/README.md, "Send").
bench_vsftpd send
rclone_remotes
rclone_note

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
user = "$BENCH_USER"
private_key = "$SSH_KEY"
known_hosts = "$KNOWN_HOSTS"
max_sessions = $SESSIONS
${SERVER_EXTRA:-}
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
${RULE_EXTRA:-}
CONF
}

SFTP=(sftp -q -b - -i "$SSH_KEY" -P "$SPORT" -o UserKnownHostsFile="$KNOWN_HOSTS" -o BatchMode=yes "$BENCH_USER@127.0.0.1")
LFTP_SFTP="set cmd:fail-exit yes; set sftp:connect-program 'ssh -a -x -i $SSH_KEY -o UserKnownHostsFile=$KNOWN_HOSTS -o BatchMode=yes'; open -u $BENCH_USER, -p $SPORT sftp://127.0.0.1"
LFTP_FTP="set cmd:fail-exit yes; open -p $FPORT ftp://127.0.0.1"

# SFTP-side directories belong to the test user.
mkremote() { mkdir -p "$1"; [[ $1 == "$W/sftp/"* ]] && chown "$BENCH_USER" "$1"; return 0; }
same_big() { cmp -s "$W/src/big/big.bin" "$1" || { echo "$1 differs from the source" >&2; exit 1; }; rm -f "$1"; }
count_is() { # DIR: every small file there (at any depth), nothing else
    local n; n=$(find "$1" -type f | wc -l)
    [[ $n -eq $SMALL ]] || { echo "$1 holds $n files, not $SMALL" >&2; exit 1; }
}
ferry_once() { # CASE PROTOCOL OUTBOX REMOTE
    config "$2" "$3" "$4" "$W/st/$1.$i" 60s > "$W/$1.$i.toml"
    timed "$1" "${BIN:-$FERRY}" once -c "$W/$1.$i.toml"
    # A file whose attempt failed is left for a later pass (`ferry once`
    # still exits 0): the run counts, with a warning and the cause.
    local left; left=$(ls -A "$3" | wc -l)
    if (( left > 0 )); then
        echo "  WARNING: $1 run $i left $left files in the outbox for a later pass:" >&2
        grep -h "WARN\|ERROR" "$W/last.log" | cut -c1-300 | head -5 >&2
        echo "$1 run $i: $left files left for a later pass" >> "$W/warnings"
    fi
}

# rotated I STEP...: runs the steps from the I-th on, wrapping round, so
# that every tool takes every place in turn. The same binary ran up to
# 1.5x slower in the first place of a round than in the second on this
# machine (bench/README.md, "Send, 2026-12-03 (evening)").
rotated() {
    local i=$1 k idx
    shift
    for ((k = 0; k < $#; k++)); do
        idx=$(((i - 1 + k) % $# + 1))
        "${!idx}"
    done
}
# steps BASE OTHER...: the steps of a round: BASE (ferry's step) and the
# others, then BASE_bare (ferry without digest or server fsync), BASE_b
# (FERRY_B) and rclone's step where asked for.
steps() {
    local base=$1 s
    for s in "$@"; do echo "$s"; done
    [[ -z $BARE ]] || echo "${base}_bare"
    [[ -z ${FERRY_B:-} ]] || echo "${base}_b"
    [[ -z $HAVE_RCLONE ]] || echo "${base%_ferry}_rclone"
}

# One step each: a fresh outbox (hard links) or source, a server directory
# of its own, the run, its check. The 1 GiB steps settle first (sync, 2 s).
ferry_big() { # CASE PROTOCOL TAG REMOTE_ROOT
    mkdir -p "$W/ob/$3.$i"; ln "$W/src/big/big.bin" "$W/ob/$3.$i/big.bin"; mkremote "$4/$3.$i"; settle
    ferry_once "$1" "$2" "$W/ob/$3.$i" "$4/$3.$i"
    same_big "$4/$3.$i/big.bin"
}
ferry_small() { # CASE PROTOCOL TAG REMOTE_ROOT
    cp -al "$W/src/small" "$W/ob/$3.$i"; mkremote "$4/$3.$i"; sync
    ferry_once "$1" "$2" "$W/ob/$3.$i" "$4/$3.$i"
    [[ -n $(ls -A "$W/ob/$3.$i") ]] || count_is "$4/$3.$i"
}
ref_big() { # CASE REMOTE CMD...: a reference tool's run into REMOTE
    local case=$1 dir=$2
    shift 2
    mkremote "$dir"; settle
    timed "$case" "$@"
    same_big "$dir/big.bin"
}
# Every small-file run writes into a directory of its own and nothing is
# deleted until the end: on ext4 without a journal, creating files just
# after deleting thousands makes the inode allocator skip every recently
# freed inode (bench/README.md), which swings times by 2x.
ref_small() { # CASE REMOTE CMD...
    local case=$1 dir=$2
    shift 2
    mkremote "$dir"; sync
    timed "$case" "$@"
    count_is "$dir"
}
sftp_big_ferry() { ferry_big ferry_sftp_big sftp sb "$W/sftp"; }
sftp_big_ferry_bare() { SERVER_EXTRA="fsync = false" RULE_EXTRA="digest = false" ferry_big ferry_bare_sftp_big sftp sbn "$W/sftp"; }
sftp_big_ferry_b() { BIN=$FERRY_B ferry_big ferry_b_sftp_big sftp sbb "$W/sftp"; }
sftp_big_sftp() { ref_big sftp_put_big "$W/sftp/ob.$i" "${SFTP[@]}" <<<"put $W/src/big/big.bin $W/sftp/ob.$i/big.bin"; }
sftp_big_lftp() { ref_big lftp_sftp_big "$W/sftp/lb.$i" lftp -c "$LFTP_SFTP; mirror -R --parallel=$PARALLEL $W/src/big $W/sftp/lb.$i"; }
sftp_big_rclone() { ref_big rclone_sftp_big "$W/sftp/rb.$i" rclone copy "$W/src/big" "$RCLONE_SFTP$W/sftp/rb.$i"; }
sftp_small_ferry() { ferry_small ferry_sftp_small sftp ss "$W/sftp"; }
sftp_small_ferry_bare() { SERVER_EXTRA="fsync = false" RULE_EXTRA="digest = false" ferry_small ferry_bare_sftp_small sftp ssn "$W/sftp"; }
sftp_small_ferry_b() { BIN=$FERRY_B ferry_small ferry_b_sftp_small sftp ssb "$W/sftp"; }
# `sftp` with `-f`: the server fsyncs each file before the next, as
# ferry's server `fsync` (default true) has it do before each rename.
sftp_big_sftp_f() { ref_big sftp_put_f_big "$W/sftp/of.$i" "${SFTP[@]}" <<<"put -f $W/src/big/big.bin $W/sftp/of.$i/big.bin"; }
sftp_small_sftp_f() { ref_small sftp_put_f_small "$W/sftp/ofs.$i" "${SFTP[@]}" <<<"put -rf $W/src/small $W/sftp/ofs.$i"; }
sftp_small_sftp() { ref_small sftp_put_small "$W/sftp/os.$i" "${SFTP[@]}" <<<"put -r $W/src/small $W/sftp/os.$i"; }
sftp_small_lftp() { ref_small lftp_sftp_small "$W/sftp/ls.$i" lftp -c "$LFTP_SFTP; mirror -R --parallel=$PARALLEL $W/src/small $W/sftp/ls.$i"; }
# lftp with `xfer:use-temp-file`: each file under a temporary name (`.in.NAME`)
# then renamed, as ferry sends: the reference for what the renames cost.
sftp_small_lftp_tmp() { ref_small lftp_tmp_sftp_small "$W/sftp/lt.$i" lftp -c "set xfer:use-temp-file yes; $LFTP_SFTP; mirror -R --parallel=$PARALLEL $W/src/small $W/sftp/lt.$i"; }
sftp_small_rclone() { ref_small rclone_sftp_small "$W/sftp/rs.$i" rclone copy --transfers="$PARALLEL" "$W/src/small" "$RCLONE_SFTP$W/sftp/rs.$i"; }
ftp_big_ferry() { ferry_big ferry_ftp_big ftp fb "$FTP_DIR"; }
ftp_big_ferry_bare() { RULE_EXTRA="digest = false" ferry_big ferry_bare_ftp_big ftp fbn "$FTP_DIR"; }
ftp_big_ferry_b() { BIN=$FERRY_B ferry_big ferry_b_ftp_big ftp fbb "$FTP_DIR"; }
ftp_big_curl() { ref_big curl_put_big "$FTP_DIR/cb.$i" curl -sS -T "$W/src/big/big.bin" "ftp://127.0.0.1:$FPORT/$FTP_REL/cb.$i/big.bin"; }
ftp_big_lftp() { ref_big lftp_ftp_big "$FTP_DIR/lb.$i" lftp -c "$LFTP_FTP; mirror -R --parallel=$PARALLEL $W/src/big $FTP_REL/lb.$i"; }
ftp_big_rclone() { ref_big rclone_ftp_big "$FTP_DIR/rb.$i" rclone copy "$W/src/big" "$RCLONE_FTP$FTP_REL/rb.$i"; }
ftp_small_ferry() { ferry_small ferry_ftp_small ftp fs "$FTP_DIR"; }
ftp_small_ferry_bare() { RULE_EXTRA="digest = false" ferry_small ferry_bare_ftp_small ftp fsn "$FTP_DIR"; }
ftp_small_ferry_b() { BIN=$FERRY_B ferry_small ferry_b_ftp_small ftp fsb "$FTP_DIR"; }
ftp_small_lftp() { ref_small lftp_ftp_small "$FTP_DIR/ls.$i" lftp -c "$LFTP_FTP; mirror -R --parallel=$PARALLEL $W/src/small $FTP_REL/ls.$i"; }
ftp_small_lftp_tmp() { ref_small lftp_tmp_ftp_small "$FTP_DIR/lt.$i" lftp -c "set xfer:use-temp-file yes; $LFTP_FTP; mirror -R --parallel=$PARALLEL $W/src/small $FTP_REL/lt.$i"; }
ftp_small_rclone() { ref_small rclone_ftp_small "$FTP_DIR/rs.$i" rclone copy --transfers="$PARALLEL" "$W/src/small" "$RCLONE_FTP$FTP_REL/rs.$i"; }

# round TITLE BASE OTHER...: a warm-up run of BASE (printed, not counted),
# then RUNS rounds of the steps, each rotated. The first run of each case
# was the slowest of its tool's runs in every sitting of 2026-12-03
# (night), up to 2.6x its tool's median, and it was always ferry's.
round() {
    local title=$1 s all=()
    shift
    while read -r s; do all+=("$s"); done < <(steps "$@")
    echo "== $title, $RUNS runs each, in turn (each round starts one place later)"
    i=0 UNCOUNTED=1 "${all[0]}"
    for i in $(seq "$RUNS"); do rotated "$i" "${all[@]}"; done
}

if has sftp; then
    round "SFTP ${SIZE_MB} MiB" sftp_big_ferry sftp_big_sftp sftp_big_lftp $([[ -z $SFTP_F ]] || echo sftp_big_sftp_f)
    round "SFTP $SMALL x 4 KiB" sftp_small_ferry sftp_small_sftp sftp_small_lftp $([[ -z $LFTP_TMP ]] || echo sftp_small_lftp_tmp) \
        $([[ -z $SFTP_F ]] || echo sftp_small_sftp_f)
fi
if has ftp; then
    round "FTP ${SIZE_MB} MiB" ftp_big_ferry ftp_big_curl ftp_big_lftp
    round "FTP $SMALL x 4 KiB" ftp_small_ferry ftp_small_lftp $([[ -z $LFTP_TMP ]] || echo ftp_small_lftp_tmp)
fi

# latency PROTOCOL PATH(event|rescan): one `ferry run`, one file at a time
latency() {
    local p=$1 path=$2 name="lat_$1_$2" ob="$W/ob/lat_$1_$2" stage="$W/ob/stage_$1_$2"
    local remote n rescan pmin pmax arrive=$ob
    if [[ $p == sftp ]]; then remote="$W/sftp/$name"; else remote="$FTP_DIR/$name"; fi
    mkdir -p "$ob" "$stage"; mkremote "$remote"
    if [[ $path == event ]]; then n=$LAT_FILES rescan=60s pmin=0.2 pmax=0.2
    else
        n=$RESCAN_FILES rescan=2s pmin=0.2 pmax=2.2
        # Files arrive on the far side of the mount, which no event reports.
        arrive="$W/sftp/far_$name"
        mkremote "$arrive"
        sshfs -p "$SPORT" -o "IdentityFile=$SSH_KEY,UserKnownHostsFile=$KNOWN_HOSTS,BatchMode=yes" \
            -o dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0 \
            "$BENCH_USER@127.0.0.1:$arrive" "$ob"
        MOUNTS+=("$ob")
    fi
    config "$p" "$ob" "$remote" "$W/st/$name" "$rescan" > "$W/$name.toml"
    : > "$W/$name.ferry.log"
    "$FERRY" run -c "$W/$name.toml" 2>"$W/$name.ferry.log" &
    RUN_PID=$!
    for _ in $(seq 200); do grep -q "ferry started" "$W/$name.ferry.log" && break; sleep 0.05; done
    sleep 1 # the rule's task (and its watch) is running
    # The stage is on the arrival directory's file system: a rename.
    [[ $path == event ]] || stage="$W/sftp/stage_$name"
    mkdir -p "$stage"
    python3 - "$stage" "$arrive" "$remote" "$n" "$pmin" "$pmax" > "$W/$name.result" 2>"$W/$name.each" <<'PY'
import os, random, sys, time
stage, outbox, server = sys.argv[1:4]
count, pmin, pmax = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
put = os.rename
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
    if [[ $path == rescan ]]; then fusermount3 -u "$ob"; unset 'MOUNTS[-1]'; fi
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
big_rate() { mbs "$1" "$SIZE_MB"; }
small_rate() { fps "$1" "$SMALL"; }
line() { # CASE FERRY REFERENCE RATE GOAL
    printf '| %s | %s s, %s, %s | %s %s s, %s | %s | %s | %s | %s |\n' "$1" "$(med "$2")" "$($4 "$2")" "$(rss "$2")" \
        "$3" "$(med "$3")" "$($4 "$3")" "$(ratio "$3" "$2")" "$(paired "$3" "$2")" "$(wins "$3" "$2")" "$5"
}
echo
echo "medians of $RUNS runs; ratio = reference time / ferry time (above 1: ferry faster);"
echo "paired = the median of each round's own ratio (both runs minutes apart);"
echo "rounds = in how many rounds ferry's run was the faster of the two"
echo
echo "| case | ferry (seconds, rate, peak RSS) | reference | ratio | paired | rounds | goal |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
if has sftp; then
    line "SFTP $SIZE_MB MiB" ferry_sftp_big sftp_put_big big_rate "1.3x: $(goal sftp_put_big ferry_sftp_big 1.3)"
    line "SFTP $SIZE_MB MiB" ferry_sftp_big lftp_sftp_big big_rate "ahead: $(goal lftp_sftp_big ferry_sftp_big 1.0)"
    line "SFTP $SMALL x 4 KiB" ferry_sftp_small sftp_put_small small_rate "2x: $(goal sftp_put_small ferry_sftp_small 2.0)"
    line "SFTP $SMALL x 4 KiB" ferry_sftp_small lftp_sftp_small small_rate "ahead: $(goal lftp_sftp_small ferry_sftp_small 1.0)"
    [[ -z $LFTP_TMP ]] || line "SFTP $SMALL x 4 KiB, lftp through temporary names" ferry_sftp_small lftp_tmp_sftp_small small_rate "like for like"
    if [[ -n $SFTP_F ]]; then
        line "SFTP $SIZE_MB MiB, \`sftp put -f\` (the server fsyncs, as ferry's default)" ferry_sftp_big sftp_put_f_big big_rate "like for like"
        line "SFTP $SMALL x 4 KiB, \`sftp put -rf\` (the server fsyncs each file, as ferry's default)" ferry_sftp_small sftp_put_f_small small_rate "like for like"
    fi
    if [[ -n $HAVE_RCLONE ]]; then
        line "SFTP $SIZE_MB MiB" ferry_sftp_big rclone_sftp_big big_rate ""
        line "SFTP $SMALL x 4 KiB" ferry_sftp_small rclone_sftp_small small_rate ""
    fi
    if [[ -n $BARE ]]; then
        line "SFTP $SIZE_MB MiB, bare (no digest, no server fsync, as the references)" ferry_bare_sftp_big sftp_put_big big_rate "like for like"
        line "SFTP $SIZE_MB MiB, bare" ferry_bare_sftp_big lftp_sftp_big big_rate "like for like"
        line "SFTP $SMALL x 4 KiB, bare (no digest, no server fsync, as the references)" ferry_bare_sftp_small sftp_put_small small_rate "like for like"
        line "SFTP $SMALL x 4 KiB, bare" ferry_bare_sftp_small lftp_sftp_small small_rate "like for like"
    fi
    if [[ -n ${FERRY_B:-} ]]; then
        line "SFTP $SIZE_MB MiB, FERRY_B against FERRY" ferry_b_sftp_big ferry_sftp_big big_rate "A/B"
        line "SFTP $SMALL x 4 KiB, FERRY_B against FERRY" ferry_b_sftp_small ferry_sftp_small small_rate "A/B"
    fi
    result "Send SFTP $SIZE_MB MiB" ferry_sftp_big sftp sftp_put_big 1.3
    result "Send SFTP $SIZE_MB MiB" ferry_sftp_big lftp lftp_sftp_big 1.0
    result "Send SFTP $SIZE_MB MiB" ferry_sftp_big rclone rclone_sftp_big
    result "Send SFTP $SMALL x 4 KiB" ferry_sftp_small sftp sftp_put_small 2.0
    result "Send SFTP $SMALL x 4 KiB" ferry_sftp_small lftp lftp_sftp_small 1.0
    result "Send SFTP $SMALL x 4 KiB" ferry_sftp_small rclone rclone_sftp_small
fi
if has ftp; then
    line "FTP $SIZE_MB MiB" ferry_ftp_big curl_put_big big_rate ""
    line "FTP $SIZE_MB MiB" ferry_ftp_big lftp_ftp_big big_rate "ahead: $(goal lftp_ftp_big ferry_ftp_big 1.0)"
    line "FTP $SMALL x 4 KiB" ferry_ftp_small lftp_ftp_small small_rate "ahead: $(goal lftp_ftp_small ferry_ftp_small 1.0)"
    [[ -z $LFTP_TMP ]] || line "FTP $SMALL x 4 KiB, lftp through temporary names" ferry_ftp_small lftp_tmp_ftp_small small_rate "like for like"
    if [[ -n $BARE ]]; then
        line "FTP $SIZE_MB MiB, bare (no digest, as the references)" ferry_bare_ftp_big lftp_ftp_big big_rate "like for like"
        line "FTP $SMALL x 4 KiB, bare (no digest, as the references)" ferry_bare_ftp_small lftp_ftp_small small_rate "like for like"
    fi
    if [[ -n $HAVE_RCLONE ]]; then
        line "FTP $SIZE_MB MiB" ferry_ftp_big rclone_ftp_big big_rate ""
        line "FTP $SMALL x 4 KiB" ferry_ftp_small rclone_ftp_small small_rate ""
    fi
    if [[ -n ${FERRY_B:-} ]]; then
        line "FTP $SIZE_MB MiB, FERRY_B against FERRY" ferry_b_ftp_big ferry_ftp_big big_rate "A/B"
        line "FTP $SMALL x 4 KiB, FERRY_B against FERRY" ferry_b_ftp_small ferry_ftp_small small_rate "A/B"
    fi
    result "Send FTP $SIZE_MB MiB" ferry_ftp_big curl curl_put_big
    result "Send FTP $SIZE_MB MiB" ferry_ftp_big lftp lftp_ftp_big 1.0
    result "Send FTP $SIZE_MB MiB" ferry_ftp_big rclone rclone_ftp_big
    result "Send FTP $SMALL x 4 KiB" ferry_ftp_small lftp lftp_ftp_small 1.0
    result "Send FTP $SMALL x 4 KiB" ferry_ftp_small rclone rclone_ftp_small
fi
if has latency; then
    echo
    echo "| latency, \`ferry run\` | files | median | p90 | max |"
    echo "| --- | --- | --- | --- | --- |"
    for p in sftp ftp; do
        read -r m9 p9 x9 < "$W/lat_${p}_event.result"
        echo "| ${p^^}, event path (rename into the outbox, rescan = \"60s\") | $LAT_FILES | $m9 ms | $p9 ms | $x9 ms |"
        read -r m9 p9 x9 < "$W/lat_${p}_rescan.result"
        echo "| ${p^^}, rescan path (outbox on sshfs: no events, rescan = \"2s\") | $RESCAN_FILES | $m9 ms | $p9 ms | $x9 ms |"
        result_value "Send latency ${p^^}, event path (median of $LAT_FILES)" "$(awk -v m="$(cut -d' ' -f1 "$W/lat_${p}_event.result")" 'BEGIN {printf "%.3f", m / 1000}')"
        result_value "Send latency ${p^^}, rescan path (median of $RESCAN_FILES)" "$(awk -v m="$(cut -d' ' -f1 "$W/lat_${p}_rescan.result")" 'BEGIN {printf "%.3f", m / 1000}')"
    done
fi
[[ -f $W/warnings ]] && { echo; cat "$W/warnings"; }
echo
echo "every run (seconds):"
for f in "$W"/*.times; do [[ -e $f ]] || continue; printf '  %-18s %s\n' "$(basename "$f" .times)" "$(cut -d' ' -f1 "$f" | tr '\n' ' ')"; done

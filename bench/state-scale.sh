#!/usr/bin/env bash
# Benchmark: what a steady poll costs when the state database holds years
# of history. A local rule over ENTRIES files whose paths already have
# VERSIONS - 1 older versions each, all `done` (ENTRIES x VERSIONS done rows
# after the first pass: 1,000,000 by default), then the unchanged directory
# polled by `ferry once`, locally and over SFTP (a second rule with the
# same rows), against `find DIR -maxdepth 1 -printf '%s %T@\n'` and
# OpenSSH's `sftp` running `ls -l` on the same directory.
#
#   bench/state-scale.sh                       # 100,000 entries, 1,000,000 rows
#   ENTRIES=20000 VERSIONS=5 bench/state-scale.sh   # quicker
#   NO_SFTP=1 bench/state-scale.sh             # local only (no root, no sshd)
#
# Also: the first pass's peak RSS (ENTRIES new files), the steady poll's
# peak RSS, and a `ferry run` daemon's peak RSS after a few polls with
# every row tracked. The in-daemon time of a poll (rules.last_duration_ms)
# is printed beside the whole process's wall time. Then a file added
# (one chunk of the listing compared, the file delivered) and removed
# again (the rows streamed past to find what is gone), RUNS times each.
# Needs GNU time, python3, sqlite3; for SFTP root, openssh-server and
# openssh-client.
set -euo pipefail

ENTRIES=${ENTRIES:-100000}
VERSIONS=${VERSIONS:-10}
SIZE=${SIZE:-100}
RUNS=${RUNS:-5}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need /usr/bin/python3 /usr/bin/sqlite3 -- python3 sqlite3 time
if [[ -z ${NO_SFTP:-} ]]; then
    bench_need_root "starts sshd, creates user $BENCH_USER"
    bench_need /usr/sbin/sshd /usr/bin/sftp /usr/bin/ssh-keygen -- openssh-server openssh-client
fi
bench_build
bench_workdir state-scale
SRC=$W/src
DB=$W/state/ferry.db
ROWS=$((ENTRIES * VERSIONS))

echo "== creating $ENTRIES files of $SIZE bytes in $SRC"
python3 - "$SRC" "$ENTRIES" "$SIZE" <<'PY'
import os, sys
src, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(src)
data = b"x" * size
for i in range(n):
    fd = os.open(os.path.join(src, "f%07d.dat" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
PY
chmod 755 "$W" "$SRC"

daemon_table() {
    cat <<EOF
[daemon]
state = "$DB"
EOF
}
local_rule() {
    cat <<EOF
[[watch]]
name = "local"
remote_dir = "$SRC"
local_dir = "$W/out"
stable_for = "0s"
interval = "${1:-30s}"
EOF
}
daemon_table >"$W/local.toml"
local_rule >>"$W/local.toml"

export RUST_LOG=${RUST_LOG:-warn}

# The history first, so that the listed versions are the newest rows:
# VERSIONS - 1 older versions of every path, done yesterday (inside
# daemon.retention, so nothing is pruned: every row stays tracked).
echo "== seeding $((ENTRIES * (VERSIONS - 1))) done rows of older versions"
"$FERRY" status -c "$W/local.toml" >/dev/null
seed() { # $1 = rule, $2 = older versions per path
    sqlite3 "$DB" <<SQL
PRAGMA synchronous = OFF;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $ENTRIES * $2 - 1)
INSERT INTO files (rule, path, size, mtime, state, first_seen_ms, stable_since_ms, attempts,
                   bytes_done, local_path, delivered_at_ms, done_at_ms, updated_at_ms)
SELECT '$1', printf('f%07d.dat', i % $ENTRIES), $SIZE, 1000000 + i / $ENTRIES, 'done',
       t, t, 1, $SIZE, '/old/' || i, t, t, t
FROM n, (SELECT (strftime('%s', 'now') - 86400) * 1000 AS t);
SQL
}
t0=$EPOCHREALTIME
seed local $((VERSIONS - 1))
awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "  seeded in %.1f s\n", b - a }'

echo "== first pass: ferry once delivers $ENTRIES new files"
sync
timed first "$FERRY" once -c "$W/local.toml"
got=$(find "$W/out" -type f | wc -l)
((got == ENTRIES)) || bench_die "$W/out holds $got files after the first pass, expected $ENTRIES"
done_rows=$(sqlite3 "$DB" "SELECT count(*) FROM files WHERE rule = 'local' AND state = 'done'")
echo "  $done_rows done rows of the local rule"

poll_ms() { sqlite3 "$DB" "SELECT last_duration_ms FROM rules WHERE name = '$1'"; }

echo "== unchanged local directory, $RUNS runs each: ferry once, find"
: >"$W/poll_ms.local"
for ((i = 0; i < RUNS; i++)); do
    timed local "$FERRY" once -c "$W/local.toml"
    poll_ms local >>"$W/poll_ms.local"
    t0=$EPOCHREALTIME
    find "$SRC" -maxdepth 1 -printf '%s %T@\n' >/dev/null
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f 0\n", b - a }' >>"$W/find.times"
done
got=$(find "$W/out" -type f | wc -l)
((got == ENTRIES)) || bench_die "an unchanged poll delivered again: $got files in $W/out"

echo "== one file added, then removed again, $RUNS runs each: ferry once"
for ((i = 0; i < RUNS; i++)); do
    printf 'new %d\n' "$i" >"$SRC/zz-new-$i.dat"
    timed local-new "$FERRY" once -c "$W/local.toml"
    rm "$SRC/zz-new-$i.dat"
    timed local-gone "$FERRY" once -c "$W/local.toml"
done
got=$(find "$W/out" -type f | wc -l)
((got == ENTRIES + RUNS)) || bench_die "$W/out holds $got files, expected $((ENTRIES + RUNS))"

echo "== a daemon tracking $done_rows rows: ferry run, 3 polls 2 s apart"
daemon_table >"$W/run.toml"
local_rule 2s >>"$W/run.toml"
"$FERRY" run -c "$W/run.toml" 2>"$W/run.log" &
RUN_PID=$!
sleep 7
RUN_HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$RUN_PID/status")
kill -TERM "$RUN_PID"
wait "$RUN_PID" || true
echo "  ferry run peak RSS: $RUN_HWM KiB"

if [[ -z ${NO_SFTP:-} ]]; then
    bench_sshd
    # The same rows for the SFTP rule: it tracks the same directory.
    sqlite3 "$DB" "PRAGMA synchronous = OFF;
        INSERT INTO files (rule, path, size, mtime, state, first_seen_ms, stable_since_ms, attempts,
                           bytes_done, local_path, delivered_at_ms, done_at_ms, updated_at_ms)
        SELECT 'sftp', path, size, mtime, state, first_seen_ms, stable_since_ms, attempts,
               bytes_done, local_path, delivered_at_ms, done_at_ms, updated_at_ms
        FROM files WHERE rule = 'local' ORDER BY id"
    {
        daemon_table
        cat <<EOF
[servers.s]
protocol = "sftp"
host = "127.0.0.1"
port = $SPORT
user = "$BENCH_USER"
private_key = "$SSH_KEY"
known_hosts = "$KNOWN_HOSTS"

[[watch]]
name = "sftp"
server = "s"
remote_dir = "$SRC"
local_dir = "$W/out-sftp"
stable_for = "0s"
EOF
    } >"$W/sftp.toml"
    SFTP=(sftp -q -b - -i "$SSH_KEY" -P "$SPORT" -o UserKnownHostsFile="$KNOWN_HOSTS" -o BatchMode=yes "$BENCH_USER@127.0.0.1")
    echo "== unchanged directory over SFTP, $RUNS runs each: ferry once, sftp ls -l"
    timed sftp-record "$FERRY" once -c "$W/sftp.toml"
    : >"$W/poll_ms.sftp"
    for ((i = 0; i < RUNS; i++)); do
        timed sftp "$FERRY" once -c "$W/sftp.toml"
        poll_ms sftp >>"$W/poll_ms.sftp"
        t0=$EPOCHREALTIME
        echo "ls -l $SRC" | "${SFTP[@]}" >/dev/null
        awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f 0\n", b - a }' >>"$W/sftp-ls.times"
    done
    got=0
    [[ ! -d $W/out-sftp ]] || got=$(find "$W/out-sftp" -type f | wc -l)
    ((got == 0)) || bench_die "an unchanged SFTP poll delivered $got files"
fi

echo
echo "ferry once, $ENTRIES entries, $done_rows done rows of the rule ($ROWS in all per rule)"
printf '  %-42s %8.2f s  %8s\n' "first pass (delivers $ENTRIES)" "$(med first)" "$(rss first)"
printf '  %-42s %8.3f s  %8s  (in-daemon poll %s ms)\n' "unchanged local poll" "$(med local)" "$(rss local)" "$(median <"$W/poll_ms.local")"
printf '  %-42s %8.3f s\n' "find -maxdepth 1 -printf '%s %T@'" "$(med find)"
printf '  %-42s %8s   (goal: at most 1.5x)\n' "ratio ferry / find" "$(ratio local find)"
printf '  %-42s %8.3f s  %8s\n' "poll with one file added (and delivered)" "$(med local-new)" "$(rss local-new)"
printf '  %-42s %8.3f s  %8s\n' "poll with that file gone again" "$(med local-gone)" "$(rss local-gone)"
printf '  %-42s %8.1f MiB\n' "ferry run, peak RSS" "$(awk -v k="$RUN_HWM" 'BEGIN {print k / 1024}')"
if [[ -z ${NO_SFTP:-} ]]; then
    printf '  %-42s %8.3f s  %8s  (in-daemon poll %s ms)\n' "unchanged SFTP poll" "$(med sftp)" "$(rss sftp)" "$(median <"$W/poll_ms.sftp")"
    printf '  %-42s %8.3f s\n' "sftp ls -l" "$(med sftp-ls)"
    printf '  %-42s %8s   (goal: at most 1.5x)\n' "ratio ferry / sftp ls -l" "$(ratio sftp sftp-ls)"
fi

result "State scale: first pass of $ENTRIES files" first
result "State scale: unchanged $ENTRIES, $done_rows done rows" local "find" find 0.67
[[ -n ${NO_SFTP:-} ]] || result "State scale: unchanged $ENTRIES over SFTP" sftp "sftp" sftp-ls 0.67

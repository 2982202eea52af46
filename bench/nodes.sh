#!/usr/bin/env bash
# Several nodes on one PostgreSQL state database: files/s with 1, 2 and 3
# `ferry run` daemons taking one SFTP directory of small files into one
# shared local directory, and how long a SIGKILLed node's files take to be
# taken over (its lease running out) and finished by the others.
#
#   bench/nodes.sh                       # 10,000 files of 4 KiB, lease 10s
#   SMALL=2000 LEASE=5s bench/nodes.sh
#   FERRY=target/debug/ferry bench/nodes.sh   # no release build
#
# Starts its own sshd and a private PostgreSQL (initdb in the work
# directory, loopback port, run as the test user), stops both at exit.
# Needs root (sshd and a test user), openssh-server, postgresql, GNU time.
set -euo pipefail

SMALL=${SMALL:-10000}
LEASE=${LEASE:-10s}
NODES=${NODES:-1 2 3}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need_root "starts sshd and postgres, creates user $BENCH_USER"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
bench_need /usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/python3 /usr/bin/psql "$PG_BIN/initdb" "$PG_BIN/postgres" \
    -- openssh-server python3 postgresql time
bench_build

bench_workdir nodes
bench_sshd
bench_own "$W/remote" "$W/remote/inbox" "$W/remote/archive"
mkdir -p "$W/out"

# A private PostgreSQL: its own data directory, socket directory and
# loopback port, run as the unprivileged test user.
PGPORT=$(free_port)
PGPASS=bench-$RANDOM$RANDOM
mkdir -p "$W/pg" "$W/pgsock"
chown "$BENCH_USER" "$W/pg" "$W/pgsock"
echo "$PGPASS" >"$W/pg.pw"
chmod 600 "$W/pg.pw"
runuser -u "$BENCH_USER" -- "$PG_BIN/initdb" -D "$W/pg/data" -U postgres -A trust >/dev/null
runuser -u "$BENCH_USER" -- "$PG_BIN/postgres" -D "$W/pg/data" -k "$W/pgsock" -p "$PGPORT" \
    -c listen_addresses=127.0.0.1 -c fsync=on >"$W/pg/log" 2>&1 &
BENCH_PIDS+=($!)
wait_port "$PGPORT"
psql_as() { psql -X -q -t -A -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
for _ in $(seq 50); do psql_as -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
psql_as -d postgres -c "CREATE ROLE ferry LOGIN PASSWORD '$PGPASS'"
sql() { psql_as -d ferry -c "$1"; }

echo "== making data: $SMALL files of 4 KiB"
python3 - "$W/data" "$SMALL" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
block = os.urandom(4096)
for i in range(n):
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(block[:4096 - 8] + i.to_bytes(8, "little"))
PY

config() { # $1 = node name
    cat <<CONF
[daemon]
state = "postgres://ferry@127.0.0.1:$PGPORT/ferry?sslmode=disable"
state_password = { file = "$W/pg.pw" }
spool_dir = "$W/spool-$1"
node = "$1"
lease = "$LEASE"
max_transfers = 8
[servers.s]
protocol = "sftp"
host = "127.0.0.1"
port = $SPORT
user = "$BENCH_USER"
private_key = "$SSH_KEY"
known_hosts = "$KNOWN_HOSTS"
max_sessions = 4
[[watch]]
name = "bench"
server = "s"
remote_dir = "$W/remote/inbox"
local_dir = "$W/out"
stable_for = "0s"
interval = "1s"
move_to = "$W/remote/archive"
CONF
}

# fresh: an empty database and outbox, the files back on the server.
fresh() {
    psql_as -d postgres -c "DROP DATABASE IF EXISTS ferry" -c "CREATE DATABASE ferry OWNER ferry" >/dev/null
    rm -rf "$W/out" "$W/remote/inbox" "$W/remote/archive" "$W"/spool-*
    mkdir -p "$W/out"
    cp -r "$W/data" "$W/remote/inbox"
    bench_own "$W/remote/inbox" "$W/remote/archive"
    chown -R "$BENCH_USER" "$W/remote/inbox"
}

done_rows() { sql "SELECT count(*) FROM files WHERE state = 'done'" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

# start N: N daemons; NODE_PIDS holds their pids.
start() {
    NODE_PIDS=()
    local i
    for i in $(seq "$1"); do
        config "n$i" >"$W/n$i.toml"
        "$FERRY" run -c "$W/n$i.toml" 2>"$W/n$i.log" &
        NODE_PIDS+=($!)
        BENCH_PIDS+=($!)
    done
}
stop() {
    local p
    for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
wait_done() { # until every file is done; prints the seconds since $1
    while (($(done_rows) < SMALL)); do sleep 0.2; done
    awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'
}

for n in $NODES; do
    fresh
    t0=$(now)
    start "$n"
    secs=$(wait_done "$t0")
    stop
    delivered=$(find "$W/out" -maxdepth 1 -type f ! -name '.*' | wc -l)
    [[ $delivered -eq $SMALL ]] || bench_die "$n node(s): $delivered files in the outbox, expected $SMALL"
    fps=$(awk -v s="$secs" -v n="$SMALL" 'BEGIN {printf "%.0f", n / s}')
    printf '  %d node(s): %6.2f s  %6s files/s\n' "$n" "$secs" "$fps"
    result_value "nodes: $SMALL x 4 KiB, $n node(s), s" "$secs"
done

echo "== takeover: 2 nodes, n1 SIGKILLed with files claimed (lease $LEASE)"
fresh
start 2
while (($(sql "SELECT count(*) FROM files WHERE owner = 'n1' AND lease_until_ms IS NOT NULL AND state <> 'done'" 2>/dev/null || echo 0) < 50)); do
    sleep 0.05
done
kill -9 "${NODE_PIDS[0]}"
t_kill=$(now)
held=$(sql "SELECT string_agg(id::text, ',') FROM files WHERE owner = 'n1' AND lease_until_ms IS NOT NULL AND state <> 'done'")
count_held=$(tr ',' '\n' <<<"$held" | grep -c .)
while (($(sql "SELECT count(*) FROM files WHERE id IN ($held) AND owner = 'n1'") > 0)); do sleep 0.1; done
taken=$(awk -v a="$t_kill" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}')
while (($(sql "SELECT count(*) FROM files WHERE id IN ($held) AND state <> 'done'") > 0)); do sleep 0.1; done
finished=$(awk -v a="$t_kill" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}')
secs=$(wait_done "$t_kill")
stop
delivered=$(find "$W/out" -maxdepth 1 -type f ! -name '.*' | wc -l)
[[ $delivered -eq $SMALL ]] || bench_die "takeover: $delivered files in the outbox, expected $SMALL"
printf '  %d files held by the dead node: claimed by n2 after %s s, finished after %s s (lease %s); all done %s s after the kill\n' \
    "$count_held" "$taken" "$finished" "$LEASE" "$secs"
result_value "nodes: takeover of a dead node's files (lease $LEASE), s" "$taken"

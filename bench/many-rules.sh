#!/usr/bin/env bash
# Many rules on one SFTP server: RULES rules (500), each polling its own
# unchanged directory of a few files every INTERVAL (10s), against one
# OpenSSH sshd on loopback. Measures, over WINDOW seconds (60) after a
# warm-up of one interval and a few seconds:
#   - ferry's CPU: utime + stime from /proc/PID/stat, as % of one core;
#   - SSH handshakes per second: "Accepted publickey" lines in sshd's log;
#   - how poll starts spread: the most polls that started in one 100 ms
#     window, against the even share (RULES x 0.1 s / INTERVAL).
# Runs twice: sessions kept warm (idle_timeout = IDLE, default "5m") and,
# as the baseline, closed when each poll ends (idle_timeout = "0s").
#
#   bench/many-rules.sh
#   RULES=200 INTERVAL=2s WINDOW=20 bench/many-rules.sh
#   MODES=warm bench/many-rules.sh       # only the warm run
#   PERF=1 MODES=warm bench/many-rules.sh  # and where the CPU goes (perf)
#   FERRY=/path/to/ferry MODES=default bench/many-rules.sh
#                                        # a build without idle_timeout
# Under bench/run (BENCH_ONLY=many-rules) the figures go below the table.
#
# Needs root (sshd and a test user), openssh-server, openssh-client, python3.
set -euo pipefail

RULES=${RULES:-500}
INTERVAL=${INTERVAL:-10s}
WINDOW=${WINDOW:-60}
FILES_PER_RULE=${FILES_PER_RULE:-3}
MAX_SESSIONS=${MAX_SESSIONS:-4}
IDLE=${IDLE:-5m}
MODES=${MODES:-warm cold}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need_root "starts sshd, creates user $BENCH_USER"
bench_need /usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/python3 -- openssh-server openssh-client python3 time
bench_build

bench_workdir many-rules
bench_sshd
[[ -r ${SSHD_LOG:-} ]] || bench_die "cannot read sshd's log (${SSHD_LOG:-unset}): handshakes are counted there"
bench_own "$W/remote"

echo "== making data: $RULES directories of $FILES_PER_RULE files of 1 KiB"
python3 - "$W/remote" "$RULES" "$FILES_PER_RULE" <<'PY'
import os, sys
root, rules, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(1024)
for r in range(rules):
    d = os.path.join(root, f"r{r:04d}")
    os.makedirs(d, exist_ok=True)
    for i in range(files):
        with open(os.path.join(d, f"f{i}.dat"), "wb") as f:
            f.write(block)
PY
chown -R "$BENCH_USER" "$W/remote"

config() { # $1 = idle_timeout ("" leaves the key out), $2 = state dir
    cat <<CONF
[daemon]
state = "$2/state.db"
[servers.s]
protocol = "sftp"
host = "127.0.0.1"
port = $SPORT
user = "$BENCH_USER"
private_key = "$SSH_KEY"
known_hosts = "$KNOWN_HOSTS"
max_sessions = $MAX_SESSIONS
CONF
    [[ -z $1 ]] || echo "idle_timeout = \"$1\""
    for ((r = 0; r < RULES; r++)); do
        printf '[[watch]]\nname = "r%04d"\nserver = "s"\nremote_dir = "%s/remote/r%04d"\nlocal_dir = "%s/local/r%04d"\ninterval = "%s"\nstable_for = "0s"\n' \
            "$r" "$W" "$r" "$2" "$r" "$INTERVAL"
    done
}

accepted() { grep -c 'Accepted publickey' "$SSHD_LOG" || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
interval_s=$(python3 -c "import re,sys; m=re.fullmatch(r'(\d+(?:\.\d+)?)(ms|s|m)', sys.argv[1]); v=float(m[1]); print(v/1000 if m[2]=='ms' else v*60 if m[2]=='m' else v)" "$INTERVAL")
tck=$(getconf CLK_TCK)

# measure MODE IDLE: one daemon run; prints and records its figures.
measure() {
    local mode=$1 idle=$2 d=$W/$1 pid
    mkdir -p "$d"
    config "$idle" "$d" >"$d/ferry.toml"
    echo "== $mode (idle_timeout = ${idle:-default}): first pass delivers every file"
    "$FERRY" --config "$d/ferry.toml" once >"$d/once.log" 2>&1 || {
        tail -n 20 "$d/once.log" >&2
        bench_die "ferry once failed"
    }
    # The scheduler's "poll starts" events; a build without them (MODES=default)
    # gives the engine's "poll finished" with its duration instead.
    local logs=info,ferry::daemon::scheduler=debug
    [[ $mode != default ]] || logs=$logs,ferry::engine=debug
    RUST_LOG=$logs "$FERRY" --config "$d/ferry.toml" --log-format json run >"$d/run.out" 2>"$d/run.log" &
    pid=$!
    BENCH_PIDS+=("$pid")
    local warm
    warm=$(python3 -c "print(int($interval_s) + 5)")
    sleep "$warm"
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$d/run.log" >&2; bench_die "ferry run stopped"; }
    local c0 a0 t0 c1 a1 t1
    c0=$(cpu_ticks "$pid") a0=$(accepted) t0=$(date +%s.%N)
    if [[ -n ${PERF:-} ]]; then
        # Where the CPU goes: a call-graph profile over the window.
        perf record -q -g -o "$d/perf.data" -p "$pid" -- sleep "$WINDOW" 2>/dev/null
    else
        sleep "$WINDOW"
    fi
    c1=$(cpu_ticks "$pid") a1=$(accepted) t1=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$d/run.log" "$t0" "$t1" "$c0" "$c1" "$a0" "$a1" "$tck" "$RULES" "$interval_s" "$mode" <<'PY' | tee "$d/figures"
import json, sys, datetime
log, t0, t1, c0, c1, a0, a1, tck, rules, interval, mode = sys.argv[1:]
t0, t1, interval = float(t0), float(t1), float(interval)
secs = t1 - t0
cpu = (int(c1) - int(c0)) / int(tck) / secs * 100
hs = (int(a1) - int(a0)) / secs
starts, ends = [], []
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
for line in open(log, errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    msg = e.get("message") or e.get("fields", {}).get("message")
    if msg == "poll starts":
        starts.append(ts(e["timestamp"]))
    elif msg == "poll finished" and "duration_ms" in e:
        # Builds without the scheduler's event: the start is the end less the duration.
        ends.append(ts(e["timestamp"]) - e["duration_ms"] / 1000)
starts = sorted(t for t in (starts or ends) if t0 <= t < t1)
buckets = {}
for t in starts:
    buckets[int(t * 10)] = buckets.get(int(t * 10), 0) + 1
peak = max(buckets.values()) if buckets else 0
even = int(rules) * 0.1 / interval
polls = len(starts) / secs
print(f"{mode}: cpu {cpu:.1f} % of one core, handshakes {hs:.2f}/s, polls {polls:.1f}/s, "
      f"most poll starts in one 100 ms window {peak} (even share {even:.1f})")
PY
    if [[ -n ${PERF:-} ]]; then
        perf report -q -i "$d/perf.data" --no-children -g none --sort comm,dso,symbol --percent-limit 1 >"$d/perf.txt" 2>/dev/null || true
        echo "-- perf, $mode: self time by thread and symbol (perf.data kept with KEEP=1)"
        sed -n 1,30p "$d/perf.txt"
    fi
    [[ -z ${BENCH_NOTES:-} ]] || echo "Many rules ($RULES at $INTERVAL, ${WINDOW} s), $(cat "$d/figures")" >>"$BENCH_NOTES"
}

for mode in $MODES; do
    case $mode in
        warm) measure warm "$IDLE" ;;
        cold) measure cold 0s ;;
        default) measure default "" ;;
        *) bench_die "MODES: warm, cold or default, not $mode" ;;
    esac
done

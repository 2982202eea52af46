# shellcheck shell=bash
# Shared parts of the benchmark scripts, sourced by bench/*.sh and bench/run:
# the release build, a work directory, free ports, the loopback sshd (with
# a test user) and vsftpd, runs timed under GNU time, medians and ratios,
# and the result lines that bench/run turns into one table.
#
# A script started by hand starts its own servers. bench/run starts them
# once and exports where they are; a script then uses those:
#   BENCH_WORK          directory the scripts make their work directories in
#   BENCH_SSHD_PORT     sshd on 127.0.0.1 (with BENCH_SSH_KEY, the test
#                       user's private key, and BENCH_KNOWN_HOSTS)
#   BENCH_FTP_PORT      vsftpd on 127.0.0.1 (with BENCH_FTP_ROOT, its anon_root)
#   BENCH_RESULTS       file the result lines are appended to
#   BENCH_BUILT=1       the release build is done (no cargo run here)
# Result lines are tab-separated:
#   case, ferry seconds, ferry peak RSS (KiB or -), reference name,
#   reference seconds (or -), goal (reference time / ferry time to reach, or -)

BENCH_USER=ferrytest
BENCH_PIDS=()
BENCH_CLEAN=()

bench_die() { echo "error: $*" >&2; exit 2; }

bench_need_root() {
    [[ $(id -u) -eq 0 ]] || bench_die "run as root ($1)"
}

# bench_need PATH... [-- PACKAGES]: every PATH is an executable, else the
# hint "apt-get install PACKAGES"; /usr/bin/time must be GNU time.
bench_need() {
    local missing=() hint=""
    while (($#)); do
        if [[ $1 == -- ]]; then shift; hint=$*; break; fi
        [[ -x $1 ]] || missing+=("$1")
        shift
    done
    ((${#missing[@]} == 0)) || bench_die "missing ${missing[*]}${hint:+: apt-get install $hint}"
    [[ -x /usr/bin/time ]] || bench_die "missing /usr/bin/time (GNU time): apt-get install time"
    /usr/bin/time -f '%e' true >/dev/null 2>&1 || bench_die "/usr/bin/time is not GNU time (no -f): apt-get install time"
}

# bench_build [EXAMPLE...]: release build of ferry (and the named examples)
# into $CARGO_TARGET_DIR (default target/bench). Sets FERRY and EXAMPLES.
# FERRY set beforehand names a binary to use instead of building one.
bench_build() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
    local target=$CARGO_TARGET_DIR args=() e
    [[ $target == /* ]] || target=$PWD/$target
    EXAMPLES=$target/release/examples
    for e in "$@"; do args+=(--example "$e"); done
    if [[ -n ${FERRY:-} ]]; then
        echo "== using FERRY=$FERRY"
        if ((${#args[@]})) && [[ -z ${BENCH_BUILT:-} ]]; then
            cargo build --release --quiet "${args[@]}"
        fi
    else
        FERRY=$target/release/ferry
        if [[ -z ${BENCH_BUILT:-} ]]; then
            echo "== building ferry (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
            cargo build --release --quiet --bin ferry "${args[@]}"
        fi
    fi
    [[ -x $FERRY ]] || bench_die "$FERRY was not built"
    for e in "$@"; do [[ -x $EXAMPLES/$e ]] || bench_die "$EXAMPLES/$e was not built"; done
}

# bench_workdir NAME: makes W (under BENCH_WORK when set, else a fresh
# temporary directory) and removes it at exit unless KEEP=1; stops the
# servers started here (by their PIDs) at exit.
bench_workdir() {
    if [[ -n ${BENCH_WORK:-} ]]; then
        W=$BENCH_WORK/$1
        rm -rf "$W"
        mkdir -p "$W"
    else
        W=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-$1.XXXXXX")
    fi
    chmod 755 "$W"
    BENCH_CLEAN+=("$W")
    trap bench_cleanup EXIT
}

bench_cleanup() {
    local pid d
    if declare -F bench_cleanup_hook >/dev/null; then bench_cleanup_hook || true; fi
    for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BENCH_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for d in "${BENCH_CLEAN[@]}"; do
        if [[ -n ${KEEP:-} ]]; then echo "kept $d"; else rm -rf "$d"; fi
    done
}

# free_port [BELOW]: a TCP port on 127.0.0.1 nobody listens on (below BELOW,
# from 20000 up, when given: vsftpd's passive ports follow its own).
free_port() {
    python3 - "${1:-0}" <<'PY'
import random, socket, sys
below = int(sys.argv[1])
for _ in range(1000):
    port = random.randrange(20000, below) if below else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    break
else:
    sys.exit("no free port")
PY
}

wait_port() {
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    bench_die "nothing listens on 127.0.0.1:$1"
}

# bench_sshd: an OpenSSH sshd on 127.0.0.1 with the test user (public key
# only, internal-sftp). Sets SPORT, SSH_KEY, KNOWN_HOSTS, SSHD_LOG (its
# log: one "Accepted" line per login), USER_NAME; uses
# bench/run's server when BENCH_SSHD_PORT is set, else starts one (files
# in $W/sshd). Directories the test user writes to must be its own
# (bench_own).
bench_sshd() {
    USER_NAME=$BENCH_USER
    if [[ -n ${BENCH_SSHD_PORT:-} ]]; then
        SPORT=$BENCH_SSHD_PORT SSH_KEY=$BENCH_SSH_KEY KNOWN_HOSTS=$BENCH_KNOWN_HOSTS
        SSHD_LOG=${BENCH_SSHD_LOG:-}
        return 0
    fi
    local d=$W/sshd
    id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/sh "$USER_NAME"
    # useradd leaves the account locked ("!"), and sshd without PAM then
    # refuses even a key: "*" allows keys and still no password.
    [[ $(getent shadow "$USER_NAME" | cut -d: -f2) != '!'* ]] || usermod -p '*' "$USER_NAME"
    mkdir -p /run/sshd "$d"
    ssh-keygen -q -t ed25519 -N '' -f "$d/host" -C host
    ssh-keygen -q -t ed25519 -N '' -f "$d/user" -C user
    cp "$d/user.pub" "$d/authorized_keys"
    chmod 755 "$d"
    chmod 644 "$d/authorized_keys"
    SPORT=$(free_port)
    cat >"$d/sshd_config" <<CONF
Port $SPORT
ListenAddress 127.0.0.1
HostKey $d/host
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
PubkeyAuthentication yes
AllowUsers $USER_NAME
Subsystem sftp internal-sftp
MaxStartups 100
MaxSessions 100
CONF
    /usr/sbin/sshd -D -e -f "$d/sshd_config" 2>"$d/sshd.log" &
    BENCH_PIDS+=($!)
    wait_port "$SPORT"
    echo "[127.0.0.1]:$SPORT $(cut -d' ' -f1,2 "$d/host.pub")" >"$d/known_hosts"
    SSH_KEY=$d/user KNOWN_HOSTS=$d/known_hosts SSHD_LOG=$d/sshd.log
}

# bench_own DIR...: makes DIRs, owned by the test user (the SFTP side).
bench_own() { mkdir -p "$@"; chown "$BENCH_USER" "$@"; }

# bench_vsftpd [NAME]: vsftpd on 127.0.0.1, anonymous, uploads allowed, run
# as root without chroot: ferry names real paths, curl and lftp paths
# relative to anon_root. Every small file is a data connection, hence
# 10,000 passive ports. Sets FPORT, FTP_ROOT (anon_root) and, given NAME,
# FTP_DIR (the script's own writable directory on the server, a real
# path, removed at exit) and FTP_REL (the same relative to anon_root).
# Uses bench/run's server when BENCH_FTP_PORT is set.
bench_vsftpd() {
    local root
    if [[ -n ${BENCH_FTP_PORT:-} ]]; then
        FPORT=$BENCH_FTP_PORT root=$BENCH_FTP_ROOT
    else
        root=$W/vsftpd/root
        mkdir -p "$root/pub" "$W/vsftpd/empty"
        chmod 777 "$root/pub"
        FPORT=$(free_port 50000)
        cat >"$W/vsftpd/vsftpd.conf" <<CONF
listen=YES
listen_address=127.0.0.1
listen_port=$FPORT
background=NO
seccomp_sandbox=NO
run_as_launching_user=YES
anonymous_enable=YES
local_enable=NO
anon_root=$root
no_anon_password=YES
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_other_write_enable=YES
anon_world_readable_only=NO
anon_umask=022
pasv_min_port=$((FPORT + 1))
pasv_max_port=$((FPORT + 10000))
secure_chroot_dir=$W/vsftpd/empty
xferlog_enable=NO
max_per_ip=0
max_clients=0
idle_session_timeout=600
CONF
        /usr/sbin/vsftpd "$W/vsftpd/vsftpd.conf" 2>"$W/vsftpd/vsftpd.log" &
        BENCH_PIDS+=($!)
        wait_port "$FPORT"
    fi
    FTP_ROOT=$root
    [[ -n ${1:-} ]] || return 0
    FTP_REL=pub/$1
    FTP_DIR=$root/$FTP_REL
    rm -rf "$FTP_DIR"
    mkdir -p "$FTP_DIR"
    chmod 777 "$FTP_DIR"
    BENCH_CLEAN+=("$FTP_DIR")
}

# rclone, when installed, is one more reference column; RCLONE_SFTP and
# RCLONE_FTP are its on-the-fly remotes (append a path: "$RCLONE_SFTP/dir").
# NO_RCLONE=1 leaves it out (its FTP small-file runs take minutes).
HAVE_RCLONE=""
[[ -n ${NO_RCLONE:-} ]] || ! command -v rclone >/dev/null 2>&1 || HAVE_RCLONE=1
rclone_remotes() {
    [[ -n $HAVE_RCLONE ]] || return 0
    RCLONE_SFTP=":sftp,host=127.0.0.1,port=${SPORT:-0},user=$BENCH_USER,key_file=${SSH_KEY:-},known_hosts_file=${KNOWN_HOSTS:-}:"
    RCLONE_FTP=":ftp,host=127.0.0.1,port=${FPORT:-0},user=anonymous,pass=$(rclone obscure ferry):"
}
rclone_note() {
    [[ -n $HAVE_RCLONE ]] || echo "note: rclone is not installed: its runs are skipped"
}

# Lets the disk finish what the last run left (writeback, the discard of a
# deleted gigabyte) before the next timed run, so that no side pays for another.
settle() { sync; sleep 2; }

# timed LABEL CMD...: runs CMD under GNU time (its output kept in
# $W/LABEL.log), appends "seconds peak_kib machine_cpu own_cpu" to
# $W/LABEL.times (own: user + system time of CMD and its children, e.g.
# the ssh under `sftp`; machine: every process's) and prints
# the run; a failing CMD ends the script. With UNCOUNTED set, the run is
# printed and not recorded (a warm-up).
timed() {
    timed_try "$@" || exit 1
}

# timed_try LABEL CMD...: as timed, but a failure returns 1 instead of
# ending the run: for a reference tool that fails against one server
# (rclone's FTP ranges against vsftpd), noted and left out of the table.
timed_try() {
    local label=$1 busy0; shift
    busy0=$(busy_ticks)
    /usr/bin/time -f '%e %M %U %S' -o "$W/t" "$@" >"$W/last.out" 2>"$W/last.log" || {
        echo "$label failed: $*" >&2
        tail -n 20 "$W/last.out" "$W/last.log" >&2
        return 1
    }
    local cpu secs kib user sys
    read -r secs kib user sys < <(tail -n 1 "$W/t")
    if [[ -n ${UNCOUNTED:-} ]]; then
        printf '  %-18s %7.2f s  (warm-up, not counted)\n' "$label" "$secs"
        return 0
    fi
    cpu=$(awk -v a="$busy0" -v b="$(busy_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz}')
    echo "$secs $kib $cpu $(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" >>"$W/$label.times"
    cp "$W/last.log" "$W/$label.log"
    # shellcheck disable=SC2046
    printf '  %-18s %7.2f s  %8d KiB peak RSS  %6.2f s machine CPU  %6.2f s its own\n' "$label" $(tail -n 1 "$W/$label.times")
}

# busy_ticks: CPU time of the whole machine so far (every process, the
# servers' too), in clock ticks: what a run costs on a machine it shares
# with its servers, where one tool's CPU is the other's wall time.
busy_ticks() {
    awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}
last_s() { tail -n 1 "$W/$1.times" | cut -d' ' -f1; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
med() { cut -d' ' -f1 "$W/$1.times" | median; }
rss_kib() { cut -d' ' -f2 "$W/$1.times" | sort -n | tail -n 1; }
rss() { rss_kib "$1" | awk '{printf "%.1f MiB", $1 / 1024}'; }
ratio() { awk -v r="$(med "$1")" -v f="$(med "$2")" 'BEGIN {if (f > 0) printf "%.2fx", r / f; else print "n/a"}'; }
# pairs REF FERRY: each round's two times, "REF FERRY", a line a round.
pairs() { paste -d' ' <(cut -d' ' -f1 "$W/$1.times") <(cut -d' ' -f1 "$W/$2.times"); }
# paired REF FERRY: the median of the rounds' own ratios (REF's run i /
# ferry's run i). The runs of one round are a minute or two apart, so a
# machine that changes pace between rounds moves both sides of a round's
# ratio alike, where it moves only one side of the ratio of medians.
paired() {
    pairs "$1" "$2" |
        awk 'NF == 2 && $2 > 0 {print $1 / $2}' | median | awk '{printf "%.2fx", $1}'
}
# wins REF FERRY: in how many rounds ferry's run was the faster of the
# pair, as "k of n". On a machine whose pace swings by half between
# minutes, a median ratio near 1 says little by itself; ferry faster in
# 12 or more of 15 rounds would happen by chance under 2 % of the time
# if the two were alike (a sign test), 8 of 15 about half of the time.
wins() {
    pairs "$1" "$2" |
        awk 'NF == 2 {n++; if ($2 < $1) k++} END {printf "%d of %d", k, n}'
}
goal() { awk -v r="$(med "$1")" -v f="$(med "$2")" -v g="$3" 'BEGIN {print (f > 0 && r / f >= g ? "met" : "NOT met")}'; }
mbs() { awk -v s="$(med "$1")" -v m="$2" 'BEGIN {if (s > 0) printf "%.0f MB/s", m * 1.048576 / s; else print "inf"}'; }
fps() { awk -v s="$(med "$1")" -v n="$2" 'BEGIN {if (s > 0) printf "%.0f files/s", n / s; else print "inf"}'; }

# result CASE FERRY_LABEL [REF_NAME REF_LABEL [GOAL]]: one line for
# bench/run's table (nothing without BENCH_RESULTS). A label whose runs
# are missing (rclone not installed) gives no line.
result() {
    [[ -n ${BENCH_RESULTS:-} ]] || return 0
    local c=$1 f=$2 name=${3:--} ref=${4:-} g=${5:--} rs=-
    [[ -s $W/$f.times ]] || return 0
    if [[ -n $ref ]]; then
        [[ -s $W/$ref.times ]] || return 0
        rs=$(med "$ref")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$(med "$f")" "$(rss_kib "$f")" "$name" "$rs" "$g" >>"$BENCH_RESULTS"
}
# result_value CASE SECONDS: a ferry figure with nothing to compare with.
result_value() {
    [[ -n ${BENCH_RESULTS:-} ]] || return 0
    printf '%s\t%s\t-\t-\t-\t-\n' "$1" "$2" >>"$BENCH_RESULTS"
}

#!/usr/bin/env bash
# Runs ferry's whole test suite. First installs, when missing, the real
# programs the tests start on loopback ports (OpenSSH sshd, vsftpd,
# pyftpdlib with pyOpenSSL, asyncssh, tinyproxy, dante, openssl for test
# certificates, sshfs for a mount that hangs, systemd-analyze and man for
# the unit, systemd-journald for the journal's native protocol,
# PostgreSQL for the state backend, started privately by the tests), ProFTPD
# unpacked into target/proftpd (its package conflicts with vsftpd's), and
# cargo-deb and dpkg-dev (dpkg-shlibdeps) for the package test, then runs
# `cargo test`.
# Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")"

# command-or-check -> Debian package
declare -A needs=(
    [/usr/sbin/sshd]=openssh-server
    [/usr/lib/openssh/sftp-server]=openssh-sftp-server
    [/usr/bin/ssh-keygen]=openssh-client
    [/usr/sbin/vsftpd]=vsftpd
    [pyftpdlib]=python3-pyftpdlib
    [OpenSSL]=python3-openssl
    [asyncssh]=python3-asyncssh
    [/usr/bin/tinyproxy]=tinyproxy
    [/usr/sbin/danted]=dante-server
    [/usr/bin/openssl]=openssl
    [/usr/bin/sshfs]=sshfs
    [/usr/bin/systemd-analyze]=systemd
    [/usr/bin/man]=man-db
    [/usr/bin/dpkg-deb]=dpkg
    [/usr/bin/dpkg-shlibdeps]=dpkg-dev
    [/lib/systemd/systemd-journald]=systemd
    [postgresql]=postgresql
)
missing=()
for what in "${!needs[@]}"; do
    if [ "$what" = pyftpdlib ] || [ "$what" = OpenSSL ] || [ "$what" = asyncssh ]; then
        # Python modules: pyftpdlib's FTPS needs pyOpenSSL; asyncssh is a
        # second SFTP server (handles that count up, extensions optional).
        /usr/bin/python3 -c "import $what" 2>/dev/null || missing+=("${needs[$what]}")
    elif [ "$what" = postgresql ]; then
        # Debian keeps initdb and postgres in /usr/lib/postgresql/VERSION/bin.
        compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=("${needs[$what]}")
    elif [ ! -x "$what" ]; then
        missing+=("${needs[$what]}")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # Installing must not start the services: the tests start their own.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
    [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

# ProFTPD with mod_tls, for the FTPS tests: downloaded with its libraries
# and unpacked (never installed) into target/proftpd/root.
proftpd_root=target/proftpd/root
if [ ! -x "$proftpd_root/usr/sbin/proftpd" ] || [ ! -e "$proftpd_root/usr/lib/proftpd/mod_tls.so" ]; then
    echo "test.sh: unpacking ProFTPD into $proftpd_root" >&2
    mkdir -p target/proftpd/debs
    fetch() {
        (cd target/proftpd/debs && apt-get download -qq proftpd-core proftpd-mod-crypto \
            libhiredis0.14 libmemcached11 libmemcachedutil2 libhashkit2 libpcre2-posix3)
    }
    # An old or missing package list: update it once and try again.
    fetch || { $([ "$(id -u)" -eq 0 ] || echo sudo) apt-get update -qq && fetch; }
    for deb in target/proftpd/debs/*.deb; do
        dpkg-deb -x "$deb" "$proftpd_root"
    done
fi

# cargo-deb, for tests/packaging.rs. Pinned: that test packages the debug
# build (a release build would cost ~10 minutes), which cargo-deb 3.8 allows
# with a warning and later versions may refuse.
if ! cargo deb --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-deb" >&2
    cargo install cargo-deb --locked --version 3.8.0
fi

cargo test --all-targets "$@"

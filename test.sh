#!/usr/bin/env bash
# Runs ferry's whole test suite. First installs, when missing, what the tests
# need on a Debian machine (the servers the transport tests start on
# loopback), then runs `cargo test`. Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v sh >/dev/null || need+=(dash)
command -v sleep >/dev/null || need+=(coreutils)
if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo test --all-targets "$@"

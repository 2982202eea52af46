#!/usr/bin/env bash
# Builds the Debian package (target/debian/ferry_VERSION-1_ARCH.deb):
# the release binary, then the man page and shell completions that binary
# generates (`ferry man`, `ferry completions`), then `cargo deb --no-build`
# with the metadata in Cargo.toml. Needs cargo-deb (cargo install cargo-deb).
#
#   packaging/build-deb.sh [--profile NAME] [--no-build] [cargo-deb options]
#
# --profile packages another cargo profile's binary; --no-build takes the
# binary already in the target directory (the tests package their debug
# build that way, with --profile dev). Other options (--output, --fast) go
# to cargo deb.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=yes
while [ $# -gt 0 ]; do
    case $1 in
        --profile) profile=$2; shift 2 ;;
        --no-build) build=no; shift ;;
        *) break ;;
    esac
done
case $profile in
    dev) dir=debug ;;
    *) dir=$profile ;;
esac
bin_dir=${CARGO_TARGET_DIR:-target}/$dir

if [ $build = yes ]; then
    cargo build --locked --profile "$profile" --bin ferry
fi
[ -x "$bin_dir/ferry" ] || { echo "build-deb.sh: no $bin_dir/ferry" >&2; exit 1; }

# "target/release/assets/..." in Cargo.toml is this directory for the profile.
assets=$bin_dir/assets
mkdir -p "$assets"
# Gzipped here: cargo-deb compresses man pages only when it did not build them.
"$bin_dir/ferry" man | gzip -9n > "$assets/ferry.1.gz"
"$bin_dir/ferry" completions bash > "$assets/ferry.bash"
"$bin_dir/ferry" completions zsh > "$assets/_ferry"
"$bin_dir/ferry" completions fish > "$assets/ferry.fish"

exec cargo deb --no-build --profile "$profile" "$@"

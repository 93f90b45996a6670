#!/usr/bin/env bash
# `cargo test` as an unprivileged user (nobody by default) on a copy of the
# checkout, as a newcomer without root would run it: every unit test runs,
# the sandboxed end-to-end tests are skipped with one printed reason.
# Run as root (it sets up the copy and a private mount namespace in which
# the root-owned toolchain under /root is readable); the machine is left as
# it was.
set -euo pipefail
cd "$(dirname "$0")/.."
user="${CODEXT_TEST_USER:-nobody}"
uid=$(id -u "$user")
gid=$(id -g "$user")
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"

work=$(mktemp -d /var/tmp/codext-unprivileged.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The tracked and new files of the checkout (not target/, not .git).
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - -cf - | tar -C "$work" -xf -
# Reuse the built dependencies; the workspace's own crates rebuild.
if [ -d target ]; then
    cp -a target "$work/target"
    rm -rf "$work"/target/debug/{incremental,.fingerprint/codext*,.fingerprint/pam_codext*}
fi
chown -R "$uid:$gid" "$work"

# Inside: the toolchain at its usual path, under a /root the user may enter.
# Not exec'd: the EXIT trap must remove the copy (4.7 GB with target/).
unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
    work=$1 uid=$2 gid=$3 cargo_home=$4 rustup_home=$5
    mkdir -p "$work/.host-cargo" "$work/.host-rustup"
    mount --bind "$cargo_home" "$work/.host-cargo"
    mount --bind "$rustup_home" "$work/.host-rustup"
    mount -t tmpfs -o mode=755 none /root
    mkdir -p "$cargo_home" "$rustup_home"
    chown "$uid:$gid" "$cargo_home"
    for d in bin registry git; do
        [ -e "$work/.host-cargo/$d" ] || continue
        mkdir -p "$cargo_home/$d" && mount --bind "$work/.host-cargo/$d" "$cargo_home/$d"
    done
    mount --bind "$work/.host-rustup" "$rustup_home"
    cd "$work"
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --reset-env -- \
        env HOME=/root CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" \
        PATH="$cargo_home/bin:/usr/bin:/bin" CI= \
        cargo test --workspace --locked --offline
' _ "$work" "$uid" "$gid" "$cargo_home" "$rustup_home"

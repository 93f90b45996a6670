#!/usr/bin/env bash
# Installs what codext's demo and tests need on a fresh Debian 12 machine
# (run as root): Debian packages, a Rust toolchain with rustfmt and clippy,
# and cargo-audit. Safe to run again: it only adds what is missing.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "setup.sh: run as root (it installs packages)" >&2; exit 2; }

packages=(openssh-server openssh-client pamtester libpam0g-dev sshpass iproute2 openssl
          gcc libc6-dev pkg-config curl ca-certificates procps passwd systemd libnss-systemd binutils
          util-linux at cron uidmap rsync git
          # grant profiles: sudo rules of a profile, checked by visudo
          sudo
          # the session-recording tests: a headless browser for the HTML
          # export, and the probes a hostile user would run
          chromium python3 strace)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The package must not start a real sshd on the host: the tests start
    # their own inside a sandbox.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "setup.sh: installing the Rust toolchain (rustup, stable, minimal)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
if [ "${CODEXT_SKIP_AUDIT_INSTALL:-}" != 1 ] && ! cargo audit --version >/dev/null 2>&1; then
    echo "setup.sh: installing cargo-audit"
    cargo install --quiet --locked cargo-audit
fi

# Armed users are announced through nss-systemd (a /run/userdb record):
# the passwd and group databases must consult it (Debian 12's default, set
# by libnss-systemd's installation).
if ! grep -Eq '^passwd:.*\bsystemd\b' /etc/nsswitch.conf; then
    echo "setup.sh: /etc/nsswitch.conf does not consult systemd for passwd; codext needs 'passwd: files systemd'" >&2
    exit 1
fi

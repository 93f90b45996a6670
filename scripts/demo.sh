#!/usr/bin/env bash
# The whole codext flow on this machine, end to end, with no cloud account:
# builds codext, then — inside a throw-away sandbox (private mount, PID and
# network namespaces over a copy of /etc and scratch /home, /run, /var/lib…)
# — installs it into a real sshd, lets an unprivileged "agent" user obtain,
# solve and answer a puzzle, log in with plain ssh as a fresh user-<hex>,
# and shows that the account is gone after logout. Nothing on the real
# machine changes. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "==> building codext"
cargo build --workspace --locked --quiet
exec target/debug/codext-sandbox -- /bin/bash "$PWD/scripts/demo-inside.sh" "$PWD" "${1:-manual}"

#!/usr/bin/env bash
# The racy teardown cases of the suite at higher counts (not part of CI):
# spinners that stop or trace the killer at logout, and revokes racing
# logins, each CODEXT_SOAK_ROUNDS times (default 50). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CODEXT_SOAK_ROUNDS="${CODEXT_SOAK_ROUNDS:-50}"
cargo build --workspace --locked
cargo test --locked -p codext-tests --test teardown -- --nocapture \
    given_processes_that_stop_or_trace_everything \
    given_revokes_racing_logins

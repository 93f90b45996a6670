#!/usr/bin/env bash
# The racy teardown cases of the suite at higher counts (not part of CI):
# spinners that stop or trace the killer at logout, revokes racing logins,
# and processes of another uid holding the user's effective uid (forking
# more of themselves), each CODEXT_SOAK_ROUNDS times (default 50); then the
# file flood at 1,000,000 files. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CODEXT_SOAK_ROUNDS="${CODEXT_SOAK_ROUNDS:-50}"
cargo build --workspace --locked
cargo test --locked -p codext-tests --test teardown -- --nocapture \
    given_processes_that_stop_or_trace_everything \
    given_revokes_racing_logins
cargo test --locked -p codext-tests --test after_removal -- --nocapture \
    given_another_uid_running_the_users_setuid_file
# The file flood at five times the suite's count (200,000 in CI).
CODEXT_FLOOD_FILES="${CODEXT_FLOOD_FILES:-1000000}" \
cargo test --locked -p codext-tests --test leftovers -- --nocapture \
    given_a_flood_of_files_in_tmp

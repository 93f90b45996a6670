#!/usr/bin/env bash
# Benchmarks, with baselines measured in the same run:
#  * the puzzle protocol against bare RSA operations (cargo bench);
#  * the audit trail under a flood of unknown names (codext-audit-bench);
#  * a whole codext login against a plain ssh password login through the
#    same sshd, in the sandbox (release build), and the helper's memory;
#  * the helper's memory over 300 sequential JIT logins and 10 bursts of
#    50, against its own size at start;
#  * session recording against none: a JIT login, a 50 MiB cat, and the
#    helper's memory over 100 recorded sessions;
#  * a container grant against a plain one: codext open to a shell in the
#    container, a further command;
#  * 100 concurrent JIT logins against 100 concurrent plain logins, and how
#    soon after the last logout every account is gone;
#  * DigitalOcean logins against the emulator with real-world API latency;
#  * fleets of 20 and 100 droplets sharing one token (the real limits, time
#    scaled x20), agents arriving at random.
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo bench --locked -p codext-core --bench puzzle
cargo build --release --locked --workspace --quiet
target/release/codext-sandbox -- target/release/codext-bench
target/release/codext-sandbox -- target/release/codext-bench burst "${CODEXT_BURST:-100}"
# The helper's memory (RSS, peak, locked, arenas, stacks) over sequential
# logins and then bursts: it must level off. CODEXT_MEMORY="1000 10 50"
# for the long run quoted in docs/BENCHMARKS.md (about 20 minutes on 2 cores).
# shellcheck disable=SC2086
target/release/codext-sandbox -- target/release/codext-bench memory ${CODEXT_MEMORY:-300 10 50}
# What session recording costs: a JIT login and a 50 MiB cat
# through a master, recorded against not recorded (ratios), and the
# helper's memory over 100 recorded sessions.
target/release/codext-sandbox -- target/release/codext-record-bench "${CODEXT_RECORD_ROUNDS:-31}"
# A container grant against a plain one: codext open to a
# shell inside the container (the helper starts it when the account is
# made), a further command (docker exec), and the container's start, with
# a private dockerd in the sandbox and the workspace image
# (scripts/workspace-image.sh, from docker-test.sh's debootstrapped base).
target/release/codext-sandbox -- target/release/codext-profile-bench "${CODEXT_PROFILE_ROUNDS:-7}"
# What strangers cost the audit trail: 10,000 unknown names from 1 and from
# 1,000 sources, straight at the helper's socket, and a known user's login
# latency meanwhile against an idle helper.
target/release/codext-sandbox -- target/release/codext-audit-bench
# DigitalOcean logins through the unprivileged channel, 150-250 ms per API
# call, the agent with --no-knock (the baseline) and knocking (the wake),
# in the same run: time to the command, API calls per login, calls an hour
# at idle, the first login at an idle server each way.
target/release/codext-sandbox -- target/release/codext-do-bench "${CODEXT_DO_LOGINS:-20}"
# Fleets sharing one token: 20 and 100 droplets, each the real channel code
# on a thread (see the binary's doc comment), 60 logins an hour arriving at
# random, 90 simulated minutes at 20x (4.5 real minutes each), the agents'
# knock modelled by ringing the channel's bell (--no-knock: without): time
# to a shell against the bound the budget justifies, 429s, starved logins,
# the budget's low point against the reserve.
target/release/codext-fleet-bench 20
target/release/codext-fleet-bench 100

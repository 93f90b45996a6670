#!/usr/bin/env bash
# Runs every check codext has, as CI does: formatting, lints, the build,
# all tests (unit, protocol vectors, the real PAM/sshd/useradd end-to-end
# tests in a sandbox), the Debian packages and the docker images exercised
# for real (scripts/docker-test.sh), a fresh clone of HEAD with nothing
# beside it (scripts/clone-test.sh), Debian 12 and 13 booted with systemd
# (scripts/systemd-test.sh), the PAM module's exported symbols, fuzz smoke
# runs and the dependency audit (offline with CODEXT_ADVISORY_DB=DIR).
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo build"
cargo build --workspace --locked
step "cargo test"
cargo test --workspace --locked
step "cargo test as nobody on a copy of the checkout (every unit test; the sandboxed ones skip)"
unprivileged_log=$(mktemp)
if ! scripts/test-unprivileged.sh > "$unprivileged_log" 2>&1; then
    tail -n 60 "$unprivileged_log"; rm -f "$unprivileged_log"; exit 1
fi
grep -E '^(test result|codext-tests: skipping)' "$unprivileged_log" | sort | uniq -c
rm -f "$unprivileged_log"
step "the Debian packages and docker/ (scripts/docker-test.sh): lintian, the package round trip on a pristine bookworm, two containers"
scripts/docker-test.sh
step "a fresh clone of HEAD stands alone (scripts/clone-test.sh): the emulator's tests and docker/build-images.sh in an empty folder"
scripts/clone-test.sh
step "the systemd tier (scripts/systemd-test.sh): Debian 12 and 13 booted with systemd, logind and journald; the units as packaged; teardown through logind"
CODEXT_DEBS_BUILT=1 scripts/systemd-test.sh
step "what sshd loads: the PAM module's dependency closure (tests/tests/packaging.rs keeps it minimal)"
cargo tree --locked -p pam_codext -e normal --prefix none | sort -u
step "the root helper links no HTTP/TLS crate (the channel process does)"
helper_tree=$(cargo tree --locked -p codext-helper -e normal --prefix none | awk '{print $1}' | sort -u)
channel_tree=$(cargo tree --locked -p codext-channel -e normal --prefix none | awk '{print $1}' | sort -u)
echo "normal dependency closure: codext-helper (root) $(wc -l <<<"$helper_tree") packages, codext-channel (unprivileged) $(wc -l <<<"$channel_tree") packages"
if grep -xE 'ureq|rustls|rustls-webpki|rustls-pki-types|ring|webpki-roots|webpki|url|idna|http|httparse|hyper|reqwest|native-tls|openssl|tokio|h2|tiny_http|aws-lc-rs' <<<"$helper_tree"; then
    echo "the root helper's dependencies include the HTTP/TLS crates above" >&2
    exit 1
fi
step "systemd-analyze security of the shipped units, offline (information; the systemd tier asserts the targets on the booted hosts)"
unit_dir=$(mktemp -d)
sed "s#/usr/local/sbin/codext-helper#$PWD/target/debug/codext-helper#" systemd/codext-helper.service > "$unit_dir/codext-helper.service"
systemd-analyze security --offline=yes "$unit_dir/codext-helper.service" | tail -n 1 || true
sed "s#/usr/local/bin/codext-channel#$PWD/target/debug/codext-channel#" systemd/codext-channel.service > "$unit_dir/codext-channel.service"
systemd-analyze security --offline=yes "$unit_dir/codext-channel.service" | tail -n 1 || true
rm -rf "$unit_dir"
step "fuzz smoke run (every parser of untrusted bytes, 15 s each)"
scripts/fuzz-smoke.sh
step "cargo audit (RUSTSEC-2023-0071 acknowledged in .cargo/audit.toml and docs/THREAT_MODEL.md)"
# The copy CODEXT_ADVISORY_DB names; else the current database when the
# machine can reach it; else the subset vendored in tests/advisory-db
# (checked first to hold every locked crate's advisories).
if [ -n "${CODEXT_ADVISORY_DB:-}" ]; then
    cargo audit --db "$CODEXT_ADVISORY_DB" --no-fetch
elif timeout 20 git ls-remote https://github.com/RustSec/advisory-db.git HEAD > /dev/null 2>&1; then
    echo "fetching the current advisory database"
    cargo audit
else
    echo "the advisory database cannot be fetched here (no network): the subset in tests/advisory-db ($(cat tests/advisory-db/SOURCE))"
    scripts/advisory-db.sh check
    cargo audit --db tests/advisory-db --no-fetch
fi
step "all checks passed"

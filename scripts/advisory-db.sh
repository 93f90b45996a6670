#!/usr/bin/env bash
# The RustSec advisory database's part that codext's lock files need,
# vendored in tests/advisory-db so the dependency audit runs on a machine
# without network (scripts/test.sh uses it when no fresh copy can be
# fetched and CODEXT_ADVISORY_DB names none).
#
#   scripts/advisory-db.sh update FULL_DB   # the subset again from a full copy
#                                           # (a clone of github.com/rustsec/advisory-db)
#   scripts/advisory-db.sh check            # every locked crate the full copy had
#                                           # advisories for is in the subset
#
# CRATES lists every crate the full copy had advisories for, so `check`
# notices a new dependency whose advisories the subset lacks (then run
# `update` with a fresh full copy).
set -euo pipefail
cd "$(dirname "$0")/.."
sub=tests/advisory-db
locked() {
    awk '/^name = /{gsub(/"/, "", $3); print $3}' Cargo.lock fuzz/Cargo.lock 2>/dev/null | sort -u
}
case "${1:-}" in
update)
    full=${2:?usage: scripts/advisory-db.sh update FULL_DB}
    [ -d "$full/crates" ] || { echo "$full: no crates/ folder: not an advisory database" >&2; exit 2; }
    rm -rf "$sub/crates" "$sub/rust"
    mkdir -p "$sub/crates"
    cp -r "$full/rust" "$sub/rust"
    cp "$full/LICENSE.txt" "$sub/LICENSE.txt"
    for c in $(locked); do
        if [ -d "$full/crates/$c" ]; then cp -r "$full/crates/$c" "$sub/crates/$c"; fi
    done
    (cd "$full/crates" && ls) > "$sub/CRATES"
    if git -C "$full" rev-parse HEAD > /dev/null 2>&1; then
        echo "upstream commit $(git -C "$full" rev-parse HEAD) of $(git -C "$full" log -1 --format=%cs)" > "$sub/SOURCE"
    else
        echo "a copy without git history, taken $(date -u +%Y-%m-%d)" > "$sub/SOURCE"
    fi
    echo "tests/advisory-db: $(ls "$sub/crates" | wc -l) of $(wc -l < "$sub/CRATES") crates with advisories are locked here"
    ;;
check)
    missing=$(for c in $(locked); do
        if grep -qx "$c" "$sub/CRATES" && [ ! -d "$sub/crates/$c" ]; then echo "$c"; fi
    done)
    if [ -n "$missing" ]; then
        echo "tests/advisory-db lacks the advisories of locked crates: $missing (run scripts/advisory-db.sh update with a full copy)" >&2
        exit 1
    fi
    ;;
*)
    echo "usage: scripts/advisory-db.sh update FULL_DB | check" >&2
    exit 2
    ;;
esac

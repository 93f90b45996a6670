#!/usr/bin/env bash
# The repository stands alone: clones the committed HEAD into an empty
# temporary folder (nothing beside it, no DO_OPENAPI_SPEC, no
# CODEXT_ADVISORY_DB) and runs there what once needed a folder outside the
# repository: the emulator's tests (the OpenAPI description it validates
# against is vendored in tests/do-emulator/openapi/) and
# docker/build-images.sh (the packages, then the server, agent and emulator
# images, through the clone's own `scripts/docker-test.sh images`, which
# starts its private dockerd). Run by scripts/test.sh, as root.
# Uncommitted changes are not in the clone: it tests HEAD.
# Reused, because nothing in them can stand in for a file missing from the
# clone: cargo's registry (~/.cargo); a build folder (the clone's `target`
# is a link to $CODEXT_CLONE_TARGET, by default this checkout's `target`,
# whose compiled third-party crates cargo reuses while the clone's own
# crates rebuild from the clone's sources — their artifacts, and the .debs
# in target/debian, are then HEAD's); and docker-test's cache (the
# debootstrapped bookworm, the image layers).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
head=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "clone-test: the working tree has uncommitted changes; testing the committed HEAD ($head) only"
fi
dir=$(mktemp -d /tmp/codext-clone.XXXXXX)
trap 'rm -rf "$dir"' EXIT
git clone --quiet --no-hardlinks --no-checkout "$PWD" "$dir/codext"
git -C "$dir/codext" checkout --quiet --detach "$head"
build=${CODEXT_CLONE_TARGET:-$PWD/target}
mkdir -p "$build"
ln -s "$build" "$dir/codext/target"
[ "$(ls -A "$dir")" = codext ] || { echo "clone-test: $dir holds more than the clone" >&2; exit 1; }
cd "$dir/codext"
unset DO_OPENAPI_SPEC CODEXT_ADVISORY_DB
t0=$(date +%s)
echo "clone-test: $head in $dir/codext"
if ! cargo test --locked -p codext-do-emulator > "$dir/emulator-tests.log" 2>&1; then
    tail -n 60 "$dir/emulator-tests.log"
    echo "clone-test: the emulator's tests fail in a fresh clone" >&2; exit 1
fi
grep '^test result' "$dir/emulator-tests.log"
t1=$(date +%s)
scripts/docker-test.sh images
echo "clone-test: a fresh clone passes the emulator's tests ($((t1 - t0)) s) and docker/build-images.sh ($(($(date +%s) - t1)) s)"

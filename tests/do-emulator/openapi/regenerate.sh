#!/usr/bin/env bash
# Regenerates digitalocean-v2.json, the part of DigitalOcean's OpenAPI
# description the emulator validates against, from a full (bundled, every
# $ref to another file resolved) description, and SHA256SUMS for both
# (the full one as bundled.json, which is not vendored:
# `sha256sum -c --ignore-missing SHA256SUMS` checks the subset):
#   tests/do-emulator/openapi/regenerate.sh FULL.json
# What is kept and why: tests/do-emulator/src/subset.rs. Then write the
# upstream commit and date you bundled FULL.json from into README.md.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 FULL.json" >&2; exit 2; }
full=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
cd "$here/../../.."
cargo run --quiet --locked -p codext-do-emulator --bin openapi-subset -- "$full" "$here/digitalocean-v2.json"
{
    printf '%s  %s\n' "$(sha256sum < "$full" | cut -d' ' -f1)" bundled.json
    (cd "$here" && sha256sum digitalocean-v2.json)
} > "$here/SHA256SUMS"
cat "$here/SHA256SUMS"

#!/usr/bin/env bash
# Builds codext's container images from its Debian packages:
#   codext-deps:TAG    bookworm + openssh-server and the package's dependencies
#   codext-server:TAG  codext installed from codext_<version>_amd64.deb, setup run
#   codext-agent:TAG   codext-agent_<version>_amd64.deb and openssh-client only
#   codext-do-emulator:TAG  the DigitalOcean API emulator (tests/do-emulator,
#                      release build) for the DigitalOcean demo, with the part
#                      of DigitalOcean's OpenAPI description it validates
#                      against built in (tests/do-emulator/openapi/)
#   docker/build-images.sh [TAG]      (TAG defaults to `test`, what compose.yaml runs)
# Builds the packages first (packaging/build-deb.sh) unless
# CODEXT_DEBS_BUILT=1 says target/debian already holds this version's.
# Needs a `debian:bookworm-slim` image (a registry's, or debootstrap's
# imported as scripts/docker-test.sh does) and builds with the host's network
# (apt-get inside the build; no bridge). DOCKER names the client (default
# `docker`).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-test}
DOCKER=${DOCKER:-docker}
[ "${CODEXT_DEBS_BUILT:-}" = 1 ] || packaging/build-deb.sh
version=$(sed -n '/^version = "/{s/^version = "\(.*\)"/\1/p;q}' Cargo.toml)
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "target/debian/codext_${version}_amd64.deb" "target/debian/codext-agent_${version}_amd64.deb" \
    docker/entrypoint.sh "$CTX/"
build() { "$DOCKER" build --network host -q -f "$1" "${@:2}" "$CTX" >/dev/null; }
build docker/Dockerfile.server --target deps -t "codext-deps:$TAG"
build docker/Dockerfile.server -t "codext-server:$TAG"
build docker/Dockerfile.agent -t "codext-agent:$TAG"
built="codext-deps:$TAG, codext-server:$TAG, codext-agent:$TAG"
cargo build --release --locked -q -p codext-do-emulator
cp target/release/do-emulator "$CTX/do-emulator"
build docker/Dockerfile.emulator -t "codext-do-emulator:$TAG"
built+=", codext-do-emulator:$TAG"
echo "built $built (codext $version)"

#!/usr/bin/env bash
# Builds a small workspace image for `container` grant profiles,
# with no registry and no network: the debootstrapped bookworm that
# scripts/docker-test.sh caches (imported as debian:bookworm-slim when the
# daemon lacks it), plus this machine's own git, rsync, scp and sftp-server
# with the libraries they need (same Debian release: nothing is compiled or
# downloaded). Sessions of a container grant need those: `ssh host cmd`
# runs the command with the image's shell, scp and sftp need sftp-server,
# `git push` git-receive-pack, rsync rsync.
#
#   scripts/workspace-image.sh TAG
#
# Talks to the dockerd of DOCKER_HOST with DOCKER (default /usr/bin/docker,
# docker.io's client). Exit 3 when the base tarball is missing (make it
# with scripts/docker-test.sh, which needs the network once).
set -euo pipefail
TAG=${1:?usage: workspace-image.sh TAG}
DOCKER=${DOCKER:-/usr/bin/docker}
CACHE=${CODEXT_TEST_CACHE:-/var/cache/codext-test}
BASE_TAR="$CACHE/bookworm-minbase.tar"

if ! "$DOCKER" image inspect debian:bookworm-slim >/dev/null 2>&1; then
    if [ ! -s "$BASE_TAR" ]; then
        echo "workspace-image: no base image and no $BASE_TAR (run scripts/docker-test.sh once: it debootstraps it)" >&2
        exit 3
    fi
    "$DOCKER" import - debian:bookworm-slim < "$BASE_TAR" >/dev/null
fi

CTX=$(mktemp -d "${TMPDIR:-/tmp}/codext-workspace.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/extra"
programs=(/usr/bin/git /usr/bin/rsync /usr/bin/scp /usr/lib/openssh/sftp-server)
for p in "${programs[@]}"; do
    [ -x "$p" ] || { echo "workspace-image: $p is missing here (scripts/setup.sh installs it)" >&2; exit 1; }
done
copy() { mkdir -p "$CTX/extra$(dirname "$1")" && cp -a "$1" "$CTX/extra$1"; }
for p in "${programs[@]}" /usr/bin/git-receive-pack /usr/bin/git-upload-pack /usr/bin/git-upload-archive; do
    [ -e "$p" ] && copy "$p"
done
# git's helpers (receive-pack and friends are its own links) and templates.
mkdir -p "$CTX/extra/usr/lib" "$CTX/extra/usr/share"
cp -a /usr/lib/git-core "$CTX/extra/usr/lib/"
[ -d /usr/share/git-core ] && cp -a /usr/share/git-core "$CTX/extra/usr/share/"
# The libraries they link, by their real paths (/lib is /usr/lib on a
# merged-/usr system, and in the image), with the soname link beside.
for lib in $(ldd "${programs[@]}" /usr/lib/git-core/git-remote-http 2>/dev/null | awk '/=> \//{print $3}' | sort -u); do
    real=$(readlink -f "$lib")
    copy "$real"
    name=$(basename "$lib")
    [ "$name" = "$(basename "$real")" ] || ln -sf "$(basename "$real")" "$CTX/extra$(dirname "$real")/$name"
done
cat > "$CTX/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
COPY extra /opt/codext-extra
# -n: the base's own files (its libc) stay; only what it lacks is added.
RUN cp -an /opt/codext-extra/. / && rm -rf /opt/codext-extra && git --version && rsync --version >/dev/null
EOF
DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --network none -t "$TAG" "$CTX" >/dev/null
echo "workspace-image: $TAG ($("$DOCKER" image inspect --format '{{.Size}}' "$TAG") bytes)"

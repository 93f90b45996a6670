#!/usr/bin/env bash
# The Debian packages and docker/ exercised for real (run by scripts/test.sh,
# as root): builds the .debs, starts a PRIVATE dockerd (its own data root,
# exec root, socket and pid file, no bridge, no iptables; stopped by its pid
# on exit, so a dockerd already on the machine is untouched), imports a
# debootstrap'd bookworm as debian:bookworm-slim, then
#   1. the package round trip in a pristine container (packaging/roundtrip-inside.sh);
#   2. the server and agent images, and the whole flow between two
#      containers: plain ssh as user-<hex>, a command, the account gone after
#      logout, the server's /etc/passwd back to its original bytes;
#   3. the same through the DigitalOcean channel: an emulator container
#      (tests/do-emulator) for the API, a server container running the
#      helper and the unprivileged codext-channel pointed at it, and the
#      agent's `codext connect`; also the emulator saw no request or
#      response the API's OpenAPI description forbids.
# Containers use the host's network (--network host), on 127.0.0.1 only.
# The debootstrap tarball and dockerd's image store are cached under
# $CODEXT_TEST_CACHE (default /var/cache/codext-test): made once per machine.
# If dockerd cannot run a container here the probe prints why; under
# CI=true that fails unless the kernel forbids what dockerd needs.
#   scripts/docker-test.sh          all of the above
#   scripts/docker-test.sh images   only docker/build-images.sh (packages
#                                   and images, tagged `clone`), then the
#                                   emulator image started once and those
#                                   images removed: what scripts/clone-test.sh
#                                   runs in a fresh clone
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
case "$MODE" in all|images) ;; *) echo "usage: $0 [images]" >&2; exit 2 ;; esac
REPO=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
CACHE=${CODEXT_TEST_CACHE:-/var/cache/codext-test}
ROUNDTRIP_PORT=${CODEXT_ROUNDTRIP_PORT:-22931}
SERVER_PORT=${CODEXT_DOCKER_SSH_PORT:-22932}
EMULATOR_PORT=${CODEXT_DOCKER_EMULATOR_PORT:-22933}
DO_SERVER_PORT=${CODEXT_DOCKER_DO_SSH_PORT:-22934}
T_ALL=$(date +%s)
t_stage=$T_ALL
SUMMARY=
took() { # took PART: prints (and keeps for the summary) how long PART took
    local now; now=$(date +%s)
    printf '    [%s: %d s]\n' "$1" "$((now - t_stage))"
    SUMMARY+=$(printf '  %5d s  %s' "$((now - t_stage))" "$1")$'\n'
    t_stage=$now
}
say() { printf '\n=> docker-test: %s\n' "$*"; }

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9   # one run at a time per cache (dockerd's data root is shared);
          # dockerd does not inherit fd 9, so a leftover one never holds it

# What this test needs beyond scripts/setup.sh (kept out of it: the demo
# and the other tests need none of it). docker.io's maintainer scripts
# would start the machine's own dockerd: a policy-rc.d that exits 101
# forbids that while it installs.
missing=()
for p in docker.io debootstrap lintian; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "docker-test: installing ${missing[*]}"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$(trap -p EXIT)" ] || { rm -f /usr/sbin/policy-rc.d; trap - EXIT; }
fi
took "tools (docker.io, debootstrap, lintian)"

RUN=$(mktemp -d /tmp/codext-docker.XXXXXX)
DOCKER_PID=
cleanup() {
    if [ -n "$DOCKER_PID" ]; then
        docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
        kill "$DOCKER_PID" 2>/dev/null || true
        for _ in $(seq 200); do kill -0 "$DOCKER_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$DOCKER_PID" 2>/dev/null; then
            echo "docker-test: dockerd (pid $DOCKER_PID) did not stop in 20 s: SIGKILL" >&2
            kill -KILL "$DOCKER_PID" 2>/dev/null || true
        fi
    fi
    # dockerd leaves its bind mounts (netns/default) behind: unmount what is under $RUN.
    grep -F " $RUN/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT
export DOCKER_HOST="unix://$RUN/docker.sock"
# Our own client (docker.io's) matches our dockerd; the one in /usr/local/bin may be newer.
docker() { /usr/bin/docker "$@"; }

say "probe: a private dockerd on this kernel"
# A run killed outright (SIGKILL skips the trap) leaves its dockerd behind:
# the pid file beside the data root names it; stop that one process, only
# if it is a dockerd on this data root.
PIDFILE="$CACHE/dockerd.pid"
if [ -s "$PIDFILE" ]; then
    stale=$(cat "$PIDFILE")
    cmdline=$(tr '\0' ' ' < "/proc/$stale/cmdline" 2>/dev/null || true)
    if grep -q "^dockerd .*--data-root $CACHE/docker-data " <<<"$cmdline"; then
        echo "docker-test: stopping the dockerd (pid $stale) an interrupted run left"
        kill "$stale" 2>/dev/null || true
        for _ in $(seq 200); do kill -0 "$stale" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$stale" 2>/dev/null && kill -KILL "$stale" 2>/dev/null || true
        # and that run's folder (its exec root, with dockerd's bind mounts)
        old_run=$(sed -n 's#.*--exec-root \(/tmp/codext-docker\.[A-Za-z0-9]*\)/exec .*#\1#p' <<<"$cmdline")
        if [ -n "$old_run" ]; then
            grep -F " $old_run/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
            rm -rf "$old_run"
        fi
    fi
    rm -f "$PIDFILE"
fi
mkdir -p "$CACHE/docker-data"
dockerd --data-root "$CACHE/docker-data" --exec-root "$RUN/exec" -H "$DOCKER_HOST" \
    --pidfile "$PIDFILE" --storage-driver=vfs --bridge=none --iptables=false \
    --ip6tables=false --ip-masq=false >"$RUN/dockerd.log" 2>&1 9>&- &
DOCKER_PID=$!
probe_fail() {
    echo "docker-test: the probe failed: $1" >&2
    tail -n 15 "$RUN/dockerd.log" >&2 || true
    # The kernel forbids it when the namespaces a container needs cannot be made at all.
    if ! unshare --mount --pid --uts --ipc --net --fork true 2>"$RUN/unshare.err"; then
        echo "docker-test: the kernel forbids containers here: unshare: $(cat "$RUN/unshare.err")" >&2
        exit 0
    fi
    if [ "${CI:-}" = true ]; then exit 1; fi
    echo "docker-test: skipped (not CI)" >&2
    exit 0
}
for _ in $(seq 300); do docker info >/dev/null 2>&1 && break; kill -0 "$DOCKER_PID" 2>/dev/null || break; sleep 0.1; done
docker info >/dev/null 2>&1 || probe_fail "dockerd did not start"
took "dockerd started"

say "base image: debootstrap --variant=minbase bookworm, imported as debian:bookworm-slim"
BASE_TAR="$CACHE/bookworm-minbase.tar"
if [ ! -s "$BASE_TAR" ]; then
    rm -rf "$CACHE/bookworm.tmp"
    debootstrap --variant=minbase bookworm "$CACHE/bookworm.tmp" >"$RUN/debootstrap.log" 2>&1 \
        || { tail -n 20 "$RUN/debootstrap.log"; exit 1; }
    tar -C "$CACHE/bookworm.tmp" -c . > "$BASE_TAR.tmp" && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$CACHE/bookworm.tmp"
fi
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    docker import - debian:bookworm-slim < "$BASE_TAR" >/dev/null
fi
docker run --rm --network host debian:bookworm-slim true || probe_fail "a container does not run"
took "base image ready, a container runs"

if [ "$MODE" = images ]; then
    say "docker/build-images.sh clone: the packages, then the server, agent and emulator images"
    DOCKER=/usr/bin/docker docker/build-images.sh clone
    took "packages and images built"
    # The emulator has nothing beside it in its image: it serves with the
    # OpenAPI description built into it.
    docker run -d --name codext-clone-emulator --network host codext-do-emulator:clone \
        --listen "127.0.0.1:$EMULATOR_PORT" --token t >/dev/null
    for _ in $(seq 300); do docker logs codext-clone-emulator 2>&1 | grep -q '^listening' && break; sleep 0.1; done
    docker logs codext-clone-emulator 2>&1 | grep '^listening' \
        || { docker logs codext-clone-emulator; echo "docker-test: the emulator image did not start" >&2; exit 1; }
    docker rm -f codext-clone-emulator >/dev/null
    docker rmi codext-server:clone codext-agent:clone codext-do-emulator:clone codext-deps:clone >/dev/null
    docker image prune -f >/dev/null 2>&1 || true
    took "the emulator image serves"
    printf '\n=> docker-test: how long each part took\n%s' "$SUMMARY"
    printf '=> docker-test images: all passed in %d s\n' "$(($(date +%s) - T_ALL))"
    exit 0
fi

say "the packages (packaging/build-deb.sh; lintian must report no error)"
packaging/build-deb.sh
took "packages built"

say "images from the packages (docker/build-images.sh): deps stage (cached), server, agent, emulator"
DOCKER=/usr/bin/docker CODEXT_DEBS_BUILT=1 docker/build-images.sh test
version=$(sed -n '/^version = "/{s/^version = "\(.*\)"/\1/p;q}' Cargo.toml)
CTX="$RUN/context"
mkdir -p "$CTX"
cp "target/debian/codext_${version}_amd64.deb" "target/debian/codext-agent_${version}_amd64.deb" "$CTX/"
took "images built"

# Exactly what the server needs beyond docker's default capabilities: the
# helper locks its memory (mlockall), which needs CAP_IPC_LOCK (docker's
# default RLIMIT_MEMLOCK is 8 MiB). docker/compose.yaml grants the same.
CAPS=(--cap-add IPC_LOCK)

say "1. the package round trip in a pristine container"
docker run --rm --network host "${CAPS[@]}" -v "$CTX:/debs:ro" \
    -v "$REPO/target/release/codext:/opt/codext:ro" -v "$REPO/packaging/roundtrip-inside.sh:/roundtrip:ro" \
    codext-deps:test /bin/bash /roundtrip /debs /opt/codext "$ROUNDTRIP_PORT"
took "package round trip"

say "2. the flow between a server and an agent container"
docker rm -f codext-server codext-agent codext-do-emulator codext-server-do >/dev/null 2>&1 || true
docker run -d --name codext-server --network host "${CAPS[@]}" -e SSH_PORT="$SERVER_PORT" codext-server:test >/dev/null
docker run -d --name codext-agent --network host codext-agent:test >/dev/null
srv() { docker exec -i codext-server "$@"; }
agt() { docker exec -i codext-agent "$@"; }
# After logout: user $2 gone from the server container that $1 (srv, sdo)
# runs commands in, and its /etc/passwd back to the bytes saved in $3.
expect_gone() {
    local in=$1 user=$2 before=$3 gone=
    for _ in $(seq 300); do
        if ! $in getent passwd "$user" >/dev/null && ! $in test -d "/home/$user" \
            && [ "$($in codext-helper status)" = "no codext users" ]; then gone=1; break; fi
        sleep 0.1
    done
    [ -n "$gone" ] || { echo "docker-test: $user still there after logout" >&2; exit 1; }
    $in cat /etc/passwd | cmp - "$before" \
        || { echo "docker-test: the server's /etc/passwd differs from its original bytes" >&2; exit 1; }
    echo "$user is gone; the server's /etc/passwd is back to its original bytes"
}
for _ in $(seq 100); do srv test -S /run/codext/helper.sock && srv bash -c "exec 3<>/dev/tcp/127.0.0.1/$SERVER_PORT" && break; sleep 0.1; done 2>/dev/null
srv cat /etc/passwd > "$RUN/passwd.before"
srv codext-helper doctor > "$RUN/doctor.txt" || { cat "$RUN/doctor.txt"; docker logs codext-server | tail -n 30; exit 1; }
# All ok but one warning: the container's /tmp and /var/tmp are on its root
# file system without nosuid, as on a stock Debian (mounts.nosuid).
grep '^warn mounts\.nosuid ' "$RUN/doctor.txt" \
    || { cat "$RUN/doctor.txt"; echo "docker-test: doctor does not warn of /tmp without nosuid" >&2; exit 1; }
if grep -E '^(FAIL|warn)' "$RUN/doctor.txt" | grep -v '^warn mounts\.nosuid '; then
    echo "docker-test: doctor in the server container is not all ok" >&2; exit 1
fi
echo "doctor in the server container: $(grep -c '^ok' "$RUN/doctor.txt") checks ok"
# A world-writable folder on the container's root file system outside the
# swept ones: doctor lists it, with the fix (the operator's job).
srv mkdir -m 1777 /srv/drop
srv codext-helper doctor > "$RUN/doctor.ww.txt" || true
grep -E '^warn mounts\.world_writable .*/srv/drop.*chmod o-w' "$RUN/doctor.ww.txt" \
    || { cat "$RUN/doctor.ww.txt"; echo "docker-test: doctor does not list /srv/drop" >&2; exit 1; }
srv rmdir /srv/drop
srv cat /etc/codext/server_key.pub | agt sh -c 'cat > server.pub'
agt codext keygen --key agent.key >/dev/null
agt cat agent.key.pub | srv sh -c 'cat > /tmp/agent.key.pub'
srv codext-helper issue --client-key /tmp/agent.key.pub --json > "$RUN/issued.json"
USER_NAME=$(sed -n 's/.*"user": "\(.*\)".*/\1/p' "$RUN/issued.json")
PUZZLE=$(sed -n 's/.*"puzzle": "\(.*\)".*/\1/p' "$RUN/issued.json")
ANSWER=$(agt codext solve --key agent.key --server-key server.pub "$PUZZLE")
srv codext-helper answer "$ANSWER" >/dev/null
OUT=$(agt codext ssh --key agent.key --server-key server.pub --host 127.0.0.1 --port "$SERVER_PORT" "$PUZZLE" \
    -- 'id -un; echo ran-a-command') || { docker logs codext-server | tail -n 30; exit 1; }
echo "$OUT"
# No pipes into head or grep -q here: under pipefail, echo writing its
# second line after the reader quit is a SIGPIPE (exit 141).
[ "${OUT%%$'\n'*}" = "$USER_NAME" ] && grep -qx ran-a-command <<<"$OUT" \
    || { echo "docker-test: expected to log in as $USER_NAME and run a command" >&2; exit 1; }
expect_gone srv "$USER_NAME" "$RUN/passwd.before"
took "two-container flow"

say "3. the DigitalOcean flow: emulator, server (helper + codext-channel), agent (codext connect)"
SERVER_TOKEN=dop_v1_docker_test_server_000000000000000000000000000000000000000000
AGENT_TOKEN=dop_v1_docker_test_agent_0000000000000000000000000000000000000000000
API="http://127.0.0.1:$EMULATOR_PORT"
docker run -d --name codext-do-emulator --network host codext-do-emulator:test \
    --listen "127.0.0.1:$EMULATOR_PORT" --token "$SERVER_TOKEN" --token "$AGENT_TOKEN" \
    --droplet web-1:127.0.0.1:prod >/dev/null
for _ in $(seq 300); do docker logs codext-do-emulator 2>/dev/null | grep -q '^listening' && break; sleep 0.1; done
DROPLET=$(docker logs codext-do-emulator 2>/dev/null | sed -n 's/^listening .* droplet=\([0-9]*\)$/\1/p')
[ -n "$DROPLET" ] || { docker logs codext-do-emulator; echo "docker-test: the emulator did not start" >&2; exit 1; }
echo "emulator on $API: droplet $DROPLET (web-1, 127.0.0.1, tags: prod)"
# The operator allows the agent's key: the agent makes it first.
AGENT_FP=$(agt codext keygen --key do.key | sed -n 's/^fingerprint: //p')
[ -n "$AGENT_FP" ] || { echo "docker-test: codext keygen printed no fingerprint" >&2; exit 1; }
# The metadata service gives the droplet id (CODEXT_DO_DROPLET_ID unset), as on a droplet.
docker run -d --name codext-server-do --network host "${CAPS[@]}" -e SSH_PORT="$DO_SERVER_PORT" \
    -e CODEXT_DO_API_URL="$API" -e CODEXT_DO_METADATA_URL="$API/metadata/v1" \
    -e CODEXT_DO_ALLOWED_KEYS="$AGENT_FP" -e CODEXT_DO_TOKEN="$SERVER_TOKEN" codext-server:test >/dev/null
sdo() { docker exec -i codext-server-do "$@"; }
adoc() { docker exec -i -e DIGITALOCEAN_TOKEN="$AGENT_TOKEN" codext-agent codext "$@"; }
for _ in $(seq 300); do
    docker logs codext-server-do 2>&1 | grep -q 'codext-channel: watching droplet' && break; sleep 0.1
done
docker logs codext-server-do 2>&1 | grep 'codext-channel: watching droplet' \
    || { docker logs codext-server-do 2>&1 | tail -n 30; echo "docker-test: codext-channel did not start" >&2; exit 1; }
for _ in $(seq 100); do sdo bash -c "exec 3<>/dev/tcp/127.0.0.1/$DO_SERVER_PORT" && break; sleep 0.1; done 2>/dev/null
sdo cat /etc/passwd > "$RUN/passwd.before.do"
sdo ps -o user:32=,comm= -C codext-channel | awk '{print $1, $2}' | tee "$RUN/channel.ps"
grep -qx 'codext-channel codext-channel' "$RUN/channel.ps" \
    || { echo "docker-test: codext-channel does not run as the codext-channel user" >&2; exit 1; }
# doctor with the channel on: the user, the token file, and the token's
# scopes probed by `codext-channel --check` as the channel user against the emulator.
sdo codext-helper doctor > "$RUN/doctor.do.txt" || { cat "$RUN/doctor.do.txt"; exit 1; }
grep digitalocean "$RUN/doctor.do.txt"
if grep -E '^(FAIL|warn)' "$RUN/doctor.do.txt" | grep -v '^warn mounts\.nosuid '; then
    echo "docker-test: doctor in the DigitalOcean server container is not all ok" >&2; exit 1
fi
sdo cat /etc/codext/server_key.pub | agt sh -c 'cat > do-server.pub'
adoc publish-key --key do.key --api-url "$API" >/dev/null
t_login=$(date +%s.%N)
OUT=$(adoc connect --droplet "$DROPLET" --key do.key --server-key do-server.pub --api-url "$API" \
    --port "$DO_SERVER_PORT" --timeout 120s -- 'id -un; echo ran-a-command') \
    || { docker logs codext-server-do 2>&1 | tail -n 30; exit 1; }
LOGIN_S=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t_login}")
echo "$OUT"
DO_USER=${OUT%%$'\n'*}
[[ "$DO_USER" =~ ^user-[0-9a-f]+$ ]] && grep -qx ran-a-command <<<"$OUT" \
    || { echo "docker-test: expected to log in as user-<hex> and run a command" >&2; exit 1; }
echo "codext connect: a shell as $DO_USER through the DigitalOcean channel in $LOGIN_S s"
expect_gone sdo "$DO_USER" "$RUN/passwd.before.do"
neutral=
for _ in $(seq 600); do
    adoc droplet --droplet "$DROPLET" --api-url "$API" 2>/dev/null | grep -qx 'tags: prod' && { neutral=1; break; }
    sleep 0.1
done
[ -n "$neutral" ] || { adoc droplet --droplet "$DROPLET" --api-url "$API"; echo "docker-test: the droplet's tags are not back to 'prod'" >&2; exit 1; }
echo "the droplet's tags are back to what they were (prod)"
VIOLATIONS=$(agt bash -c "exec 3<>/dev/tcp/127.0.0.1/$EMULATOR_PORT; printf 'GET /_emulator/violations HTTP/1.0\r\n\r\n' >&3; cat <&3" | tail -n 1)
[ "$VIOLATIONS" = "[]" ] || { echo "docker-test: the emulator saw traffic the API does not allow: $VIOLATIONS" >&2; exit 1; }
echo "the emulator saw no request or response the OpenAPI description forbids"
took "DigitalOcean flow (connect to shell: $LOGIN_S s)"
docker image prune -f >/dev/null 2>&1 || true   # earlier builds' layers (vfs stores full copies)
printf '\n=> docker-test: how long each part took\n%s' "$SUMMARY"
printf '=> docker-test: all passed in %d s\n' "$(($(date +%s) - T_ALL))"

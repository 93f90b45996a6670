#!/usr/bin/env bash
# The package round trip, run by scripts/docker-test.sh inside a container
# of the `deps` stage of docker/Dockerfile.server: pristine Debian bookworm
# (debootstrap minbase) plus the package's dependencies, nothing of codext.
#   roundtrip-inside.sh DEB_DIR AGENT_BIN SSH_PORT
# install ./codext_*.deb -> (no auth change) -> setup -> doctor all ok ->
# a real login (manual channel, plain ssh as user-<hex>) -> apt-get remove
# (login paths as before install) -> apt-get purge -> /etc and every path
# the package or codext touches compared with before install: identical but
# for the backups the shadow tools always rewrite (listed below). Then a
# second, short round: install -> `codext-helper init` only (no setup, so no
# manifest: the accounts are left for the purge script) -> apt-get purge ->
# compared again, which shows that purge itself removes the codext-killer
# and codext-channel accounts and the codext group.
set -euo pipefail
DEBS=$1 AGENT_BIN=$2 PORT=$3
export DEBIAN_FRONTEND=noninteractive
T0=$(date +%s.%N)
stage_start=$T0
stage() { # stage NAME: prints how long the previous stage took
    local now; now=$(date +%s.%N)
    [ -z "${STAGE:-}" ] || printf '   (%s: %.1f s)\n' "$STAGE" "$(awk "BEGIN{print $now-$stage_start}")"
    STAGE=$1; stage_start=$now
    printf '\n--> round trip: %s\n' "$1"
}
fail() { echo "round trip FAILED: $*" >&2; exit 1; }
wait_for() { local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "timed out waiting for $what"; }

# The login paths, and every path the package, setup or the helper writes.
AUTH_PATHS=(/etc/pam.d /etc/ssh /etc/security /etc/nsswitch.conf)
ALL_PATHS=(/etc /usr/sbin /usr/bin /usr/lib/x86_64-linux-gnu/security /lib/systemd/system /usr/share/codext
           /usr/share/doc/codext /usr/share/man/man8 /usr/share/bash-completion /usr/share/zsh /usr/share/fish
           /var/lib/codext /var/log/codext /run/codext /run/codext-channel /run/codext-keys /run/userdb
           /home /var/spool /var/mail)
snapshot() { # snapshot PATH...: type, mode, owner, size and content hash of everything below
    local p
    for p in "$@"; do
        [ -e "$p" ] || { echo "absent $p"; continue; }
        find "$p" -xdev -printf '%p %y %m %U:%G %l\n' 2>/dev/null
        find "$p" -xdev -type f -exec sha256sum {} + 2>/dev/null
    done | LC_ALL=C sort
}
# Rewritten on every useradd/userdel/groupadd/groupdel even when the
# account set ends where it started: the shadow tools' backup copies (the
# previous database, so they differ after any change) and their lock file.
# (A snapshot line is "PATH TYPE MODE OWNER" or "SHA256  PATH".)
ALWAYS_REWRITTEN='^([0-9a-f]{64}  )?(/etc/(passwd|group|shadow|gshadow)-|/etc/\.pwd\.lock)( |$)'
# /run/userdb: the helper makes it for nss-systemd's drop-in user records
# (the armed users); /run is a tmpfs, gone at the next boot, and the folder
# may be shared with other userdb drop-ins, so purge leaves it, empty
# (checked below).
RUNTIME_DIR='^(absent /run/userdb|/run/userdb d 755 0:0 )$'

stage "prepare (the agent's own account, host keys: before the first snapshot)"
# The agent's home is outside the compared paths: its key and the pinned
# server key are the test's, not something codext leaves behind.
useradd --create-home --home-dir /opt/agent --shell /bin/bash agent
install -m 0755 "$AGENT_BIN" /usr/local/bin/codext
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
snapshot "${ALL_PATHS[@]}" > /tmp/before.all
snapshot "${AUTH_PATHS[@]}" > /tmp/before.auth

stage "apt-get install ./codext_*.deb"
apt-get install -y --no-install-recommends "$DEBS"/codext_*_amd64.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "install"; }
snapshot "${AUTH_PATHS[@]}" | diff /tmp/before.auth - || fail "installing changed the login paths"
echo "login paths unchanged by the install"
test -x /usr/sbin/codext-helper && test -f /usr/lib/x86_64-linux-gnu/security/pam_codext.so || fail "files missing"
test -x /usr/sbin/codext-channel && grep -qx 'ExecStart=/usr/sbin/codext-channel --socket /run/codext-channel/helper.sock' \
    /lib/systemd/system/codext-channel.service || fail "codext-channel or its unit missing"
test -f /usr/share/man/man8/codext-channel.8.gz && codext-channel --version >/dev/null || fail "codext-channel's man page or --version"
getent passwd codext-channel >/dev/null && fail "installing created an account (setup does that)"
dpkg-query -W -f='${Conffiles}\n' codext | grep -q /etc/codext/helper.toml || fail "helper.toml is not a conffile"

stage "codext-helper setup"
codext-helper setup | grep -v '^[-+@ ]' || fail "setup"
# The accounts the units run as (codext-channel.service: User=codext-channel).
for account in codext-killer codext-channel; do
    getent passwd "$account" | grep -q ':/usr/sbin/nologin$' || fail "setup made no $account account"
done

stage "helper and sshd start; codext-helper doctor"
codext-helper serve 2>/tmp/helper.log &
HELPER=$!
/usr/sbin/sshd -D -e -o "ListenAddress=127.0.0.1:$PORT" 2>/tmp/sshd.log &
SSHD=$!
wait_for 10 "the helper" test -S /run/codext/helper.sock
wait_for 10 "sshd" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"
codext-helper doctor | tee /tmp/doctor.txt || fail "doctor (reads the packaged /etc/codext/helper.toml)"
# All ok, but the warning every stock Debian gets: /tmp and /var/tmp on the
# root file system without nosuid (mounts.nosuid).
not_ok=$(grep -E '^(FAIL|warn)' /tmp/doctor.txt | grep -v '^warn mounts\.nosuid ' || true)
[ -z "$not_ok" ] || fail "doctor: not all ok"
# The channel installed, not configured: off, and doctor says how to turn it on.
grep -q '^ok .*digitalocean.*codext-channel is installed' /tmp/doctor.txt || fail "doctor: no word on the installed channel"
# Turned on without a token: doctor fails that line and says what to do.
printf 'version = 1\n[digitalocean]\nenabled = true\n' > /tmp/do-on.toml
echo "doctor with [digitalocean] enabled = true and no token (one FAIL expected):"
codext-helper --config /tmp/do-on.toml doctor > /tmp/doctor-on.txt 2>&1 && fail "doctor: all ok with the channel on and no token"
grep -E '^FAIL +digitalocean ' /tmp/doctor-on.txt || fail "doctor: no FAIL for the missing token"
grep -E '^(FAIL|warn)' /tmp/doctor-on.txt | grep -v digitalocean | grep -v '^warn mounts\.nosuid ' \
    && fail "doctor: other lines fail with the channel on"

stage "a real login: plain ssh as user-<hex> with the token (manual channel)"
as_agent() { runuser -u agent -- env -i HOME=/opt/agent PATH=/usr/local/bin:/usr/bin:/bin "$@"; }
cp /etc/codext/server_key.pub /opt/agent/server.pub && chown agent: /opt/agent/server.pub
as_agent codext keygen --key /opt/agent/agent.key >/dev/null
codext-helper issue --client-key /opt/agent/agent.key.pub --json > /tmp/issued.json
USER_NAME=$(sed -n 's/.*"user": "\(.*\)".*/\1/p' /tmp/issued.json)
PUZZLE=$(sed -n 's/.*"puzzle": "\(.*\)".*/\1/p' /tmp/issued.json)
ANSWER=$(as_agent codext solve --key /opt/agent/agent.key --server-key /opt/agent/server.pub "$PUZZLE")
codext-helper answer "$ANSWER" >/dev/null
OUT=$(as_agent codext ssh --key /opt/agent/agent.key --server-key /opt/agent/server.pub \
    --host 127.0.0.1 --port "$PORT" "$PUZZLE" -- 'id -un') || { tail -n 20 /tmp/sshd.log /tmp/helper.log; fail "login"; }
[ "$OUT" = "$USER_NAME" ] || fail "logged in as '$OUT', expected $USER_NAME"
echo "logged in as $OUT"
wait_for 30 "the account's removal" bash -c "! getent passwd $USER_NAME && ! test -d /home/$USER_NAME"
# The helper forgets the user after userdel and the sweep of /tmp and the
# like: stopping it before then would leave a removal for its reaper (and
# unsetup, in prerm, rightly refuses while a user is not forgotten).
wait_for 30 "the helper to forget $USER_NAME" bash -c "codext-helper status | grep -qx 'no codext users'"
echo "$USER_NAME is gone after logout"
kill "$HELPER" "$SSHD"; wait "$HELPER" "$SSHD" 2>/dev/null || true

stage "apt-get remove codext (prerm runs unsetup)"
apt-get remove -y codext >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "remove"; }
grep -i 'unsetup\|restored\|removed' /tmp/apt.log | head -n 20 || true
snapshot "${AUTH_PATHS[@]}" | diff /tmp/before.auth - || fail "the login paths differ from before the install"
echo "login paths as before the install"
getent group codext >/dev/null && fail "the codext group is still there"
getent passwd codext-killer >/dev/null && fail "codext-killer is still there"
getent passwd codext-channel >/dev/null && fail "codext-channel is still there"

compare_with_before() { # compare_with_before WHAT: the snapshot against the one before install
    snapshot "${ALL_PATHS[@]}" > /tmp/after.all
    diff /tmp/before.all /tmp/after.all > /tmp/diff.txt || true
    echo "differences from before the install ($1):"
    grep '^[<>]' /tmp/diff.txt | sed 's/^/  /' || echo "  (none)"
    if grep '^[<>]' /tmp/diff.txt | cut -c3- | grep -Ev "$ALWAYS_REWRITTEN" | grep -Ev "$RUNTIME_DIR" | grep -q .; then
        fail "paths other than the shadow tools' backups differ"
    fi
    [ ! -d /run/userdb ] || [ -z "$(ls -A /run/userdb)" ] || fail "/run/userdb is not empty: $(ls -A /run/userdb)"
    echo "identical except the shadow tools' backups and lock file (rewritten by every useradd/userdel/groupadd/groupdel)"
    echo "and an empty /run/userdb (a runtime folder on tmpfs, possibly shared with other userdb drop-ins)"
}

stage "apt-get purge codext"
apt-get purge -y codext >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "purge"; }
compare_with_before "remove, then purge"

stage "again: install, codext-helper init only (no setup manifest), apt-get purge"
apt-get install -y --no-install-recommends "$DEBS"/codext_*_amd64.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "install"; }
codext-helper init >/dev/null || fail "init"
for account in codext-killer codext-channel; do getent passwd "$account" >/dev/null || fail "init made no $account"; done
apt-get purge -y codext >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "purge"; }
grep -i 'nothing to undo' /tmp/apt.log || true
for name in codext-killer codext-channel; do getent passwd "$name" >/dev/null && fail "purge left the account $name"; done
getent group codext >/dev/null && fail "purge left the codext group"
compare_with_before "init, then purge: the purge script removed the accounts"
stage "done"
printf 'round trip: %.1f s in all\n' "$(awk "BEGIN{print $(date +%s.%N)-$T0}")"

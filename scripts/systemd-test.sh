#!/usr/bin/env bash
# The systemd tier (run by scripts/test.sh, as root, on a host WITHOUT
# systemd as PID 1 — the CI machine): the production host in the test
# suite. Debian 12 (bookworm, systemd 252) and Debian 13 (trixie, systemd
# 257) trees, debootstrapped once and cached under $CODEXT_TEST_CACHE
# (default /var/cache/codext-test), are booted with
#   systemd-nspawn -D DIR -b --register=no --keep-unit --private-network
# on a throw-away overlay of the cached tree (the cache stays pristine),
# with systemd as PID 1, logind, dbus, journald, polkit and sshd, and
# Debian's pam_systemd in common-session. The built .debs are installed,
# `codext-helper setup` and `systemctl enable --now codext-helper` run the
# unit exactly as packaged, doctor must be clean; then the cases of
# scripts/systemd-inside.sh:
#   1. a JIT login with plain ssh; after logout the account, /run/user/UID,
#      user@UID.service, the session scope and every process gone in 10 s;
#   2. a hostile user's user services, timer, enabled unit, linger, own
#      dbus-daemon, journal lines and kernel keys: nothing survives, and the
#      next holder of its uid sees none of it;
#   3. the helper under its unit: SIGKILLed and restarted by systemd, a
#      restart with a live session, Type=notify (a login with the helper
#      down fails closed), a hard reboot with a live session of a lingering
#      user (the orphan reaped at boot, sshd started after the helper);
#   4. codext-channel.service as packaged, the token through
#      LoadCredential=, a login through the DigitalOcean emulator, and the
#      channel's sandbox keeping the helper's state, keys and audit trail
#      out of reach;
#   5. systemd-analyze security: the helper <= 3.0, the channel <= 2.0;
#   6. the audit lines in the journal (journalctl CODEXT_EVENT=create).
# The container: its own network namespace (no traffic leaves it), the
# nspawn's own mount namespace (the overlay vanishes with it), its own
# cgroups under the host's hierarchies (removed afterwards); nspawn is
# stopped by its pid; nothing is left on the host but the cache. Besides
# nspawn's defaults it gets CAP_IPC_LOCK (the helper locks its memory, as
# docker-test.sh's --cap-add) and the keyring and bpf system calls (which
# nspawn's filter refuses, a real host does not: without them the users
# could keep no kernel keys and IPAddressDeny=/DevicePolicy= would not be
# enforced). Both run in the unified cgroup hierarchy, as on stock Debian 12
# and 13 (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1).
# If Debian 13 cannot boot here the probe says why and the Debian 13 package
# round trip runs without systemd as PID 1 (packaging/roundtrip-inside.sh).
# Under CI=true a case not run is a failure unless the probe shows the
# kernel forbids what it needs.
# CODEXT_SYSTEMD_SUITES="bookworm trixie" picks the suites; CODEXT_DEBS_BUILT=1
# skips packaging/build-deb.sh (scripts/test.sh built them for docker-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CACHE=${CODEXT_TEST_CACHE:-/var/cache/codext-test}
SUITES=${CODEXT_SYSTEMD_SUITES:-bookworm trixie}
T_ALL=$(date +%s)
t_stage=$T_ALL
SUMMARY=
took() {
    local now; now=$(date +%s)
    printf '    [%s: %d s]\n' "$1" "$((now - t_stage))"
    SUMMARY+=$(printf '  %5d s  %s' "$((now - t_stage))" "$1")$'\n'
    t_stage=$now
}
say() { printf '\n=> systemd-test: %s\n' "$*"; }
die() { echo "systemd-test: $*" >&2; exit 1; }

# What a tree holds beyond debootstrap's minbase: a booted Debian server
# (systemd, logind through libpam-systemd, dbus, polkit so `loginctl
# enable-linger` is decided as on a desktop-less server that has it, sshd)
# and what the cases use (keyutils, iproute2 for the emulator's address,
# pamtester for doctor). The codext package's own dependencies are among
# them: the .debs install offline. Changing the list rebuilds the trees.
TREE_PACKAGES="systemd systemd-sysv libpam-systemd libnss-systemd dbus polkitd openssh-server openssh-client procps keyutils iproute2 pamtester"

mkdir -p "$CACHE"
exec 8>"$CACHE/systemd.lock"
flock 8   # one run at a time per cache (the trees are shared)

if [ -d /run/systemd/system ]; then
    # The container would be registered with, and its cgroups made by, this
    # host's own systemd; this script manages them itself and is written
    # for (and tested on) a host without systemd as PID 1.
    echo "systemd-test: this host runs systemd as PID 1; the tier runs on one that does not (CI's machine)" >&2
    [ "${CI:-}" != true ] || exit 1
    echo "systemd-test: skipped (not CI)" >&2; exit 0
fi

missing=()
for p in systemd-container debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "systemd-test: installing ${missing[*]}"
    # As docker-test.sh: a policy-rc.d that exits 101 keeps maintainer
    # scripts from starting anything on this machine.
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
took "tools (systemd-container, debootstrap)"

RUN=$(mktemp -d /tmp/codext-systemd.XXXXXX)
# Folders made under the host's /run (not a tmpfs on this machine) by
# systemd-nspawn (its propagation and lock folders) and by mount(8)
# (libmount's utab lock folder): removed at the end when this run made
# them and they are empty.
MADE_RUN_DIRS=()
for d in /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn /run/mount; do
    [ -e "$d" ] || MADE_RUN_DIRS+=("$d")
done
NSPAWN_PID=
LEADER=
CGROUPS=()
PIDFILE="$CACHE/systemd-nspawn.pid"
# The host's cgroup hierarchies a container's cgroups are made in: the
# name=systemd one (v1) and the unified one (v2), wherever mounted.
cgroup_roots() {
    awk '$9 == "cgroup2" {print $5} $9 == "cgroup" && $NF ~ /name=systemd/ {print $5}' /proc/self/mountinfo
}
remove_cgroups() { # remove_cgroups NAME: the container's cgroups, deepest first
    local root
    for root in $(cgroup_roots); do
        [ -d "$root/$1" ] && find "$root/$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}
enter_cgroup() { # enter_cgroup NAME: this (sub)shell into its own cgroups, so
    # what a container's systemd makes stays below them and goes with them.
    local root
    for root in $(cgroup_roots); do
        mkdir -p "$root/$1" && echo "$BASHPID" > "$root/$1/cgroup.procs"
    done
}
stop_container() {
    [ -n "$NSPAWN_PID" ] || return 0
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill "$NSPAWN_PID" 2>/dev/null || true   # nspawn: SIGTERM = a clean poweroff of the container
        for _ in $(seq 300); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            echo "systemd-test: the container did not stop in 30 s: SIGKILL to its init ($LEADER) and nspawn ($NSPAWN_PID)" >&2
            [ -z "$LEADER" ] || kill -KILL "$LEADER" 2>/dev/null || true
            kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        fi
    fi
    wait "$NSPAWN_PID" 2>/dev/null || true
    NSPAWN_PID='' LEADER=''
    rm -f "$PIDFILE"
}
cleanup() {
    stop_container
    local cg; for cg in "${CGROUPS[@]}"; do remove_cgroups "$cg"; done
    local d; for d in "${MADE_RUN_DIRS[@]}"; do rmdir "$d" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT

# A run killed outright (SIGKILL skips the trap) leaves its container
# behind: the pid file names its nspawn; stop that one, only if it is a
# systemd-nspawn on one of this script's run folders.
if [ -s "$PIDFILE" ]; then
    read -r stale stale_leader < "$PIDFILE" || true
    cmdline=$(tr '\0' ' ' < "/proc/$stale/cmdline" 2>/dev/null || true)
    if grep -q "^systemd-nspawn .*-D /tmp/codext-systemd\.[A-Za-z0-9]*/" <<<"$cmdline"; then
        echo "systemd-test: stopping the container (nspawn pid $stale) an interrupted run left"
        kill "$stale" 2>/dev/null || true
        for _ in $(seq 300); do kill -0 "$stale" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$stale" 2>/dev/null; then
            [ -z "${stale_leader:-}" ] || kill -KILL "$stale_leader" 2>/dev/null || true
            kill -KILL "$stale" 2>/dev/null || true
        fi
        old_run=$(sed -n 's#.*-D \(/tmp/codext-systemd\.[A-Za-z0-9]*\)/.*#\1#p' <<<"$cmdline")
        [ -z "$old_run" ] || rm -rf "$old_run"
    fi
    rm -f "$PIDFILE"
fi
# ... and its cgroups, once empty.
for root in $(cgroup_roots); do
    for cg in "$root"/codext-systemd-test.*; do
        [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
done

say "probe: what this kernel allows a booted container"
probe_forbids=
if ! unshare --mount --pid --uts --ipc --net --fork true 2>"$RUN/unshare.err"; then
    probe_forbids="the namespaces a container needs cannot be made: $(cat "$RUN/unshare.err")"
fi
UNIFIED=
if grep -qw cgroup2 /proc/filesystems && awk '$9 == "cgroup2"' /proc/self/mountinfo | grep -q .; then
    UNIFIED=1
fi
NAMED=
awk '$9 == "cgroup" && $NF ~ /name=systemd/' /proc/self/mountinfo | grep -q . && NAMED=1
echo "kernel $(uname -r); namespaces: ${probe_forbids:-ok}; cgroup2 mounted: ${UNIFIED:-no}; name=systemd hierarchy: ${NAMED:-no}"
if [ -n "$probe_forbids" ]; then
    echo "systemd-test: the kernel forbids booted containers here: $probe_forbids" >&2
    exit 0
fi
if [ -z "$UNIFIED" ] && [ -z "$NAMED" ]; then
    echo "systemd-test: no cgroup hierarchy for systemd here (neither cgroup2 nor name=systemd mounted)" >&2
    [ "${CI:-}" != true ] || exit 1
    exit 0
fi
took "probe"

# build_tree SUITE: $CACHE/systemd-SUITE, made once (debootstrap minbase,
# then TREE_PACKAGES in a chroot whose mounts live in a private mount
# namespace; a policy-rc.d that exits 101 keeps daemons from starting).
build_tree() {
    local suite=$1 dir="$CACHE/systemd-$1" stamp="$CACHE/systemd-$1.packages"
    if [ -d "$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$TREE_PACKAGES" ]; then
        return 0
    fi
    say "the $suite tree: debootstrap --variant=minbase $suite, then $TREE_PACKAGES (cached in $dir)"
    rm -rf "$dir" "$dir.tmp" "$stamp"
    if [ "$suite" = bookworm ] && [ -s "$CACHE/bookworm-minbase.tar" ]; then
        # docker-test.sh's cached debootstrap of the same suite and variant.
        mkdir -p "$dir.tmp" && tar -C "$dir.tmp" -xf "$CACHE/bookworm-minbase.tar"
    else
        debootstrap --variant=minbase "$suite" "$dir.tmp" > "$RUN/debootstrap.$suite.log" 2>&1 \
            || { tail -n 20 "$RUN/debootstrap.$suite.log"; die "debootstrap $suite failed"; }
    fi
    printf '#!/bin/sh\nexit 101\n' > "$dir.tmp/usr/sbin/policy-rc.d"
    chmod 755 "$dir.tmp/usr/sbin/policy-rc.d"
    # shellcheck disable=SC2016
    unshare --mount --propagation private bash -c '
        set -e
        mount -t proc proc "$1/proc"; mount --rbind /dev "$1/dev"; mount -t sysfs sys "$1/sys"
        chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive apt-get update -qq
        chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends $2
        chroot "$1" apt-get clean' _ "$dir.tmp" "$TREE_PACKAGES" > "$RUN/apt.$suite.log" 2>&1 \
        || { tail -n 20 "$RUN/apt.$suite.log"; die "installing the $suite tree's packages failed"; }
    rm -f "$dir.tmp/usr/sbin/policy-rc.d"
    # The console getty would wait on a console nobody types at.
    ln -sf /dev/null "$dir.tmp/etc/systemd/system/console-getty.service"
    mv "$dir.tmp" "$dir"
    echo "$TREE_PACKAGES" > "$stamp"
}
for suite in $SUITES; do build_tree "$suite"; done
took "trees ($SUITES)"

say "the packages (packaging/build-deb.sh) and the DigitalOcean API emulator"
if [ "${CODEXT_DEBS_BUILT:-}" != 1 ]; then packaging/build-deb.sh; fi
cargo build --release --locked -q -p codext-do-emulator
version=$(sed -n '/^version = "/{s/^version = "\(.*\)"/\1/p;q}' Cargo.toml)
# The part of the description the emulator validates against, vendored
# (the emulator also has it built in); DO_OPENAPI_SPEC may name a full one.
SPEC=${DO_OPENAPI_SPEC:-tests/do-emulator/openapi/digitalocean-v2.json}
[ -f "$SPEC" ] || die "no OpenAPI description for the emulator at $SPEC (set DO_OPENAPI_SPEC)"
STAGE="$RUN/stage"
mkdir -p "$STAGE/packaged"
cp "target/debian/codext_${version}_amd64.deb" "target/debian/codext-agent_${version}_amd64.deb" \
    scripts/systemd-inside.sh packaging/roundtrip-inside.sh target/release/do-emulator "$STAGE/"
cp "$SPEC" "$STAGE/openapi.json"
# The units exactly as packaged, to compare with what the install put on disk.
dpkg-deb --fsys-tarfile "$STAGE/codext_${version}_amd64.deb" \
    | tar -x -C "$STAGE/packaged" --strip-components=4 ./lib/systemd/system/codext-helper.service ./lib/systemd/system/codext-channel.service
took "packages and emulator"

# boot SUITE: boots the overlay $RUN/SUITE (made on first use) in the
# background; sets NSPAWN_PID and LEADER (the container's PID 1).
boot() {
    local suite=$1 dir="$RUN/$1" cg="codext-systemd-test.$$.$1"
    mkdir -p "$dir/upper" "$dir/work" "$dir/root"
    remove_cgroups "$cg"   # a previous boot's (before a reboot)
    CGROUPS+=("$cg")
    # shellcheck disable=SC2016
    (
        enter_cgroup "$cg"
        exec unshare --mount --propagation private bash -c '
            mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root"
            exec systemd-nspawn --quiet -D "$2/root" -M "$3" -b --register=no --keep-unit --private-network \
                --console=read-only --capability=CAP_IPC_LOCK \
                --system-call-filter=@keyring --system-call-filter=bpf' _ "$CACHE/systemd-$suite" "$dir" "codext-test-$$-$suite"
    ) > "$dir/console.log" 2>&1 < /dev/null &
    NSPAWN_PID=$!
    local end=$(( $(date +%s) + 20 ))
    LEADER=
    while [ -z "$LEADER" ]; do
        LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd 2>/dev/null || true)
        [ -n "$LEADER" ] && break
        kill -0 "$NSPAWN_PID" 2>/dev/null && [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
    echo "$NSPAWN_PID $LEADER" > "$PIDFILE"
    # Until the boot has finished: running, or degraded (a unit the tree
    # does not need failed; listed).
    local state=
    end=$(( $(date +%s) + 90 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        # Empty until PID 1 listens on its bus; then --wait returns once
        # the boot is over.
        state=$(timeout 90 nsenter -t "$LEADER" -a -- systemctl is-system-running --wait 2>/dev/null || true)
        [ -z "$state" ] || break
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.1
    done
    case "$state" in
        running) ;;
        degraded) echo "    (degraded: $(C systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' '))" ;;
        *) echo "    state after boot: '${state}'"; return 1 ;;
    esac
}
if [ -n "$UNIFIED" ]; then export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1; else unset SYSTEMD_NSPAWN_UNIFIED_HIERARCHY; fi
C() { nsenter -t "$LEADER" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C "$@"; }
inside() { C bash /opt/codext-test/systemd-inside.sh "$SUITE" "$@"; }
boot_failed() { # boot_failed SUITE: prints why (the probe)
    echo "systemd-test: $1 did not boot to multi-user.target; its console:" >&2
    sed 's/\x1b\[[0-9;]*m//g' "$RUN/$1/console.log" | tail -n 25 >&2
    stop_container
}

# Debian 13 without systemd as PID 1: the package round trip in the tree,
# under systemd-nspawn as a plain container (no -b).
roundtrip_unbooted() {
    local suite=$1 dir="$RUN/$1-roundtrip" cg="codext-systemd-test.$$.$1-roundtrip"
    say "$suite: the package round trip without systemd as PID 1 (packaging/roundtrip-inside.sh)"
    mkdir -p "$dir/upper" "$dir/work" "$dir/root"
    CGROUPS+=("$cg")
    # shellcheck disable=SC2016
    ( enter_cgroup "$cg"; exec unshare --mount --propagation private bash -c '
        mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root"
        mkdir -p "$2/root/opt/codext-test" && cp -a "$3"/. "$2/root/opt/codext-test/"
        exec systemd-nspawn --quiet -D "$2/root" -M "codext-test-$$-roundtrip" --register=no --keep-unit --private-network --capability=CAP_IPC_LOCK \
            /bin/bash -c "mkdir -p /debs && cp /opt/codext-test/codext_*.deb /opt/codext-test/codext-agent_*.deb /debs/ \
                && dpkg-deb -x /debs/codext-agent_*.deb /tmp/agent \
                && exec /bin/bash /opt/codext-test/roundtrip-inside.sh /debs /tmp/agent/usr/bin/codext 22"' \
        _ "$CACHE/systemd-$suite" "$dir" "$STAGE" ) || die "the $suite round trip failed"
}

for SUITE in $SUITES; do
    if [[ " ${CODEXT_SYSTEMD_NO_BOOT:-} " == *" $SUITE "* ]]; then
        # For testing this script's fallback: as if SUITE could not boot.
        roundtrip_unbooted "$SUITE"; took "$SUITE: round trip without systemd as PID 1"; continue
    fi
    say "$SUITE: boot (systemd-nspawn -b on an overlay of the cached tree)"
    if ! boot "$SUITE"; then
        boot_failed "$SUITE"
        if [ "$SUITE" = trixie ] && [ -z "$UNIFIED" ]; then
            echo "systemd-test: probe: no cgroup2 on this host, and systemd 257 refuses the legacy hierarchy" >&2
            roundtrip_unbooted trixie
            took "trixie: round trip without systemd as PID 1"
            continue
        fi
        die "$SUITE did not boot"
    fi
    echo "booted $(C cat /etc/debian_version) with $(C systemctl --version | head -n 1); leader pid $LEADER"
    C mkdir -p /opt/codext-test
    cp -a "$STAGE"/. "/proc/$LEADER/root/opt/codext-test/"
    took "$SUITE: booted"
    inside setup;  took "$SUITE: install, setup, enable --now, doctor"
    inside case1;  took "$SUITE: case 1 (login, teardown through logind)"
    inside case2;  took "$SUITE: case 2 (hostile user, next holder of the uid)"
    inside case3;  took "$SUITE: case 3 (kill, restart, notify)"
    inside reboot-prepare
    say "$SUITE: hard reboot (reboot(2) from inside: every process killed, no logout)"
    C systemctl reboot --force --force >/dev/null 2>&1 || true
    rc=0; wait "$NSPAWN_PID" || rc=$?
    [ "$rc" = 133 ] || die "nspawn exited $rc, not 133 (reboot)"
    NSPAWN_PID=
    boot "$SUITE" || { boot_failed "$SUITE"; die "$SUITE did not boot again"; }
    inside reboot-check; took "$SUITE: case 3 (hard reboot, orphan reaped at boot)"
    inside case4;  took "$SUITE: case 4 (channel unit, LoadCredential, sandbox)"
    inside case5
    inside case6;  took "$SUITE: cases 5 and 6 (systemd-analyze, journal)"
    stop_container
    took "$SUITE: stopped"
done

say "nothing left on the host"
grep -F "$RUN" /proc/self/mountinfo && die "mounts under $RUN remain"
ls -d /run/systemd/nspawn/propagate/codext-test-$$-* 2>/dev/null && die "nspawn's propagation folders remain"
for cg in "${CGROUPS[@]}"; do remove_cgroups "$cg"; done
for root in $(cgroup_roots); do
    ls -d "$root"/codext-systemd-test.$$.* 2>/dev/null && die "cgroups remain under $root"
done
pgrep -f "systemd-nspawn .*$RUN" && die "an nspawn of this run still runs"
echo "no mount, cgroup or process of the containers remains; the cache holds $(du -sh "$CACHE" | cut -f1)"
printf '\n=> systemd-test: how long each part took\n%s' "$SUMMARY"
printf '=> systemd-test: all passed in %d s\n' "$(($(date +%s) - T_ALL))"

#!/usr/bin/env bash
# The cases of the systemd tier, run by scripts/systemd-test.sh inside a
# container booted with systemd (systemd-nspawn -b: systemd as PID 1,
# logind, dbus, journald, polkit, sshd, Debian's pam_systemd), one verb at a
# time (the host reboots the container between two of them):
#   systemd-inside.sh SUITE VERB
# Files: /opt/codext-test (this script, the .debs, the packaged units
# extracted from the .deb, the emulator and its OpenAPI description, and
# what one verb leaves for the next). The agent is the local user `agent`;
# every login is a plain `ssh` (through `codext ssh`/`codext connect`) to
# 127.0.0.1:22 inside the container. helper.toml narrows the uid range to
# ONE uid, so every temporary user is 59000 and each case's teardown is
# checked again by the next holder of the uid.
set -euo pipefail
SUITE=$1 VERB=$2
T=/opt/codext-test
UID_ONE=59000
export LC_ALL=C
cd /

say() { printf -- '--> [%s] %s\n' "$SUITE" "$*"; }
dump() {
    echo "---- codext-helper status, its journal, the units of uid $UID_ONE" >&2
    codext-helper status >&2 || true
    journalctl -u codext-helper -u codext-channel --no-pager -n 40 >&2 || true
    systemctl list-units --all --no-legend --plain | grep -E "$UID_ONE|codext" >&2 || true
    loginctl list-users --no-legend >&2 || true
}
fail() { echo "systemd tier FAILED [$SUITE $VERB]: $*" >&2; dump; exit 1; }
now_ms() { date +%s%3N; }
# poll SECONDS WHAT CMD...: runs CMD until it succeeds, at most SECONDS.
poll() {
    local limit=$1 what=$2; shift 2
    local end=$(( $(now_ms) + limit * 1000 ))
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$end" ] || fail "timed out after ${limit} s waiting for $what"
        sleep 0.05
    done
}
as_agent() { runuser -u agent -- env -i HOME=/opt/agent PATH=/usr/bin:/bin LC_ALL=C "$@"; }

# Issues a puzzle for the agent's key and arms its user (sets USER_NAME,
# PUZZLE). The uid range holds one uid: while its last holder is not
# forgotten (by the helper, or by logind for UserStopDelaySec= after the
# last session) issue refuses; waited for here, at most 30 s.
arm() {
    local end=$(( $(now_ms) + 30000 )) t0; t0=$(now_ms)
    until codext-helper issue --client-key /opt/agent/agent.key.pub --json > $T/issued.json 2> $T/issue.err; do
        grep -q 'no free uid' $T/issue.err || fail "issue: $(cat $T/issue.err)"
        [ "$(now_ms)" -lt "$end" ] || fail "issue refused for 30 s: $(cat $T/issue.err)"
        sleep 0.1
    done
    ARM_WAIT_MS=$(( $(now_ms) - t0 ))
    USER_NAME=$(sed -n 's/.*"user": "\(.*\)".*/\1/p' $T/issued.json)
    PUZZLE=$(sed -n 's/.*"puzzle": "\(.*\)".*/\1/p' $T/issued.json)
    local answer; answer=$(as_agent codext solve --key /opt/agent/agent.key --server-key /opt/agent/server.pub "$PUZZLE")
    codext-helper answer "$answer" >/dev/null
}
# ssh_login CMD: plain ssh as the armed user, running CMD.
ssh_login() {
    as_agent codext ssh --key /opt/agent/agent.key --server-key /opt/agent/server.pub \
        --host 127.0.0.1 --port 22 "$PUZZLE" -- "$1"
}
# A session kept open in the background until /run/codext-test-end-$USER
# exists (made by root: the test ends the session, the user cannot).
open_session() {
    local user=$1 extra=${2:-true}
    rm -f "/run/codext-test-end-$user" $T/session.out
    as_agent codext ssh --key /opt/agent/agent.key --server-key /opt/agent/server.pub \
        --host 127.0.0.1 --port 22 "$PUZZLE" -- \
        "$extra; echo session-ready; while [ ! -e /run/codext-test-end-$user ]; do sleep 0.2; done" \
        > $T/session.out 2>&1 < /dev/null &
    echo $! > $T/session.pid
    poll 30 "the session of $user to open" grep -qx session-ready $T/session.out
}
end_session() {
    local user=$1 pid; pid=$(cat $T/session.pid)
    touch "/run/codext-test-end-$user"
    local end=$(( $(now_ms) + 30000 ))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(now_ms)" -lt "$end" ] || fail "the ssh client of $user did not end"
        sleep 0.05
    done
    rm -f "/run/codext-test-end-$user"
}

# journald's files of UID that UID may still read: the one journald
# writes (it grants UID read access through an ACL) or any with bits for
# group or others (the ACL's mask); sealed ones are root's, 0600.
journal_files_open_to() {
    find /var/log/journal /run/log/journal \( -name "user-$1.journal" -o \( -name "user-$1@*" -perm /077 \) \) 2>/dev/null
}
# Everything of USER (uid UID) that must be gone after its logout. One
# predicate for poll: prints nothing, true when all is gone.
all_gone() {
    local user=$1 uid=$2
    ! getent passwd "$user" && ! getent passwd "$uid" && [ ! -e "/home/$user" ] \
        && [ ! -e "/run/user/$uid" ] && [ -z "$(ps -u "$uid" -o pid= 2>/dev/null)" ] \
        && ! systemctl list-units --all --no-legend --plain | grep -qE "(user@|user-runtime-dir@)$uid\.service|user-$uid\.slice" \
        && [ -z "$(loginctl list-sessions --no-legend | awk -v u="$uid" '$2 == u')" ] \
        && [ ! -e "/var/lib/systemd/linger/$user" ] \
        && [ -z "$(journal_files_open_to "$uid")" ] \
        && [ "$(codext-helper status)" = "no codext users" ]
}
# expect_gone USER UID SECONDS: all of it gone within SECONDS of now, then
# logind's record of the uid within UserStopDelaySec (10 s) + 5 s.
expect_gone() {
    local user=$1 uid=$2 limit=$3 t0; t0=$(now_ms)
    poll "$limit" "everything of $user (uid $uid) to be gone" all_gone "$user" "$uid"
    local t1; t1=$(now_ms)
    # (list-users, not show-user: the name no longer resolves)
    poll 20 "logind to forget uid $uid" bash -c "[ -z \"\$(loginctl list-users --no-legend | awk -v u=$uid '\$1 == u')\" ]"
    say "$user: account, home, /run/user/$uid, user@$uid.service, user-runtime-dir@$uid.service, user-$uid.slice, session scope, processes, linger flag gone and its journal files sealed $((t1 - t0)) ms after logout; logind's record after $(( $(now_ms) - t0 )) ms"
}

install_and_setup() {
    say "apt-get install ./codext_*.deb ./codext-agent_*.deb (offline: the tree holds every dependency)"
    apt-get install -y --no-install-recommends $T/codext_*_amd64.deb $T/codext-agent_*_amd64.deb > $T/apt.log 2>&1 \
        || { cat $T/apt.log; fail "install"; }
    for unit in codext-helper codext-channel; do
        cmp "/lib/systemd/system/$unit.service" "$T/packaged/$unit.service" \
            || fail "$unit.service on disk is not the packaged file"
        [ -z "$(systemctl show -p DropInPaths --value "$unit.service")" ] || fail "$unit.service has drop-ins"
    done
    useradd --create-home --home-dir /opt/agent --shell /bin/bash agent
    as_agent codext keygen --key /opt/agent/agent.key > /dev/null
    # One uid for every temporary user: each case's teardown meets the next holder.
    printf 'version = 1\n[accounts]\nuid_min = %s\nuid_max = %s\n' $UID_ONE $UID_ONE > /etc/codext/helper.toml
    say "codext-helper setup (it runs systemctl enable --now codext-helper itself under systemd)"
    codext-helper setup > $T/setup.log 2>&1 || { cat $T/setup.log; fail "setup"; }
    grep '^systemctl' $T/setup.log
    systemctl enable --now codext-helper.service
    systemctl is-active --quiet codext-helper.service || fail "codext-helper.service is not active"
    cp /etc/codext/server_key.pub /opt/agent/server.pub
    codext-helper doctor > $T/doctor.txt || { cat $T/doctor.txt; fail "doctor"; }
    # All ok, but the warning every stock Debian gets: the homes, /var/tmp
    # and /var/mail on the root file system without nosuid (mounts.nosuid).
    if grep -E '^(FAIL|warn)' $T/doctor.txt | grep -v '^warn mounts\.nosuid '; then fail "doctor is not all ok"; fi
    say "doctor: $(grep -c '^ok' $T/doctor.txt) checks ok, none fails, the one warning a stock Debian gets (mounts.nosuid); the unit as packaged is active: $(systemctl show -p ActiveState,SubState,Type,NRestarts --value codext-helper | tr '\n' ' ')"
}

case1_login() {
    arm
    say "case 1: a JIT login with plain ssh as $USER_NAME"
    local out
    out=$(ssh_login 'id -un; id -u; echo "session=$XDG_SESSION_ID"; test -d "/run/user/$(id -u)" && echo runtime-dir;
        for i in $(seq 100); do [ "$(systemctl show -p ActiveState --value "user@$(id -u).service")" = active ] && break; sleep 0.05; done
        echo "manager=$(systemctl show -p ActiveState --value "user@$(id -u).service")";
        echo "scope=$(systemctl show -p Id --value "session-$XDG_SESSION_ID.scope") $(systemctl show -p ActiveState --value "session-$XDG_SESSION_ID.scope")";
        loginctl show-user "$(id -u)" -p State') || fail "login"
    echo "$out" | sed 's/^/    /'
    [ "$(sed -n 1p <<<"$out")" = "$USER_NAME" ] && [ "$(sed -n 2p <<<"$out")" = $UID_ONE ] \
        || fail "expected $USER_NAME with uid $UID_ONE"
    grep -qx runtime-dir <<<"$out" && grep -qx manager=active <<<"$out" && grep -qE '^scope=session-.*\.scope active$' <<<"$out" \
        && grep -qx State=active <<<"$out" \
        || fail "the login had no logind session, /run/user/UID or user manager: nothing for teardown to end"
    expect_gone "$USER_NAME" $UID_ONE 10
}

# Case 2: the hostile user, then the next holder of its uid.
case2_hostile() {
    # journald keeps writing a uid's lines to the file it opened for an
    # earlier holder (sealed at that holder's teardown: root's alone) until
    # it rotates. Rotate (as journald does at its size and time limits),
    # so this holder's lines go to a fresh user-U.journal it may read: the
    # leak the seal must close.
    journalctl --rotate
    arm
    local pred=$USER_NAME
    say "case 2: $pred starts user services and timers, lingers, runs its own dbus-daemon, logs, keeps keys"
    ssh_login '
        set -u
        systemd-run --user --unit=codext-stay sleep 1000 2>&1
        systemd-run --user --on-calendar=minutely --unit=codext-tick touch /tmp/codext-tick 2>&1
        mkdir -p ~/.config/systemd/user
        printf "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=default.target\n" > ~/.config/systemd/user/codext-evil.service
        systemctl --user enable --now codext-evil.service 2>&1
        if loginctl enable-linger 2>&1; then echo "polkit: enable-linger allowed"; else echo "polkit: enable-linger refused"; fi
        echo "dbus: $(dbus-daemon --session --fork --print-address=1 --print-pid=1 | tr "\n" " ")"
        (trap "" TERM HUP INT; exec setsid sleep 1000 </dev/null >/dev/null 2>&1 &)
        logger -t codext-pred "codext-pred-marker-logger"
        echo "codext-pred-marker-cat" | systemd-cat -t codext-predcat
        echo "key-user=$(keyctl add user codext-pred secret-user @u)"
        echo "key-session=$(keyctl add user codext-pred-us secret-us @us)"
        echo "key-persistent=$(keyctl add user codext-pred-p secret-p "$(keyctl get_persistent @u)")"
        for i in $(seq 100); do journalctl --user --no-pager 2>/dev/null | grep -q codext-pred-marker-cat && break; sleep 0.05; done
        journalctl --user --no-pager 2>/dev/null | grep -c codext-pred-marker | sed "s/^/journal-lines-it-reads=/"
        echo "units: $(systemctl --user is-active codext-stay.service codext-tick.timer codext-evil.service | tr "\n" " ")"
        ls /var/lib/systemd/linger | sed "s/^/linger-flag=/"
        ps -u "$(id -u)" -o comm= | sort | tr "\n" " " | sed "s/^/processes: /"; echo
    ' > $T/pred.out 2>&1 || { cat $T/pred.out; fail "the hostile session"; }
    sed 's/^/    /' $T/pred.out
    grep -qx 'units: active active active ' $T/pred.out || fail "the user's units did not run: nothing to test"
    grep -qx 'journal-lines-it-reads=2' $T/pred.out || fail "the user could not read its own journal lines: nothing to test"
    local k_user k_session k_pers
    k_user=$(sed -n 's/^key-user=//p' $T/pred.out); k_session=$(sed -n 's/^key-session=//p' $T/pred.out)
    k_pers=$(sed -n 's/^key-persistent=//p' $T/pred.out)
    [ -n "$k_user" ] && [ -n "$k_session" ] && [ -n "$k_pers" ] || fail "keyctl add failed: nothing to test"
    if grep -q 'enable-linger allowed' $T/pred.out; then
        grep -qx "linger-flag=$pred" $T/pred.out || fail "polkit allowed linger but no flag was written"
    fi
    local rotations; rotations=$(find /var/log/journal /run/log/journal -name 'system@*.journal' 2>/dev/null | wc -l)
    expect_gone "$pred" $UID_ONE 10
    [ -z "$(ls -A /var/lib/systemd/linger 2>/dev/null)" ] || fail "/var/lib/systemd/linger: $(ls /var/lib/systemd/linger)"
    # The record stays for root: the sealed files are read by journalctl.
    [ "$(journalctl --no-pager -o cat _UID=$UID_ONE | grep -c codext-pred-marker)" = 2 ] \
        || fail "root no longer reads the predecessor's journal lines"

    arm
    say "case 2: the next holder of uid $UID_ONE, $USER_NAME (issue waited $ARM_WAIT_MS ms for logind to forget the uid)"
    [ "$USER_NAME" != "$pred" ] || fail "the same name twice"
    ssh_login "
        id -u
        echo units: \$(systemctl --user list-units --all --plain --no-legend 'codext-*' | wc -l)
        echo unit-files: \$(systemctl --user list-unit-files --no-legend 'codext-*' | wc -l)
        echo timers: \$(systemctl --user list-timers --all --no-legend | grep -c codext || true)
        echo journal: \$( (journalctl --user --no-pager; journalctl --no-pager _UID=$UID_ONE) 2>/dev/null | grep -c codext-pred || true)
        # Every key in its keyrings but the link from its user session
        # keyring to its user keyring, which the kernel makes for any uid.
        for r in @u @us \"\$(keyctl get_persistent @p)\"; do keyctl list \"\$r\"; done | grep -E '^ *[0-9]+:' | grep -v ' keyring: _uid\.$UID_ONE\$' | sed 's/^/key: /'
        for k in $k_user $k_session $k_pers; do keyctl print \$k >/dev/null 2>&1 && echo \"key \$k still readable\"; done
        echo linger: \$(ls /var/lib/systemd/linger)
        echo logind-name: \$(loginctl show-user \"\$(id -u)\" -p Name --value)
        echo dbus: \$(ls /tmp | grep -c dbus- || true)
    " > $T/next.out 2>&1 || { cat $T/next.out; fail "the next holder's session"; }
    sed 's/^/    /' $T/next.out
    local now; now=$(find /var/log/journal /run/log/journal -name 'system@*.journal' 2>/dev/null | wc -l)
    [ "$now" = "$rotations" ] || fail "the system journal was rotated ($rotations -> $now archives) by the teardown or the next holder's lines"
    say "root still reads the predecessor's 2 lines in the sealed file; the system journal was not rotated ($now archives)"
    local want
    want=$(printf '%s\n' $UID_ONE 'units: 0' 'unit-files: 0' 'timers: 0' 'journal: 0' 'linger:' "logind-name: $USER_NAME" 'dbus: 0')
    [ "$(cat $T/next.out)" = "$want" ] || { diff <(echo "$want") $T/next.out; fail "the next holder sees something of its predecessor"; }
    expect_gone "$USER_NAME" $UID_ONE 10
}

case3_unit() {
    local nr
    say "case 3a: systemctl kill -s KILL codext-helper during a session"
    arm; open_session "$USER_NAME"
    nr=$(systemctl show -p NRestarts --value codext-helper)
    systemctl kill -s KILL codext-helper.service
    poll 30 "systemd to restart the helper" bash -c "[ \$(systemctl show -p NRestarts --value codext-helper) -gt $nr ] && systemctl is-active --quiet codext-helper && codext-helper doctor | grep -q '^ok *helper '"
    say "restarted by systemd (NRestarts $nr -> $(systemctl show -p NRestarts --value codext-helper)); $USER_NAME still logged in: $(codext-helper status | grep -c "$USER_NAME") line(s) in status"
    end_session "$USER_NAME"
    expect_gone "$USER_NAME" $UID_ONE 60

    say "case 3b: systemctl restart codext-helper with a live session"
    arm; open_session "$USER_NAME"
    systemctl restart codext-helper.service
    systemctl is-active --quiet codext-helper || fail "not active after restart"
    getent passwd "$USER_NAME" >/dev/null || fail "the restart removed a live session's account"
    end_session "$USER_NAME"
    expect_gone "$USER_NAME" $UID_ONE 60

    say "case 3c: Type=notify: a login while the helper is down fails closed; after start returns, it answers"
    [ "$(systemctl show -p Type --value codext-helper)" = notify ] || fail "Type is not notify"
    systemctl show -p Before --value codext-helper | tr ' ' '\n' | grep -qx ssh.service || fail "not Before=ssh.service"
    arm
    systemctl stop codext-helper.service
    if ssh_login 'echo logged-in' > $T/down.out 2>&1; then cat $T/down.out; fail "a login succeeded with the helper down"; fi
    # (getent would answer: the armed user is announced through /run/userdb)
    grep -q "^$USER_NAME:" /etc/passwd && fail "an account was made with the helper down"
    say "with the helper stopped the login was refused ($(tail -n 1 $T/down.out)); no account"
    systemctl start codext-helper.service
    # No wait here: start returns only after READY=1, sent once the socket listens.
    codext-helper doctor | grep '^ok *helper ' || fail "systemctl start returned before the helper answered"
    # OpenSSH >= 9.8 (Debian 13) penalises the source of a failed login
    # (PerSourcePenalties): the next attempt may be refused for seconds.
    poll 30 "the armed user to log in after the start" bash -c "$(declare -f as_agent ssh_login); PUZZLE='$PUZZLE' ssh_login 'id -un' | grep -qx '$USER_NAME'"
    expect_gone "$USER_NAME" $UID_ONE 10
}

# Before the host's hard reboot: a live session of a user that lingers and
# enabled a user unit, so at boot logind starts its manager, which starts
# that unit: the orphan the helper must reap.
reboot_prepare() {
    arm
    say "case 3d: $USER_NAME lingers, enables a user unit and stays logged in; then a hard reboot (no logout)"
    open_session "$USER_NAME" 'mkdir -p ~/.config/systemd/user; printf "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=default.target\n" > ~/.config/systemd/user/codext-boot.service; systemctl --user enable codext-boot.service >/dev/null 2>&1; loginctl enable-linger; keyctl add user codext-boot secret @u >/dev/null'
    echo "$USER_NAME" > $T/reboot.user
    getent passwd "$USER_NAME" > /dev/null || fail "no account before the reboot"
    ls /var/lib/systemd/linger | sed 's/^/    linger flag: /'
}

reboot_check() {
    local user; user=$(cat $T/reboot.user)
    say "case 3d: after the reboot: the orphan $user reaped at boot"
    systemctl is-active --quiet codext-helper || fail "codext-helper is not active after the reboot (226/NAMESPACE?)"
    [ "$(systemctl show -p NRestarts --value codext-helper)" = 0 ] || fail "the helper restarted at boot"
    local ready ssh_start
    ready=$(systemctl show -p ActiveEnterTimestampMonotonic --value codext-helper)
    ssh_start=$(systemctl show -p ExecMainStartTimestampMonotonic --value ssh)
    [ "$ready" -gt 0 ] && [ "$ssh_start" -ge "$ready" ] || fail "sshd started ($ssh_start) before the helper was ready ($ready)"
    say "boot order: the helper ready at ${ready} us, sshd started at ${ssh_start} us (monotonic)"
    poll 60 "the orphan $user to be reaped" all_gone "$user" $UID_ONE
    journalctl -b --no-pager -o cat CODEXT_EVENT=orphan | grep -q . || fail "no orphan event in this boot's journal"
    if journalctl -b --no-pager -o cat | grep -q 'Started.*user@59000.service\|codext-boot'; then
        say "logind had started the lingering user's manager at boot; the helper ended it"
    fi
    say "reaped: $(journalctl -b --no-pager -o cat CODEXT_EVENT=orphan | tail -n 1)"
    expect_gone "$user" $UID_ONE 5
}

case4_channel() {
    say "case 4: codext-channel.service as packaged, the token through LoadCredential=, the emulator on 192.0.2.1"
    # The channel unit denies localhost (IPAddressDeny=localhost: 127.0.0.0/8
    # and ::1), enforced here (bpf is allowed to the container): the
    # emulator listens on a second address of the container's loopback
    # device, in its own network namespace (192.0.2.1, TEST-NET-1).
    ip addr add 192.0.2.1/32 dev lo
    local server_token=dop_v1_systemd_tier_server_00000000000000000000000000000000000000000
    local agent_token=dop_v1_systemd_tier_agent_000000000000000000000000000000000000000000
    local api=http://192.0.2.1:8080
    systemd-run --quiet --unit=codext-do-emulator -p DynamicUser=yes -E DO_OPENAPI_SPEC=$T/openapi.json \
        $T/do-emulator --listen 192.0.2.1:8080 --token "$server_token" --token "$agent_token" --droplet web-1:127.0.0.1:prod
    poll 30 "the emulator" bash -c "journalctl -u codext-do-emulator -o cat | grep -q '^listening'"
    local droplet; droplet=$(journalctl -u codext-do-emulator -o cat | sed -n 's/^listening .* droplet=\([0-9]*\)$/\1/p')
    [ -n "$droplet" ] || fail "no droplet id from the emulator"
    local fp; fp=$(as_agent codext keygen --key /opt/agent/do.key | sed -n 's/^fingerprint: //p')
    install -m 0600 /dev/null /etc/codext/digitalocean.token
    printf '%s\n' "$server_token" > /etc/codext/digitalocean.token
    cat >> /etc/codext/helper.toml <<EOF
[digitalocean]
enabled = true
api_url = "$api"
droplet_id = $droplet
allowed_keys = ["$fp"]
EOF
    systemctl restart codext-helper && systemctl enable --now codext-channel
    poll 30 "the channel to watch the droplet" bash -c "journalctl -u codext-channel -o cat | grep -q 'watching droplet'"
    [ "$(ps -o user= -p "$(systemctl show -p MainPID --value codext-channel)")" = codext-channel ] || fail "the channel does not run as codext-channel"
    codext-helper doctor > $T/doctor.do.txt || { cat $T/doctor.do.txt; fail "doctor with the channel on"; }
    if grep -E '^(FAIL|warn)' $T/doctor.do.txt | grep -v '^warn mounts\.nosuid '; then fail "doctor with the channel on is not all ok"; fi
    grep '^ok *digitalocean' $T/doctor.do.txt | sed 's/^/    /'
    as_agent env DIGITALOCEAN_TOKEN="$agent_token" codext publish-key --key /opt/agent/do.key --api-url "$api" > /dev/null
    local t0 out; t0=$(now_ms)
    out=$(as_agent env DIGITALOCEAN_TOKEN="$agent_token" codext connect --droplet "$droplet" --key /opt/agent/do.key \
        --server-key /opt/agent/server.pub --api-url "$api" --port 22 --timeout 120s -- 'id -un; echo ran-a-command') \
        || fail "codext connect"
    local user=${out%%$'\n'*}
    [[ "$user" =~ ^user-[0-9a-f]+$ ]] && grep -qx ran-a-command <<<"$out" || fail "connect: $out"
    say "a shell as $user through the DigitalOcean channel in $(( $(now_ms) - t0 )) ms"
    expect_gone "$user" $UID_ONE 10

    local pid; pid=$(systemctl show -p MainPID --value codext-channel)
    # A shell moved into the channel's cgroup is under the unit's IP
    # firewall (IPAddressDeny=localhost, BPF): the API's address answers,
    # sshd on 127.0.0.1 does not.
    local cg; cg=$(awk -F: '$1 == "0" {print $3}' "/proc/$pid/cgroup")
    in_channel_cgroup() { bash -c "echo \$\$ > '/sys/fs/cgroup$cg/cgroup.procs' && exec timeout 5 bash -c 'exec 3<>/dev/tcp/$1/$2'" 2>/dev/null; }
    in_channel_cgroup 192.0.2.1 8080 || fail "from the channel's cgroup the emulator does not answer"
    if in_channel_cgroup 127.0.0.1 22; then fail "from the channel's cgroup 127.0.0.1:22 answers: IPAddressDeny= is not enforced"; fi
    say "case 4: in the channel's cgroup 192.0.2.1:8080 answers and 127.0.0.1:22 does not (IPAddressDeny=localhost enforced)"

    say "case 4: inside the channel's sandbox (its own mount namespace, entered), the helper's state, keys and audit trail are out of reach"
    local cuid cgid; cuid=$(id -u codext-channel); cgid=$(id -g codext-channel)
    for path in /etc/codext/server_key /etc/codext/digitalocean.token /var/lib/codext/state.json /var/lib/codext/setup.json \
                /var/log/codext/audit.jsonl /run/codext/helper.sock; do
        [ -e "$path" ] || fail "$path does not exist outside the sandbox: the check would prove nothing"
        # As root inside the namespace: InaccessiblePaths=, not the file's
        # mode, is what stops it (root may read any file).
        if nsenter -t "$pid" -m -- cat "$path" > /dev/null 2> $T/ns.err; then fail "root inside the channel's namespace reads $path"; fi
        if nsenter -t "$pid" -m -S "$cuid" -G "$cgid" -- cat "$path" > /dev/null 2>&1; then fail "the channel user reads $path"; fi
        echo "    $path, as root in the channel's mount namespace: $(sed 's/^cat: //' $T/ns.err)"
    done
    for dir in /etc/codext /var/lib/codext /var/log/codext /run/codext; do
        if nsenter -t "$pid" -m -- ls -A "$dir" > $T/ns.out 2> $T/ns.err && [ -s $T/ns.out ]; then
            fail "root inside the channel's namespace lists $dir: $(cat $T/ns.out)"
        fi
        echo "    ls -A $dir, as root in the channel's mount namespace: $(cat $T/ns.err $T/ns.out | head -n 1 | grep . || echo '(an empty, inaccessible folder)')"
    done
    [ "$(stat -c '%U %a' /etc/codext/digitalocean.token)" = "root 600" ] || fail "the token file is not root's 0600"
    local cred; cred=$(nsenter -t "$pid" -m -- stat -c '%U %a %n' /run/credentials/codext-channel.service/digitalocean.token) \
        || fail "no credential in the channel's namespace"
    say "the token reaches the channel only as its credential: $cred"
    systemctl disable --now codext-channel
    systemctl stop codext-do-emulator
    sed -i '/^\[digitalocean\]/,$d' /etc/codext/helper.toml
    systemctl restart codext-helper
}

case5_analyze() {
    say "case 5: systemd-analyze security of both units as packaged"
    local unit limit score
    for pair in codext-helper:3.0 codext-channel:2.0; do
        unit=${pair%%:*}; limit=${pair#*:}
        LC_ALL=C.UTF-8 systemd-analyze security --no-pager "$unit.service" > $T/analyze.$unit.txt 2>&1 || true
        { grep -E '^✗' $T/analyze.$unit.txt || true; } | sed 's/^/    /'
        score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p' $T/analyze.$unit.txt)
        [ -n "$score" ] || { cat $T/analyze.$unit.txt; fail "no exposure level for $unit"; }
        say "$unit.service: exposure $score (target <= $limit)"
        awk -v s="$score" -v l="$limit" 'BEGIN{exit !(s <= l)}' || fail "$unit.service exposure $score > $limit"
    done
}

case6_journal() {
    say "case 6: the audit lines in the journal, by their CODEXT_* fields"
    local n; n=$(journalctl --no-pager -o cat CODEXT_EVENT=create | wc -l)
    if [ "$n" -lt 5 ]; then
        journalctl --list-boots --no-pager >&2 || true
        ls -la /var/log/journal/*/ >&2 || true
        echo "create events: $(grep -c '"event":"create"' /var/log/codext/audit.jsonl) in the audit trail, $(journalctl --no-pager -o export | grep -c '^CODEXT_EVENT=create$') in journalctl -o export" >&2
        journalctl --verify >&2 || true
        fail "journalctl CODEXT_EVENT=create: $n lines"
    fi
    journalctl --no-pager -o json CODEXT_EVENT=create -n 1 > $T/create.json
    for field in CODEXT_USER CODEXT_UID CODEXT_SEQ CODEXT_HASH CODEXT_PREV CODEXT_TIME; do
        grep -q "\"$field\":" $T/create.json || fail "no $field in the journal's create entry: $(cat $T/create.json)"
    done
    local last; last=$(sed -n 's/.*"CODEXT_USER":"\([^"]*\)".*/\1/p' $T/create.json)
    journalctl --no-pager -o cat CODEXT_EVENT=remove CODEXT_USER="$last" CODEXT_RESULT=ok | grep -q . \
        || fail "no remove entry with CODEXT_RESULT=ok for $last"
    say "journalctl CODEXT_EVENT=create: $n entries; the last: $(journalctl --no-pager -o cat CODEXT_EVENT=create -n 1)"
    say "journalctl CODEXT_EVENT=remove CODEXT_USER=$last CODEXT_RESULT=ok: $(journalctl --no-pager -o cat CODEXT_EVENT=remove CODEXT_USER="$last" | tail -n 1)"
}

case "$VERB" in
    setup) install_and_setup ;;
    case1) case1_login ;;
    case2) case2_hostile ;;
    case3) case3_unit ;;
    reboot-prepare) reboot_prepare ;;
    reboot-check) reboot_check ;;
    case4) case4_channel ;;
    case5) case5_analyze ;;
    case6) case6_journal ;;
    *) echo "usage: $0 SUITE setup|case1|case2|case3|reboot-prepare|reboot-check|case4|case5|case6" >&2; exit 2 ;;
esac

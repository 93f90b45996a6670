#!/usr/bin/env bash
# Runs inside codext-sandbox (see demo.sh): every change below lands in
# scratch copies that vanish when the demo ends.
set -euo pipefail
REPO="$1"
B="$REPO/target/debug"
D=/run/demo
mkdir -p "$D/bin" && chmod 755 "$D" "$D/bin"
cp "$B/codext" "$D/bin/" && chmod 755 "$D/bin/codext"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }
as_agent() { runuser -u agent -- env -i HOME=/home/agent PATH=/usr/bin:/bin "$@"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "timed out waiting for $what" >&2; exit 1
}

say "1. The operator wires codext into sshd with one command (PAM lines, sshd drop-in, limits, at/cron rules, server key, group)"
show "codext-helper setup --data-dir pam.d --module target/debug/libpam_codext.so"
"$B/codext-helper" setup --data-dir "$REPO/pam.d" --module "$B/libpam_codext.so" | grep -v '^[-+@ ]'
show "grep -v '^#' /etc/pam.d/sshd | grep codext"
grep -v '^#' /etc/pam.d/sshd | grep codext

say "2. The daemon and sshd start; codext-helper doctor checks the whole host"
"$B/codext-helper" serve 2>"$D/helper.log" &
HELPER_PID=$!
/usr/sbin/sshd -D -e 2>"$D/sshd.log" &
SSHD_PID=$!
wait_for 10 "the helper" test -S /run/codext/helper.sock
wait_for 10 "sshd" bash -c 'exec 3<>/dev/tcp/127.0.0.1/22'
show "codext-helper doctor"
"$B/codext-helper" doctor
echo "(codext-helper serve and sshd are running)"

say "3. The agent, an unprivileged user, makes its key and pins the server's"
useradd --create-home --shell /bin/bash agent
cp /etc/codext/server_key.pub /home/agent/server.pub && chown agent: /home/agent/server.pub
show "codext keygen --key ~/agent.key"
as_agent "$D/bin/codext" keygen --key /home/agent/agent.key

say "4. The server issues a puzzle for that key (manual channel)"
show "codext-helper issue --client-key ~agent/agent.key.pub --json"
"$B/codext-helper" issue --client-key /home/agent/agent.key.pub --json > "$D/issued.json"
USER_NAME=$(sed -n 's/.*"user": "\(.*\)".*/\1/p' "$D/issued.json")
PUZZLE=$(sed -n 's/.*"puzzle": "\(.*\)".*/\1/p' "$D/issued.json")
echo "user:   $USER_NAME"
echo "puzzle: ${PUZZLE:0:72}… (${#PUZZLE} characters)"
show "getent passwd $USER_NAME"
getent passwd "$USER_NAME" || echo "(does not resolve: nobody can log in as it yet)"

say "5. The agent verifies the signature, decrypts, and answers with a proof"
show "codext solve --key ~/agent.key --server-key ~/server.pub PUZZLE"
ANSWER=$(as_agent "$D/bin/codext" solve --key /home/agent/agent.key --server-key /home/agent/server.pub "$PUZZLE")
echo "$ANSWER"

say "6. The answer comes back (by hand here): the user is armed"
show "codext-helper answer $ANSWER"
"$B/codext-helper" answer "$ANSWER"
show "getent passwd $USER_NAME"
getent passwd "$USER_NAME"

say "7. The agent logs in with plain ssh (token from memory, host keys checked against the puzzle)"
show "codext ssh --key ~/agent.key --server-key ~/server.pub --host 127.0.0.1 PUZZLE -- 'id; ls -ld \$HOME'"
as_agent "$D/bin/codext" ssh --key /home/agent/agent.key --server-key /home/agent/server.pub \
    --host 127.0.0.1 "$PUZZLE" -- 'id; ls -ld $HOME; nohup sleep 600 >/dev/null 2>&1 </dev/null & echo "left a background process running"'

say "8. After logout: account, home and processes are gone"
UID_NUM=$(sed -n 's/.*"uid": \([0-9]*\).*/\1/p' "$D/issued.json")
wait_for 30 "the removal" bash -c "! getent passwd $USER_NAME && ! test -d /home/$USER_NAME && ! pgrep -u $UID_NUM"
show "getent passwd $USER_NAME; ls /home; pgrep -u $UID_NUM"
getent passwd "$USER_NAME" || echo "(no such user)"
ls /home
pgrep -u "$UID_NUM" || echo "(no process of uid $UID_NUM)"
show "codext-helper audit verify"
"$B/codext-helper" audit verify
show "cut -c1-110 /var/log/codext/audit.jsonl"
cut -c1-110 /var/log/codext/audit.jsonl

say "Part two: the same through the DigitalOcean API (a local emulator of it, no account needed)"
SERVER_TOKEN=dop_v1_demo_server_token_0000000000000000000000000000000000000000
AGENT_TOKEN=dop_v1_demo_agent_token_00000000000000000000000000000000000000000
"$B/do-emulator" --listen 127.0.0.1:8080 --token "$SERVER_TOKEN" --token "$AGENT_TOKEN" \
    --droplet web-1:127.0.0.1:prod > "$D/emulator.out" 2>"$D/emulator.log" &
wait_for 10 "the emulator" grep -q listening "$D/emulator.out"
DROPLET=$(sed -n 's/.*droplet=\([0-9]*\).*/\1/p' "$D/emulator.out")
echo "emulated droplet $DROPLET (web-1, 127.0.0.1, tags: prod)"

say "9. The operator enables the channel and allows the agent's key"
AGENT_FP=$(as_agent "$D/bin/codext" keygen --key /home/agent/do.key | sed -n 's/^fingerprint: //p')
umask 077
printf '%s\n' "$SERVER_TOKEN" > /etc/codext/digitalocean.token
cat > /etc/codext/helper.toml <<TOML
version = 1
[digitalocean]
enabled = true
api_url = "http://127.0.0.1:8080"
metadata_url = "http://127.0.0.1:8080/metadata/v1"
allowed_keys = ["$AGENT_FP"]
TOML
umask 022
cat /etc/codext/helper.toml
kill "$HELPER_PID"; wait "$HELPER_PID" 2>/dev/null || true
"$B/codext-helper" serve 2>>"$D/helper.log" &
HELPER_PID=$!
wait_for 10 "the helper" test -S /run/codext/helper.sock

say "9b. The channel process starts: the only part that talks to the API, as the unprivileged user codext-channel"
# What codext-channel.service does (systemd is not PID 1 here): the token in
# a credentials folder only that user can read (LoadCredential=), no
# capabilities, no_new_privs.
cp "$B/codext-channel" "$D/bin/" && chmod 755 "$D/bin/codext-channel"
mkdir -m 0700 "$D/channel-credentials"
install -m 0600 /etc/codext/digitalocean.token "$D/channel-credentials/digitalocean.token"
chown -R codext-channel: "$D/channel-credentials"
show "setpriv --reuid=codext-channel … codext-channel   (CREDENTIALS_DIRECTORY holds the token)"
setpriv --reuid=codext-channel --regid=codext-channel --clear-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all \
    env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$D/channel-credentials" \
    "$D/bin/codext-channel" 2>"$D/channel.log" &
CHANNEL_PID=$!
wait_for 20 "the channel process" grep -q 'watching droplet' "$D/channel.log"
cat "$D/channel.log"

say "10. The agent publishes its key, then connects: request, puzzle, answer, ssh"
printf '%s' "$AGENT_TOKEN" > /home/agent/do.token && chown agent: /home/agent/do.token && chmod 600 /home/agent/do.token
show "DIGITALOCEAN_TOKEN=… codext publish-key --key ~/do.key"
as_agent DIGITALOCEAN_TOKEN="$AGENT_TOKEN" "$D/bin/codext" publish-key --key /home/agent/do.key --api-url http://127.0.0.1:8080
show "codext connect --droplet $DROPLET --key ~/do.key --server-key ~/server.pub -- 'id -un; hostname'"
as_agent DIGITALOCEAN_TOKEN="$AGENT_TOKEN" "$D/bin/codext" connect --droplet "$DROPLET" --key /home/agent/do.key \
    --server-key /home/agent/server.pub --api-url http://127.0.0.1:8080 -- 'id -un; echo "logged in through the DigitalOcean channel"'

say "11. Afterwards: the account is gone and the droplet's tags are what they were"
droplet_tags() { as_agent DIGITALOCEAN_TOKEN="$AGENT_TOKEN" "$D/bin/codext" droplet --droplet "$DROPLET" --api-url http://127.0.0.1:8080; }
tags_neutral() { droplet_tags | grep -qx 'tags: prod'; }
wait_for 60 "the droplet's tags to be neutral" tags_neutral
show "codext droplet --droplet $DROPLET"
droplet_tags
no_user_left() { ! grep -q '^user-' /etc/passwd; }
wait_for 30 "the removal" no_user_left
grep '^user-' /etc/passwd || echo "(no user-* account left)"
show "API calls per token (emulator's record)"
curl -s http://127.0.0.1:8080/_emulator/calls | grep -o '"token":"[^"]*"' | sort | uniq -c | sed "s/$SERVER_TOKEN/server/; s/$AGENT_TOKEN/agent/"
show "curl -s http://127.0.0.1:8080/_emulator/violations"
curl -s http://127.0.0.1:8080/_emulator/violations; echo

say "Part three: a container grant — every session lands in a container started for the grant"
# A private dockerd inside the sandbox (its data on the sandbox's scratch
# /var/lib, its socket in the sandbox's /run), and a small workspace image
# built from the debootstrapped bookworm scripts/docker-test.sh caches plus
# this machine's git, rsync, scp and sftp-server: no registry.
DEMO_CGROUP=codext-demo-$$
if command -v dockerd >/dev/null 2>&1 && [ -s /var/cache/codext-test/bookworm-minbase.tar ]; then
    dockerd --data-root /var/lib/docker --exec-root /run/docker-exec -H unix:///run/docker.sock \
        --pidfile /run/dockerd.pid --storage-driver=overlay2 --bridge=none --iptables=false \
        --ip6tables=false --ip-masq=false --cgroup-parent="/$DEMO_CGROUP" > "$D/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    stop_docker() {
        DOCKER_HOST=unix:///run/docker.sock /usr/bin/docker ps -aq | xargs -r env DOCKER_HOST=unix:///run/docker.sock /usr/bin/docker rm -f >/dev/null 2>&1 || true
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
        rmdir /sys/fs/cgroup/*/"$DEMO_CGROUP" 2>/dev/null || true
    }
    trap stop_docker EXIT
    export DOCKER_HOST=unix:///run/docker.sock
    wait_for 60 "dockerd" /usr/bin/docker info
    show "scripts/workspace-image.sh codext-workspace:demo"
    TMPDIR=/var/tmp "$REPO/scripts/workspace-image.sh" codext-workspace:demo
    cat > /etc/codext/helper.toml <<TOML
version = 1
[profiles.ws]
kind = "container"
image = "codext-workspace:demo"
shell = "/bin/bash"
memory_mb = 512
disk_mb = 128
pids = 128
TOML
    show "cat /etc/codext/helper.toml"
    cat /etc/codext/helper.toml
    kill "$CHANNEL_PID" "$HELPER_PID" 2>/dev/null || true
    wait "$HELPER_PID" 2>/dev/null || true
    show "codext-helper setup   (writes the gated profiles' sshd drop-in, makes their groups)"
    "$B/codext-helper" setup --data-dir "$REPO/pam.d" --module "$B/libpam_codext.so" | grep -E 'codext-profiles|created|no file' || true
    grep -v '^#' /etc/ssh/sshd_config.d/00-codext-profiles.conf | sed '/^$/d'
    # sshd -D re-executes itself on SIGHUP and reads the new drop-in.
    kill -HUP "$SSHD_PID"
    sleep 0.5
    wait_for 10 "sshd" bash -c 'exec 3<>/dev/tcp/127.0.0.1/22'
    "$B/codext-helper" serve 2>>"$D/helper.log" &
    HELPER_PID=$!
    wait_for 10 "the helper" test -S /run/codext/helper.sock
    say "The operator issues a grant of the profile ws; the agent solves it and opens the task"
    show "codext-helper issue --client-key ~agent/agent.key.pub --profile ws --json"
    "$B/codext-helper" issue --client-key /home/agent/agent.key.pub --profile ws --json > "$D/issued-ws.json"
    WS_USER=$(sed -n 's/.*"user": "\(.*\)".*/\1/p' "$D/issued-ws.json")
    WS_PUZZLE=$(sed -n 's/.*"puzzle": "\(.*\)".*/\1/p' "$D/issued-ws.json")
    WS_ANSWER=$(as_agent "$D/bin/codext" solve --key /home/agent/agent.key --server-key /home/agent/server.pub --profile ws "$WS_PUZZLE")
    "$B/codext-helper" answer "$WS_ANSWER"
    show "codext open --profile ws --name gpu … PUZZLE"
    as_agent "$D/bin/codext" open --key /home/agent/agent.key --server-key /home/agent/server.pub \
        --host 127.0.0.1 --name gpu --profile ws "$WS_PUZZLE"
    say "Every session of the grant lands inside its container"
    show "ssh codext-gpu 'id; hostname; pwd; grep -E \"^(CapEff|NoNewPrivs)\" /proc/self/status; df -h /workspace | tail -1'"
    as_agent ssh codext-gpu 'id; hostname; pwd; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status; df -h /workspace | tail -1'
    as_agent sh -c 'cd /home/agent && echo "hello from the agent" > note.txt && scp -q note.txt codext-gpu:note.txt'
    show "scp note.txt codext-gpu:  then  ssh codext-gpu 'cat note.txt; ls -l'"
    as_agent ssh codext-gpu 'cat note.txt; ls -l'
    show "docker ps   (on the host, as root: the grant's container)"
    /usr/bin/docker ps --format '{{.Names}}  {{.Image}}  user {{.Label "codext.user"}}  {{.Status}}'
    say "codext close: the container goes with the account"
    as_agent "$D/bin/codext" close gpu
    wait_for 30 "the removal" bash -c "! getent passwd $WS_USER && [ -z \"\$(/usr/bin/docker ps -aq)\" ]"
    show "docker ps -a; getent passwd $WS_USER"
    /usr/bin/docker ps -a --format '{{.Names}}' | grep . || echo "(no container left)"
    getent passwd "$WS_USER" || echo "(no such user)"
    show "grep -E 'container|gate' /var/log/codext/audit.jsonl | cut -c1-150"
    grep -E '"event":"(container|gate)"' /var/log/codext/audit.jsonl | cut -c1-150
else
    echo "(skipped: dockerd or the debootstrapped base /var/cache/codext-test/bookworm-minbase.tar is missing; scripts/docker-test.sh makes the latter)"
fi

say "Done. The sandbox now disappears with everything it changed."

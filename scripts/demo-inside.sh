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

say "1. The operator installs codext into sshd (PAM stack + sshd drop-in)"
sed "s# pam_codext.so# $B/libpam_codext.so#" "$REPO/pam.d/codext" > /etc/pam.d/codext
sed "s# pam_codext.so# $B/libpam_codext.so#" "$REPO/pam.d/codext-session" > /etc/pam.d/codext-session
sed -i '1i @include codext' /etc/pam.d/sshd
sed -i '/pam_selinux.so open/i @include codext-session' /etc/pam.d/sshd
cp "$REPO/pam.d/sshd_config.d/codext.conf" /etc/ssh/sshd_config.d/codext.conf
show "grep -v '^#' /etc/pam.d/sshd | grep codext"
grep -v '^#' /etc/pam.d/sshd | grep codext

say "2. codext-helper init: server key (RSA-4096), group, state"
show "codext-helper init"
"$B/codext-helper" init
"$B/codext-helper" serve 2>"$D/helper.log" &
/usr/sbin/sshd -D -e 2>"$D/sshd.log" &
wait_for 10 "the helper" test -S /run/codext/helper.sock
wait_for 10 "sshd" bash -c 'exec 3<>/dev/tcp/127.0.0.1/22'
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

say "Done. The sandbox now disappears with everything it changed."

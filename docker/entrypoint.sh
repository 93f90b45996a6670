#!/bin/sh
# The server container's entrypoint: host keys for this container, then the
# helper and sshd (on 127.0.0.1:$SSH_PORT, default 2222: the container
# shares the host's network). The container stops when either exits.
set -eu
port="${SSH_PORT:-2222}"
ssh-keygen -A >/dev/null
# /run/codext is the helper's to make (root's, 0700: doctor checks it).
mkdir -p /run/sshd /run/userdb
chmod 0755 /run/sshd /run/userdb
codext-helper serve &
helper=$!
for _ in $(seq 100); do [ -S /run/codext/helper.sock ] && break; sleep 0.1; done
/usr/sbin/sshd -D -e -o "ListenAddress=127.0.0.1:$port" &
sshd=$!
trap 'kill "$helper" "$sshd" 2>/dev/null || true' INT TERM
echo "codext server: helper pid $helper, sshd pid $sshd on 127.0.0.1:$port"
# Wait for the first to exit (POSIX sh: poll), then stop the other.
while kill -0 "$helper" 2>/dev/null && kill -0 "$sshd" 2>/dev/null; do sleep 1; done
kill "$helper" "$sshd" 2>/dev/null || true
wait
exit 1

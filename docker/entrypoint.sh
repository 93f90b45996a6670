#!/bin/sh
# The server container's entrypoint: host keys for this container, then the
# helper and sshd (on 127.0.0.1:$SSH_PORT, default 2222: the container
# shares the host's network). The container stops when any of them exits.
#
# The DigitalOcean channel, when CODEXT_DO_API_URL is set (compose.yaml's
# `server-do` points it at the emulator):
#   CODEXT_DO_API_URL       API base URL
#   CODEXT_DO_METADATA_URL  metadata service (default: the droplet's own,
#                           http://169.254.169.254/metadata/v1)
#   CODEXT_DO_DROPLET_ID    this droplet's id (default 0: ask the metadata service)
#   CODEXT_DO_ALLOWED_KEYS  agent key fingerprints (SHA256:…) that may ask for
#                           a puzzle, separated by spaces or commas; none: the
#                           channel runs, and no request gets a puzzle
#   CODEXT_DO_TOKEN         the server's API token, unless the file
#                           /run/secrets/digitalocean_token holds it
# Then the [digitalocean] section is written into /etc/codext/helper.toml,
# the token into /etc/codext/digitalocean.token (root's, 0600), and
# codext-channel runs as its unprivileged user, with the token in a
# credentials folder only that user can read, as codext-channel.service's
# LoadCredential= gives it (no systemd here: setpriv drops every capability
# and sets no_new_privs, as the unit does; the unit's other sandboxing has
# no equivalent here).
set -eu
port="${SSH_PORT:-2222}"
ssh-keygen -A >/dev/null
# /run/codext is the helper's to make (root's, 0700: doctor checks it).
mkdir -p /run/sshd /run/userdb
chmod 0755 /run/sshd /run/userdb

channel=
if [ -n "${CODEXT_DO_API_URL:-}" ]; then
    if [ -s /run/secrets/digitalocean_token ]; then
        token=$(cat /run/secrets/digitalocean_token)
    else
        token="${CODEXT_DO_TOKEN:?CODEXT_DO_API_URL is set: the API token is needed (CODEXT_DO_TOKEN or /run/secrets/digitalocean_token)}"
    fi
    (umask 077; printf '%s\n' "$token" > /etc/codext/digitalocean.token)
    keys=
    for k in $(printf '%s' "${CODEXT_DO_ALLOWED_KEYS:-}" | tr ',' ' '); do
        keys="${keys:+$keys, }\"$k\""
    done
    # Between markers, so that a restarted container replaces it.
    sed -i '/^# >>> docker\/entrypoint.sh/,/^# <<< docker\/entrypoint.sh/d' /etc/codext/helper.toml
    cat >> /etc/codext/helper.toml <<EOF
# >>> docker/entrypoint.sh (from CODEXT_DO_*; rewritten at each start)
[digitalocean]
enabled = true
api_url = "$CODEXT_DO_API_URL"
metadata_url = "${CODEXT_DO_METADATA_URL:-http://169.254.169.254/metadata/v1}"
droplet_id = ${CODEXT_DO_DROPLET_ID:-0}
allowed_keys = [$keys]
# <<< docker/entrypoint.sh
EOF
    [ -n "$keys" ] || echo "codext server: no agent key allowed (CODEXT_DO_ALLOWED_KEYS): no request will get a puzzle"
    creds=/run/codext-channel-credentials
    rm -rf "$creds"
    mkdir -m 0700 "$creds"
    (umask 077; printf '%s\n' "$token" > "$creds/digitalocean.token")
    chown -R codext-channel:codext-channel "$creds"
    unset token CODEXT_DO_TOKEN
fi

codext-helper serve &
helper=$!
for _ in $(seq 100); do [ -S /run/codext/helper.sock ] && break; sleep 0.1; done
/usr/sbin/sshd -D -e -o "ListenAddress=127.0.0.1:$port" &
sshd=$!
pids="$helper $sshd"
if [ -n "${creds:-}" ]; then
    setpriv --reuid=codext-channel --regid=codext-channel --clear-groups --no-new-privs \
        --inh-caps=-all --bounding-set=-all \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CREDENTIALS_DIRECTORY="$creds" \
        /usr/sbin/codext-channel &
    channel=$!
    pids="$pids $channel"
fi
# shellcheck disable=SC2086 # pids is a list
trap 'kill $pids 2>/dev/null || true' INT TERM
echo "codext server: helper pid $helper, sshd pid $sshd on 127.0.0.1:$port${channel:+, codext-channel pid $channel}"
# Wait for the first to exit (POSIX sh: poll), then stop the others.
while :; do
    for p in $pids; do kill -0 "$p" 2>/dev/null || break 2; done
    sleep 1
done
# shellcheck disable=SC2086
kill $pids 2>/dev/null || true
wait
exit 1

#!/usr/bin/env bash
# Checks that a built pam_codext.so exports the six pam_sm_* entry points
# and nothing else (no Rust symbols leak into sshd's namespace).
set -euo pipefail
so="${1:?usage: check-pam-symbols.sh path/to/libpam_codext.so}"
exported=$(nm -D --defined-only "$so" | awk '{print $3}' | sort)
expected=$(printf '%s\n' pam_sm_acct_mgmt pam_sm_authenticate pam_sm_chauthtok pam_sm_close_session pam_sm_open_session pam_sm_setcred)
if [ "$exported" != "$expected" ]; then
    echo "unexpected exports in $so:" >&2
    diff <(echo "$expected") <(echo "$exported") >&2 || true
    exit 1
fi
echo "$so exports exactly: $(echo $exported)"

//! sshd's view of the result: `sshd -t`, and the effective configuration
//! (`sshd -T`) a codext user gets.

use super::host::run_quiet;
use super::{SSHD, SSHD_DROP_IN};

/// What `sshd -T -C user=user-000000000000,…` says for a codext user:
/// (keyword, value) pairs, lower-case keywords.
pub fn sshd_effective() -> std::result::Result<Vec<(String, String)>, String> {
    let out = run_quiet(
        SSHD,
        &[
            "-T",
            "-C",
            "user=user-000000000000,host=localhost,addr=127.0.0.1,laddr=127.0.0.1,lport=22",
        ],
    )
    .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sshd -T failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect())
}

pub(super) fn check_sshd() -> std::result::Result<(), String> {
    let out = run_quiet(SSHD, &["-t"]).map_err(|e| format!("cannot run {SSHD}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sshd -t refused the configuration: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let eff = sshd_effective()?;
    let get = |k: &str| {
        eff.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if get("authenticationmethods") != Some("password publickey") || get("usepam") != Some("yes") {
        return Err(format!(
            "{SSHD_DROP_IN} does not take effect for user-* (sshd -T: authenticationmethods {:?}, usepam {:?}): \
             does /etc/ssh/sshd_config `Include /etc/ssh/sshd_config.d/*.conf` before any Match, with UsePAM yes?",
            get("authenticationmethods").unwrap_or("?"),
            get("usepam").unwrap_or("?")
        ));
    }
    Ok(())
}

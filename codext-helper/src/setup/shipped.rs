//! What the shipped files (`--data-dir`, by default `/usr/share/codext`)
//! must hold before `setup` copies them into `/etc/pam.d`, the sshd drop-in
//! folder and the limits folder: whatever they say is trusted by sshd for
//! every login. So the folder and each file must be root's alone (as for
//! `--module`), and their settings must be exactly the set `doctor` checks
//! on a wired host: the three pam_codext rules with their control values
//! and no other rule, a drop-in that only sets the `Match User user-*`
//! block with doctor's values, limits only for the codext group.

use super::pam::{module_name, parse_pam_line, PamLine};

/// The rules the shipped PAM files hold, control values exactly: (file,
/// type, control). `doctor` checks the installed files against the same.
pub const EXPECTED_RULES: [(&str, &str, &str); 3] = [
    (
        "codext",
        "auth",
        "[success=done new_authtok_reqd=done ignore=ignore module_unknown=ignore default=die]",
    ),
    (
        "codext",
        "account",
        "[success=ok ignore=ignore module_unknown=ignore default=bad]",
    ),
    (
        "codext-session",
        "session",
        "[success=ok ignore=ignore module_unknown=ignore default=bad]",
    ),
];

/// The effective sshd settings a `user-*` login must get: (keyword in
/// `sshd -T`'s lower case, value, why). `doctor` checks `sshd -T -C user=…`
/// against them; `setup` checks the drop-in sets each before writing it.
pub const USER_SSHD_SETTINGS: [(&str, &str, &str); 9] = [
    ("usepam", "yes", "pam_codext only runs through PAM"),
    (
        "authenticationmethods",
        "password publickey",
        "the one-time token is the password; a key only from codext's own key folder",
    ),
    (
        "passwordauthentication",
        "yes",
        "the token travels by the password method",
    ),
    (
        "kbdinteractiveauthentication",
        "no",
        "keyboard-interactive runs PAM auth in a forked child",
    ),
    (
        "authorizedkeysfile",
        "/run/codext-keys/%u",
        "any other key file would let the agent add keys of its own",
    ),
    (
        "authorizedkeyscommand",
        "none",
        "only the grant key codext-helper wrote may log a codext user in",
    ),
    (
        "trustedusercakeys",
        "none",
        "a certificate authority would log codext users in without a grant",
    ),
    (
        "disableforwarding",
        "yes",
        "no tunnels, agents, X11 or sockets out of a codext session",
    ),
    ("permituserrc", "no", "~/.ssh/rc would run before the shell"),
];

/// The one `Match` line the drop-in may hold.
const MATCH_LINE: &str = "match user user-*";

/// A shipped PAM file (`codext` or `codext-session`): its rules are
/// exactly the expected pam_codext rules of that file, nothing else (no
/// other module, no `@include`).
pub fn check_pam_file(name: &str, text: &str) -> Result<(), String> {
    let mut want: Vec<(&str, &str)> = EXPECTED_RULES
        .iter()
        .filter(|(f, _, _)| *f == name)
        .map(|(_, kind, control)| (*kind, *control))
        .collect();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{name} line {}", n + 1);
        match parse_pam_line(line) {
            Some(PamLine::Blank) => {}
            Some(PamLine::Rule {
                kind,
                control,
                module,
                ..
            }) if module_name(&module) == "pam_codext.so" => {
                match want
                    .iter()
                    .position(|(k, c)| *k == kind.as_str() && *c == control.as_str())
                {
                    Some(i) => {
                        want.remove(i);
                    }
                    None => {
                        return Err(format!(
                            "{}: `{kind} {control}` is not one of the rules codext ships",
                            at()
                        ))
                    }
                }
            }
            Some(_) => {
                return Err(format!(
                    "{}: `{}` is not a pam_codext rule (the file may hold only codext's own)",
                    at(),
                    line.trim()
                ))
            }
            None => return Err(format!("{}: not a PAM rule setup understands", at())),
        }
    }
    match want.first() {
        None => Ok(()),
        Some((kind, control)) => Err(format!(
            "{name}: the rule `{kind} {control}` pam_codext is missing"
        )),
    }
}

/// The shipped sshd drop-in: nothing but comments before one
/// `Match User user-*` block (a global keyword would change every user's
/// logins), no other `Match` and no `Include`, and inside the block each
/// of [`USER_SSHD_SETTINGS`] the drop-in can set, with its value.
pub fn check_drop_in(text: &str) -> Result<(), String> {
    let mut in_match = false;
    let mut set: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("the sshd drop-in, line {}", n + 1);
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (key, value) = l
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.trim().trim_start_matches('=').trim(),
                )
            })
            .unwrap_or_else(|| (l.to_ascii_lowercase(), ""));
        match key.as_str() {
            "match"
                if !in_match
                    && l.to_ascii_lowercase()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        == MATCH_LINE =>
            {
                in_match = true;
            }
            "match" => {
                return Err(format!(
                    "{}: only one `Match User user-*` block may be shipped",
                    at()
                ))
            }
            "include" => return Err(format!("{}: `Include` is not allowed", at())),
            _ if !in_match => {
                return Err(format!(
                    "{}: `{l}` is outside `Match User user-*`: it would apply to every user",
                    at()
                ))
            }
            _ => set.push((key, value.to_ascii_lowercase())),
        }
    }
    if !in_match {
        return Err("the sshd drop-in has no `Match User user-*` block".into());
    }
    for (key, want, why) in USER_SSHD_SETTINGS {
        // UsePAM cannot be set inside a Match block: checked globally by
        // doctor and by setup's own check of the effective configuration.
        if key == "usepam" {
            continue;
        }
        let got: Vec<&str> = set
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        if got.first() != Some(&want) {
            return Err(format!(
                "the sshd drop-in sets {key} to {:?}, not {want} ({why})",
                got.first().copied().unwrap_or("nothing")
            ));
        }
    }
    match set
        .iter()
        .find(|(k, _)| k == "clientaliveinterval")
        .map(|(_, v)| v.parse::<u64>())
    {
        Some(Ok(n)) if n > 0 => Ok(()),
        _ => Err("the sshd drop-in must set ClientAliveInterval above 0 for user-*".into()),
    }
}

/// The shipped limits file: every rule is for the codext group (`@codext`,
/// which setup renames to the configured group).
pub fn check_limits(text: &str) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let domain = l.split_whitespace().next().unwrap_or("");
        if domain != "@codext" {
            return Err(format!(
                "the limits file, line {}: `{l}` is for {domain:?}, not the codext group",
                n + 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODEXT: &str = include_str!("../../../pam.d/codext");
    const SESSION: &str = include_str!("../../../pam.d/codext-session");
    const DROP_IN: &str = include_str!("../../../pam.d/sshd_config.d/codext.conf");
    const LIMITS: &str = include_str!("../../../pam.d/limits.d/codext.conf");

    #[test]
    fn given_the_shipped_files_then_each_passes() {
        assert_eq!(check_pam_file("codext", CODEXT), Ok(()));
        assert_eq!(check_pam_file("codext-session", SESSION), Ok(()));
        assert_eq!(check_drop_in(DROP_IN), Ok(()));
        assert_eq!(check_limits(LIMITS), Ok(()));
    }

    #[test]
    fn given_shipped_files_changed_to_weaken_a_login_then_each_is_refused_with_the_line() {
        let permit = format!("{CODEXT}auth sufficient pam_permit.so\n");
        assert!(check_pam_file("codext", &permit)
            .unwrap_err()
            .contains("pam_permit.so"));
        let include = format!("@include common-auth\n{CODEXT}");
        assert!(check_pam_file("codext", &include)
            .unwrap_err()
            .contains("line 1"));
        let ignore = CODEXT.replace("default=die", "default=ignore");
        assert!(check_pam_file("codext", &ignore)
            .unwrap_err()
            .contains("not one of the rules"));
        let dropped: String = CODEXT
            .lines()
            .filter(|l| !l.starts_with("account"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(check_pam_file("codext", &dropped)
            .unwrap_err()
            .contains("missing"));
        assert!(check_pam_file("codext-session", CODEXT).is_err());

        let global = format!("PermitRootLogin yes\n{DROP_IN}");
        assert!(check_drop_in(&global).unwrap_err().contains("every user"));
        let second = format!("{DROP_IN}Match User root\n    PasswordAuthentication yes\n");
        assert!(check_drop_in(&second).unwrap_err().contains("only one"));
        let forwarding = DROP_IN.replace("DisableForwarding yes", "DisableForwarding no");
        assert!(check_drop_in(&forwarding)
            .unwrap_err()
            .contains("disableforwarding"));
        let keys = DROP_IN.replace(
            "AuthorizedKeysFile /run/codext-keys/%u",
            "AuthorizedKeysFile .ssh/authorized_keys",
        );
        assert!(check_drop_in(&keys)
            .unwrap_err()
            .contains("authorizedkeysfile"));
        let include = format!("{DROP_IN}Include /tmp/x.conf\n");
        assert!(check_drop_in(&include).unwrap_err().contains("Include"));
        assert!(check_drop_in("").is_err());

        let everyone = format!("{LIMITS}*    hard   nofile   1\n");
        assert!(check_limits(&everyone).unwrap_err().contains("\"*\""));
    }
}

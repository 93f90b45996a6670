//! The sshd drop-in of the gated profiles,
//! `/etc/ssh/sshd_config.d/00-codext-profiles.conf`, written by `setup`
//! from `helper.toml` (and checked by `doctor`): for each `commands` or
//! `container` profile,
//!
//! ```text
//! Match Group codext-p-<name> User user-*
//!     ForceCommand <recorder> --gate <name>
//! ```
//!
//! sshd then runs the gate for every channel of such an account —
//! `ssh host`, `ssh host CMD`, subsystems (sftp) alike — through the
//! account's login shell, which is the recorder: `codext-record -c
//! "<recorder> --gate <name>"`. The recorder recognises its own gate
//! command and never hands it to a shell (no `BASH_ENV`, no `~/.bashrc`
//! runs first), asks the helper, and runs only what it allows. The
//! requested command is in `SSH_ORIGINAL_COMMAND`; an sftp subsystem
//! request appears there as the subsystem's program (`internal-sftp`
//! too: with a forced command sshd never runs its internal sftp server).
//!
//! A `Match` block is evaluated once, when sshd first looks the user up
//! (before authentication): the membership in `codext-p-<name>` is
//! announced with the user (a userdb membership record) and then made
//! real by `useradd --groups`.

use super::Profiles;
use std::path::Path;

/// Where `setup` writes it (`00-codext-profiles.conf` sorts before
/// `00-codext.conf`; both come before the operator's own files).
pub const DROP_IN: &str = "/etc/ssh/sshd_config.d/00-codext-profiles.conf";

/// The drop-in's text for `profiles`, the gate run through `recorder`.
pub fn drop_in(profiles: &Profiles, recorder: &Path) -> String {
    let mut out = String::from(
        "# /etc/ssh/sshd_config.d/00-codext-profiles.conf: written by `codext-helper setup` from\n\
         # the [profiles] of /etc/codext/helper.toml (run setup again after changing them).\n\
         # Every channel of a `commands` or `container` grant goes to the gate, which\n\
         # decides what runs; no shell of the user's runs first (docs/PROFILES.md).\n",
    );
    let gated: Vec<_> = profiles.gated().collect();
    if gated.is_empty() {
        out.push_str("# No profile needs the gate.\n");
    }
    for p in gated {
        if let Some(group) = p.own_group() {
            out.push_str(&format!(
                "\nMatch Group {group} User user-*\n    ForceCommand {} --gate {}\n",
                recorder.display(),
                p.name
            ));
        }
    }
    out
}

/// The profile a forced command names: `<recorder> --gate <name>` (the
/// recorder's own absolute path, as the drop-in writes it).
pub fn gate_profile<'a>(command: &'a str, recorder: &Path) -> Option<&'a str> {
    let rest = command.strip_prefix(recorder.to_str()?)?;
    rest.strip_prefix(" --gate ")
        .filter(|n| !n.is_empty() && !n.contains(' '))
}

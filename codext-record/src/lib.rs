//! What the session recorder (`codext-record`, the login shell of every
//! codext account) and `codext-helper` share: the recording protocol
//! ([`proto`]), the sftp request decoder the recorder runs on sftp
//! channels ([`sftp`]), and how a channel is named from its command
//! ([`Kind`]).
//!
//! Nothing here does I/O of its own beyond reading and writing frames on a
//! stream it is given, and nothing here is `unsafe`.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod confine;
pub mod proto;
pub mod sftp;

/// What a channel is, from how sshd started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An interactive login shell.
    Shell,
    /// A remote command (`ssh host COMMAND`).
    Command,
    /// The sftp subsystem (also what OpenSSH 9's `scp` uses by default).
    Sftp,
    /// The legacy scp protocol (`scp -O`): `scp -t` or `scp -f`.
    Scp,
    /// `rsync --server`.
    Rsync,
    /// `git-upload-pack`, `git-receive-pack`, `git-upload-archive`.
    Git,
}

impl Kind {
    /// Names the channel: `login` (no command) is a shell; otherwise the
    /// command's first word decides (sshd runs a subsystem as its
    /// configured command line, e.g. `/usr/lib/openssh/sftp-server`).
    pub fn of(login: bool, command: &[u8]) -> Kind {
        if login {
            return Kind::Shell;
        }
        let text = String::from_utf8_lossy(command);
        let mut words = text.split_whitespace();
        let first = words.next().unwrap_or("");
        let base = first.rsplit('/').next().unwrap_or(first);
        match base {
            "sftp-server" => Kind::Sftp,
            "scp" => Kind::Scp,
            "rsync" if text.contains("--server") => Kind::Rsync,
            "git-upload-pack" | "git-receive-pack" | "git-upload-archive" => Kind::Git,
            "git"
                if matches!(
                    words.next(),
                    Some("upload-pack" | "receive-pack" | "upload-archive")
                ) =>
            {
                Kind::Git
            }
            _ => Kind::Command,
        }
    }

    /// The name used in records, `sessions list` and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Command => "command",
            Kind::Sftp => "sftp",
            Kind::Scp => "scp",
            Kind::Rsync => "rsync",
            Kind::Git => "git",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn given_commands_then_each_channel_is_named() {
        for (login, cmd, kind) in [
            (true, "", Kind::Shell),
            (false, "echo hi", Kind::Command),
            (false, "/usr/lib/openssh/sftp-server", Kind::Sftp),
            (false, "scp -t up.bin", Kind::Scp),
            (
                false,
                "rsync --server -logDtpre.iLsfxCIvu . tree/",
                Kind::Rsync,
            ),
            (false, "rsync --version", Kind::Command),
            (false, "git-receive-pack 'repo.git'", Kind::Git),
            (false, "git upload-pack 'repo.git'", Kind::Git),
            (false, "bash -s", Kind::Command),
        ] {
            assert_eq!(Kind::of(login, cmd.as_bytes()), kind, "{cmd}");
        }
    }
}

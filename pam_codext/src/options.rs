//! Module arguments, as written after the module path in `pam.d`:
//!
//! * `socket=PATH` — the helper's socket (default `/run/codext/helper.sock`);
//! * `services=a,b` — PAM services allowed to log a codext user in
//!   (default `sshd`); any other service is refused for `user-…` names;
//! * `timeout=SECONDS` — per-request limit, 1 to 30 (default 15: only
//!   `user-…` logins ever wait on the helper, and a burst of 100 logins on
//!   2 cores needs more than 3 s, see `pam.d/codext`);
//! * `debug` — log every decision, not only refusals and errors.
//!
//! An unknown or malformed argument is a configuration error: the module
//! then denies `user-…` names (and still ignores everyone else).

use std::path::PathBuf;
use std::time::Duration;

/// Default helper socket.
pub const DEFAULT_SOCKET: &str = "/run/codext/helper.sock";
/// Default per-request timeout: long enough for a login queued behind a
/// burst of others on a small machine (`codext-bench burst 100` on 2 cores:
/// 3 s failed half of them), short enough that a hung helper turns a
/// `user-…` login into a denial well inside sshd's `LoginGraceTime`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Parsed module arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Helper socket path.
    pub socket: PathBuf,
    /// Allowed services.
    pub services: Vec<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Verbose logging.
    pub debug: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            socket: PathBuf::from(DEFAULT_SOCKET),
            services: vec!["sshd".into()],
            timeout: DEFAULT_TIMEOUT,
            debug: false,
        }
    }
}

impl Options {
    /// Parses the arguments; the error names the offending one.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        for arg in args {
            if arg == "debug" {
                o.debug = true;
            } else if let Some(p) = arg.strip_prefix("socket=") {
                if !p.starts_with('/') {
                    return Err(format!("socket= needs an absolute path, not {p:?}"));
                }
                o.socket = PathBuf::from(p);
            } else if let Some(s) = arg.strip_prefix("services=") {
                let list: Vec<String> = s
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect();
                if list.is_empty() {
                    return Err("services= needs at least one service".into());
                }
                o.services = list;
            } else if let Some(t) = arg.strip_prefix("timeout=") {
                match t.parse::<u64>() {
                    Ok(n) if (1..=30).contains(&n) => o.timeout = Duration::from_secs(n),
                    _ => return Err(format!("timeout= takes 1 to 30 seconds, not {t:?}")),
                }
            } else {
                return Err(format!("unknown argument {arg:?}"));
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn given_no_arguments_then_defaults() {
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
    }

    #[test]
    fn given_all_arguments_then_parsed() {
        let o = Options::parse(&args(&[
            "socket=/tmp/s",
            "services=sshd,login",
            "timeout=2",
            "debug",
        ]))
        .unwrap();
        assert_eq!(o.socket, PathBuf::from("/tmp/s"));
        assert_eq!(o.services, vec!["sshd".to_string(), "login".to_string()]);
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert!(o.debug);
    }

    #[test]
    fn given_bad_arguments_then_each_named() {
        for (a, what) in [
            ("socket=relative", "absolute"),
            ("services=", "at least one"),
            ("timeout=0", "1 to 30"),
            ("timeout=abc", "1 to 30"),
            ("verbose", "unknown argument"),
        ] {
            let err = Options::parse(&args(&[a])).unwrap_err();
            assert!(err.contains(what), "{a}: {err}");
        }
    }
}

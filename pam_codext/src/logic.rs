//! Every decision the module makes, free of FFI so it is tested with
//! scripted fakes.
//!
//! Order of checks for each hook:
//! 1. the user name: outside the `user-…` pattern → `Ignore`, before any
//!    I/O (no socket, no log, no argument parsing error even);
//! 2. the module arguments: malformed → the hook's denial;
//! 3. the service: not on the allow-list → the hook's denial;
//! 4. a name in the pattern that is not a valid codext name → denial;
//! 5. the helper's answer; no answer (down, hung, garbled) →
//!    `AuthinfoUnavail` for authentication, the hook's denial otherwise.

use crate::options::Options;
use codext_wire::{Reply, ReplyStatus, Request, Secret, UserName};

/// The PAM hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `pam_sm_authenticate`.
    Authenticate,
    /// `pam_sm_setcred`.
    SetCred,
    /// `pam_sm_acct_mgmt`.
    AcctMgmt,
    /// `pam_sm_open_session`.
    OpenSession,
    /// `pam_sm_close_session`.
    CloseSession,
    /// `pam_sm_chauthtok`.
    ChAuthTok,
}

/// The PAM results the module returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `PAM_SUCCESS`.
    Success,
    /// `PAM_IGNORE`: not codext's business.
    Ignore,
    /// `PAM_AUTH_ERR`.
    AuthErr,
    /// `PAM_AUTHINFO_UNAVAIL`: the helper could not be asked.
    AuthinfoUnavail,
    /// `PAM_PERM_DENIED`.
    PermDenied,
    /// `PAM_SESSION_ERR`.
    SessionErr,
    /// `PAM_SERVICE_ERR` (a panic was caught).
    ServiceErr,
}

/// Log severities used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Refusals and failures.
    Notice,
    /// Configuration problems.
    Error,
    /// Verbose (`debug` argument).
    Debug,
}

/// What the module needs from the PAM handle.
pub trait PamContext {
    /// `PAM_USER`, as bytes (no prompt is ever shown).
    fn user(&self) -> Option<Vec<u8>>;
    /// `PAM_SERVICE`.
    fn service(&self) -> Option<String>;
    /// `PAM_RHOST` (may be absent).
    fn rhost(&self) -> Option<String>;
    /// The password (`pam_get_authtok`).
    fn authtok(&self) -> Option<Secret>;
    /// Logs through `pam_syslog` (authpriv).
    fn log(&self, level: Level, message: &str);
    /// `SSH_AUTH_INFO_0` from the PAM environment: how sshd authenticated
    /// the user (`password`, or `publickey ssh-rsa AAAA…`), one method a
    /// line. OpenSSH sets it before `pam_acct_mgmt` and
    /// `pam_open_session` (auth-pam.c, `expose_authinfo`).
    fn auth_info(&self) -> Option<String> {
        None
    }
}

/// The key of a public-key login, from `SSH_AUTH_INFO_0`: the text after
/// `publickey ` on the first such line.
pub fn publickey_of(auth_info: &str) -> Option<&str> {
    auth_info
        .lines()
        .find_map(|l| l.strip_prefix("publickey "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// What the module needs from the helper.
pub trait Helper {
    /// Sends one request and returns the reply, or why there is none.
    fn ask(&self, request: &Request) -> Result<Reply, String>;
}

fn denial(hook: Hook) -> Code {
    match hook {
        Hook::Authenticate | Hook::SetCred => Code::AuthErr,
        Hook::AcctMgmt | Hook::ChAuthTok => Code::PermDenied,
        Hook::OpenSession | Hook::CloseSession => Code::SessionErr,
    }
}

/// Decides `hook` for the handle `ctx`, with module arguments `args`;
/// `helper` is built from the parsed options only when needed.
pub fn decide<C: PamContext, H: Helper>(
    hook: Hook,
    ctx: &C,
    args: &[String],
    helper: impl FnOnce(&Options) -> H,
) -> Code {
    let Some(raw_user) = ctx.user() else {
        return Code::Ignore;
    };
    if !raw_user.starts_with(codext_wire::USER_PREFIX.as_bytes()) {
        return Code::Ignore;
    }
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            ctx.log(
                Level::Error,
                &format!("bad module arguments ({e}); denying codext users"),
            );
            return denial(hook);
        }
    };
    let service = ctx.service().unwrap_or_default();
    let shown = String::from_utf8_lossy(&raw_user).into_owned();
    if !opts.services.contains(&service) {
        ctx.log(
            Level::Notice,
            &format!("{shown}: service {service:?} may not log codext users in"),
        );
        return denial(hook);
    }
    let user = match std::str::from_utf8(&raw_user).ok().map(UserName::parse) {
        Some(Ok(u)) => u,
        _ => {
            ctx.log(
                Level::Notice,
                &format!("{shown:?} is not a valid codext user name; denied"),
            );
            return denial(hook);
        }
    };
    let rhost = ctx.rhost().unwrap_or_default();
    let request = match hook {
        // Credentials are the account itself; there is nothing to set
        // or delete, and the password can never be changed.
        Hook::SetCred => return Code::Success,
        Hook::ChAuthTok => {
            ctx.log(
                Level::Notice,
                &format!("{user}: codext passwords cannot be changed"),
            );
            return Code::PermDenied;
        }
        Hook::Authenticate => {
            let Some(password) = ctx.authtok() else {
                ctx.log(Level::Notice, &format!("{user}: no password given"));
                return Code::AuthErr;
            };
            // Far longer than a token's text form: wrong, not worth a
            // round trip (and the protocol would refuse to carry it).
            if password.len() > codext_wire::message::MAX_PASSWORD {
                ctx.log(
                    Level::Notice,
                    &format!("{user}: password too long to be a codext token"),
                );
                return Code::AuthErr;
            }
            Request::Authenticate {
                service,
                user: user.clone(),
                rhost: rhost.clone(),
                password,
            }
        }
        // A login sshd accepted by public key is named as such, key and
        // all: the helper allows only the grant's agent key (a reconnect
        // within the grant).
        Hook::AcctMgmt => Request::Account {
            service,
            user: user.clone(),
            rhost: rhost.clone(),
        },
        Hook::OpenSession => Request::OpenSession {
            service,
            user: user.clone(),
            rhost: rhost.clone(),
        },
        // No pid: the helper takes the session's process from the
        // socket's peer credentials (protocol version 2).
        Hook::CloseSession => Request::CloseSession {
            service,
            user: user.clone(),
        },
    };
    let helper = helper(&opts);
    // A login sshd accepted by public key (a grant's reconnect): the helper must
    // allow that key first. OpenSSH names it in SSH_AUTH_INFO_0 only from
    // the session on (its monitor records it after pam_acct_mgmt).
    if hook == Hook::OpenSession {
        if let Some(key) = ctx.auth_info().as_deref().and_then(publickey_of) {
            if key.len() > codext_wire::message::MAX_KEY {
                ctx.log(Level::Notice, &format!("{user}: public key too long"));
                return denial(hook);
            }
            let check = Request::KeyAccount {
                service: ctx.service().unwrap_or_default(),
                user: user.clone(),
                rhost: rhost.clone(),
                key: key.to_owned(),
            };
            match helper.ask(&check) {
                Ok(Reply {
                    status: ReplyStatus::Ok,
                    ..
                }) => {}
                Ok(Reply { reason, .. }) => {
                    ctx.log(
                        Level::Notice,
                        &format!("{user}: key login refused ({reason}) from {rhost:?}"),
                    );
                    return denial(hook);
                }
                Err(e) => {
                    ctx.log(Level::Error, &format!("{user}: key check: {e}"));
                    return denial(hook);
                }
            }
        }
    }
    let reply = helper.ask(&request);
    drop(request);
    match reply {
        Ok(Reply {
            status: ReplyStatus::Ok,
            reason,
        }) => {
            if opts.debug {
                ctx.log(
                    Level::Debug,
                    &format!("{user}: {hook:?} granted ({reason}) from {rhost:?}"),
                );
            }
            Code::Success
        }
        Ok(Reply {
            status: ReplyStatus::Denied,
            reason,
        }) => {
            ctx.log(
                Level::Notice,
                &format!("{user}: {hook:?} denied ({reason}) from {rhost:?}"),
            );
            denial(hook)
        }
        Ok(Reply { status, reason }) => {
            ctx.log(
                Level::Error,
                &format!("{user}: {hook:?}: helper answered {status:?} ({reason})"),
            );
            unavailable(hook)
        }
        Err(e) => {
            ctx.log(Level::Error, &format!("{user}: {hook:?}: {e}"));
            unavailable(hook)
        }
    }
}

fn unavailable(hook: Hook) -> Code {
    if hook == Hook::Authenticate {
        Code::AuthinfoUnavail
    } else {
        denial(hook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Ctx {
        user: Option<&'static str>,
        service: &'static str,
        password: Option<&'static str>,
        auth_info: Option<&'static str>,
        logs: RefCell<Vec<String>>,
    }

    impl PamContext for Ctx {
        fn user(&self) -> Option<Vec<u8>> {
            self.user.map(|u| u.as_bytes().to_vec())
        }
        fn service(&self) -> Option<String> {
            Some(self.service.to_owned())
        }
        fn rhost(&self) -> Option<String> {
            Some("192.0.2.1".into())
        }
        fn authtok(&self) -> Option<Secret> {
            self.password.map(|p| Secret::copy_from(p.as_bytes()))
        }
        fn log(&self, _: Level, message: &str) {
            self.logs.borrow_mut().push(message.to_owned());
        }
        fn auth_info(&self) -> Option<String> {
            self.auth_info.map(str::to_owned)
        }
    }

    /// A scripted helper that records what it was asked.
    struct Script {
        reply: Result<Reply, String>,
        asked: RefCell<Vec<String>>,
    }

    impl Script {
        fn new(reply: Result<Reply, String>) -> Script {
            Script {
                reply,
                asked: RefCell::new(Vec::new()),
            }
        }
    }

    impl Helper for &Script {
        fn ask(&self, request: &Request) -> Result<Reply, String> {
            self.asked.borrow_mut().push(format!("{request:?}"));
            self.reply.clone()
        }
    }

    fn ok() -> Result<Reply, String> {
        Ok(Reply::new(ReplyStatus::Ok, "ok"))
    }

    fn ctx(user: &'static str) -> Ctx {
        Ctx {
            user: Some(user),
            service: "sshd",
            password: Some("pw"),
            ..Ctx::default()
        }
    }

    const ALL: [Hook; 6] = [
        Hook::Authenticate,
        Hook::SetCred,
        Hook::AcctMgmt,
        Hook::OpenSession,
        Hook::CloseSession,
        Hook::ChAuthTok,
    ];

    #[test]
    fn given_other_user_then_every_hook_ignores_without_io() {
        for name in ["alice", "root", "xuser-0123456789ab", ""] {
            for hook in ALL {
                let s = Script::new(ok());
                let c = ctx(name);
                // Even broken arguments do not matter for other users.
                assert_eq!(decide(hook, &c, &["bogus".into()], |_| &s), Code::Ignore);
                assert!(
                    s.asked.borrow().is_empty(),
                    "{name} {hook:?} reached the helper"
                );
                assert!(c.logs.borrow().is_empty(), "{name} {hook:?} logged");
            }
        }
        let s = Script::new(ok());
        let c = Ctx {
            user: None,
            ..Ctx::default()
        };
        assert_eq!(decide(Hook::Authenticate, &c, &[], |_| &s), Code::Ignore);
    }

    #[test]
    fn given_codext_user_and_helper_ok_then_success() {
        for hook in [
            Hook::Authenticate,
            Hook::AcctMgmt,
            Hook::OpenSession,
            Hook::CloseSession,
        ] {
            let s = Script::new(ok());
            assert_eq!(
                decide(hook, &ctx("user-0123456789ab"), &[], |_| &s),
                Code::Success
            );
            assert_eq!(s.asked.borrow().len(), 1);
        }
    }

    #[test]
    fn given_helper_denies_then_each_hook_denies() {
        let denied = || Ok(Reply::new(ReplyStatus::Denied, "wrong password"));
        for (hook, code) in [
            (Hook::Authenticate, Code::AuthErr),
            (Hook::AcctMgmt, Code::PermDenied),
            (Hook::OpenSession, Code::SessionErr),
            (Hook::CloseSession, Code::SessionErr),
        ] {
            let s = Script::new(denied());
            assert_eq!(decide(hook, &ctx("user-0123456789ab"), &[], |_| &s), code);
        }
    }

    #[test]
    fn given_helper_unreachable_then_authinfo_unavail_and_logged() {
        let s = Script::new(Err("connection refused".into()));
        let c = ctx("user-0123456789ab");
        assert_eq!(
            decide(Hook::Authenticate, &c, &[], |_| &s),
            Code::AuthinfoUnavail
        );
        assert!(c.logs.borrow()[0].contains("connection refused"));
        let s = Script::new(Ok(Reply::new(ReplyStatus::Unavailable, "helper error")));
        assert_eq!(decide(Hook::AcctMgmt, &c, &[], |_| &s), Code::PermDenied);
    }

    #[test]
    fn given_service_not_allowed_then_denied_without_asking() {
        for service in ["su", "login", "sudo", ""] {
            let s = Script::new(ok());
            let c = Ctx {
                service,
                ..ctx("user-0123456789ab")
            };
            assert_eq!(decide(Hook::Authenticate, &c, &[], |_| &s), Code::AuthErr);
            assert!(s.asked.borrow().is_empty());
        }
        let s = Script::new(ok());
        let c = Ctx {
            service: "login",
            ..ctx("user-0123456789ab")
        };
        assert_eq!(
            decide(
                Hook::Authenticate,
                &c,
                &["services=sshd,login".into()],
                |_| &s
            ),
            Code::Success
        );
    }

    #[test]
    fn given_invalid_codext_name_then_denied_without_asking() {
        for name in [
            "user-",
            "user-XYZ",
            "user-0123456789abcdef00",
            "user-../etc",
        ] {
            let s = Script::new(ok());
            assert_eq!(
                decide(Hook::Authenticate, &ctx(name), &[], |_| &s),
                Code::AuthErr
            );
            assert!(s.asked.borrow().is_empty());
        }
    }

    #[test]
    fn given_bad_arguments_then_codext_users_denied() {
        let s = Script::new(ok());
        let c = ctx("user-0123456789ab");
        assert_eq!(
            decide(Hook::Authenticate, &c, &["timeout=99".into()], |_| &s),
            Code::AuthErr
        );
        assert!(s.asked.borrow().is_empty());
        assert!(c.logs.borrow()[0].contains("timeout"));
    }

    #[test]
    fn given_no_password_then_auth_err() {
        let s = Script::new(ok());
        let c = Ctx {
            password: None,
            ..ctx("user-0123456789ab")
        };
        assert_eq!(decide(Hook::Authenticate, &c, &[], |_| &s), Code::AuthErr);
        assert!(s.asked.borrow().is_empty());
    }

    #[test]
    fn given_overlong_password_then_auth_err_without_asking() {
        let s = Script::new(ok());
        let long: &'static str = Box::leak("x".repeat(600).into_boxed_str());
        let c = Ctx {
            password: Some(long),
            ..ctx("user-0123456789ab")
        };
        assert_eq!(decide(Hook::Authenticate, &c, &[], |_| &s), Code::AuthErr);
        assert!(s.asked.borrow().is_empty());
    }

    #[test]
    fn given_setcred_and_chauthtok_then_answered_locally() {
        let s = Script::new(ok());
        assert_eq!(
            decide(Hook::SetCred, &ctx("user-0123456789ab"), &[], |_| &s),
            Code::Success
        );
        assert_eq!(
            decide(Hook::ChAuthTok, &ctx("user-0123456789ab"), &[], |_| &s),
            Code::PermDenied
        );
        assert!(s.asked.borrow().is_empty());
    }

    #[test]
    fn given_password_then_never_in_logs() {
        let s = Script::new(Ok(Reply::new(ReplyStatus::Denied, "wrong password")));
        let c = Ctx {
            password: Some("s3cret-token"),
            ..ctx("user-0123456789ab")
        };
        decide(Hook::Authenticate, &c, &["debug".into()], |_| &s);
        assert!(c.logs.borrow().iter().all(|l| !l.contains("s3cret")));
        assert!(s.asked.borrow().iter().all(|l| !l.contains("s3cret")));
    }

    #[test]
    fn given_publickey_login_then_the_session_asks_with_the_key_first_and_a_password_login_does_not(
    ) {
        let script = Script::new(ok());
        let mut c = ctx("user-00112233aabb");
        c.auth_info = Some("publickey ssh-rsa AAAAB3Nza\n");
        assert_eq!(
            decide(Hook::OpenSession, &c, &[], |_| &script),
            Code::Success
        );
        c.auth_info = Some("password\n");
        assert_eq!(
            decide(Hook::OpenSession, &c, &[], |_| &script),
            Code::Success
        );
        let asked = script.asked.borrow();
        assert!(
            asked[0].starts_with("KeyAccount") && asked[0].contains("ssh-rsa AAAAB3Nza"),
            "{asked:?}"
        );
        assert!(asked[1].starts_with("OpenSession"), "{asked:?}");
        assert!(asked[2].starts_with("OpenSession"), "{asked:?}");
        assert_eq!(asked.len(), 3);
        drop(asked);
        let no = Script::new(Ok(Reply::new(
            ReplyStatus::Denied,
            "not the grant's agent key",
        )));
        c.auth_info = Some("publickey ssh-rsa AAAAB3Nza\n");
        assert_eq!(
            decide(Hook::OpenSession, &c, &[], |_| &no),
            Code::SessionErr
        );
        assert_eq!(
            no.asked.borrow().len(),
            1,
            "no session opened after a refused key"
        );
        assert_eq!(publickey_of("password\npublickey  "), None);
    }

    /// A helper that keeps the bytes it would be sent.
    struct Frames(RefCell<Vec<Vec<u8>>>);

    impl Helper for &Frames {
        fn ask(&self, request: &Request) -> Result<Reply, String> {
            self.0.borrow_mut().push(request.encode().unwrap().to_vec());
            ok()
        }
    }

    #[test]
    fn given_session_hooks_then_the_module_sends_version_2_with_no_claimed_pid() {
        let frames = Frames(RefCell::new(Vec::new()));
        let c = ctx("user-00112233aabb");
        for hook in [Hook::OpenSession, Hook::CloseSession] {
            assert_eq!(decide(hook, &c, &[], |_| &frames), Code::Success);
        }
        let sent = frames.0.borrow();
        assert_eq!(sent.len(), 2);
        for bytes in sent.iter() {
            assert_eq!(bytes[0], codext_wire::PROTOCOL_VERSION);
            assert_eq!(bytes[0], 2);
            let got = codext_wire::Request::decode_any(bytes).unwrap();
            assert_eq!(got.claimed_pid, None);
        }
    }
}

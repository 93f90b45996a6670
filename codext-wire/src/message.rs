//! The requests `pam_codext` sends to `codext-helper`, and its replies.
//!
//! Encoding (inside one frame, see [`crate::frame`]): a protocol version
//! byte, a kind byte, then the kind's fields in a fixed order. A text or
//! byte field is a 2-byte big-endian length and the bytes; a pid is 4 bytes
//! big-endian. Decoding is strict: unknown versions and kinds, bad UTF-8,
//! invalid user names, short fields and trailing bytes are all errors.
//!
//! One connection carries exactly one request and one reply: the helper
//! accepts nothing else on it (the monitor pattern of OpenSSH's privilege
//! separation, with a single state).

use crate::name::UserName;
use crate::secret::Secret;
use std::fmt;
use zeroize::Zeroizing;

/// Version byte at the start of every request and reply.
pub const PROTOCOL_VERSION: u8 = 1;

/// Longest password the module forwards. A codext password is 52 bytes;
/// anything far longer is not one, and is refused without being sent.
pub const MAX_PASSWORD: usize = 512;
/// Longest service or remote host text carried.
pub const MAX_TEXT: usize = 255;

const KIND_AUTHENTICATE: u8 = 1;
const KIND_ACCOUNT: u8 = 2;
const KIND_OPEN_SESSION: u8 = 3;
const KIND_CLOSE_SESSION: u8 = 4;
const KIND_PING: u8 = 5;
const KIND_KEY_ACCOUNT: u8 = 6;

/// Longest public key a [`Request::KeyAccount`] carries (an RSA-8192
/// `ssh-rsa` line is about 1,420 characters, and codext agent keys are at
/// most 8192 bits; the frame holds 4,096 bytes).
pub const MAX_KEY: usize = 2048;

/// A request from the PAM module. `Debug` never shows the password.
#[derive(Debug)]
pub enum Request {
    /// Check `password` against the user's pending token; on success the
    /// helper creates the account.
    Authenticate {
        /// PAM service name (`PAM_SERVICE`).
        service: String,
        /// The account being logged in.
        user: UserName,
        /// Source address as sshd reports it (`PAM_RHOST`), may be empty.
        rhost: String,
        /// The password offered.
        password: Secret,
    },
    /// Is this account (created by codext, grant not expired) usable?
    Account {
        /// PAM service name.
        service: String,
        /// The account.
        user: UserName,
        /// Source address, may be empty.
        rhost: String,
    },
    /// A session of `user` opens in sshd process `pid`.
    OpenSession {
        /// PAM service name.
        service: String,
        /// The account.
        user: UserName,
        /// Source address, may be empty.
        rhost: String,
        /// The process that called `pam_open_session` (sshd's monitor).
        pid: u32,
    },
    /// The session opened by `pid` closes.
    CloseSession {
        /// PAM service name.
        service: String,
        /// The account.
        user: UserName,
        /// The process that opened the session.
        pid: u32,
    },
    /// Liveness check.
    Ping,
    /// (issue 15) Sent before [`Request::OpenSession`] for a login sshd
    /// accepted by public key: `key` is the key sshd names in
    /// `SSH_AUTH_INFO_0` (`ssh-rsa AAAA…`). The helper allows it only for a
    /// live grant whose agent key it is, and records the key's fingerprint.
    KeyAccount {
        /// PAM service name.
        service: String,
        /// The account.
        user: UserName,
        /// Source address, may be empty.
        rhost: String,
        /// The public key that authenticated, OpenSSH text form.
        key: String,
    },
}

/// What the helper answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Granted / done.
    Ok = 0,
    /// Refused: wrong password, unknown user, expired, not allowed.
    Denied = 1,
    /// The helper could not decide (internal failure): the module denies.
    Unavailable = 2,
    /// The request was malformed or not valid in this state.
    BadRequest = 3,
}

/// A reply: a status and a short reason for the log (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The verdict.
    pub status: ReplyStatus,
    /// Why, in a few words, safe to log.
    pub reason: String,
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Version byte other than [`PROTOCOL_VERSION`].
    Version(u8),
    /// Unknown message kind or status.
    Kind(u8),
    /// The message ends inside a field.
    Short,
    /// Bytes remain after the last field.
    Trailing,
    /// A text field is not UTF-8 or is too long.
    Text,
    /// The user field is not a codext name.
    User,
    /// The password field is too long.
    Password,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Version(v) => write!(
                f,
                "protocol version {v} is not supported (want {PROTOCOL_VERSION})"
            ),
            WireError::Kind(k) => write!(f, "unknown message kind {k}"),
            WireError::Short => write!(f, "message ends inside a field"),
            WireError::Trailing => write!(f, "bytes after the end of the message"),
            WireError::Text => write!(f, "a text field is not UTF-8 or is too long"),
            WireError::User => write!(f, "the user field is not a codext user name"),
            WireError::Password => write!(f, "the password field is too long"),
        }
    }
}

impl std::error::Error for WireError {}

struct Writer(Zeroizing<Vec<u8>>);

impl Writer {
    fn new(kind: u8) -> Writer {
        Writer(Zeroizing::new(vec![PROTOCOL_VERSION, kind]))
    }

    fn bytes(&mut self, b: &[u8]) {
        // Callers bound every field far below u16::MAX (MAX_TEXT,
        // MAX_PASSWORD, and a name of 17 bytes).
        let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&n.to_be_bytes());
        self.0.extend_from_slice(&b[..usize::from(n)]);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let b = self.take(2)?;
        let n = u16::from_be_bytes([b[0], b[1]]);
        self.take(usize::from(n))
    }

    fn text(&mut self) -> Result<String, WireError> {
        let b = self.bytes()?;
        if b.len() > MAX_TEXT {
            return Err(WireError::Text);
        }
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::Text)
    }

    fn user(&mut self) -> Result<UserName, WireError> {
        let b = self.bytes()?;
        let s = std::str::from_utf8(b).map_err(|_| WireError::User)?;
        UserName::parse(s).map_err(|_| WireError::User)
    }

    fn finish(self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

fn clip(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Request {
    /// Encodes the request. Texts longer than [`MAX_TEXT`] are cut; a
    /// password longer than [`MAX_PASSWORD`] is refused.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, WireError> {
        let w = match self {
            Request::Authenticate {
                service,
                user,
                rhost,
                password,
            } => {
                if password.len() > MAX_PASSWORD {
                    return Err(WireError::Password);
                }
                let mut w = Writer::new(KIND_AUTHENTICATE);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.bytes(clip(rhost).as_bytes());
                w.bytes(password.expose());
                w
            }
            Request::Account {
                service,
                user,
                rhost,
            } => {
                let mut w = Writer::new(KIND_ACCOUNT);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.bytes(clip(rhost).as_bytes());
                w
            }
            Request::OpenSession {
                service,
                user,
                rhost,
                pid,
            } => {
                let mut w = Writer::new(KIND_OPEN_SESSION);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.bytes(clip(rhost).as_bytes());
                w.u32(*pid);
                w
            }
            Request::CloseSession { service, user, pid } => {
                let mut w = Writer::new(KIND_CLOSE_SESSION);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.u32(*pid);
                w
            }
            Request::Ping => Writer::new(KIND_PING),
            Request::KeyAccount {
                service,
                user,
                rhost,
                key,
            } => {
                if key.len() > MAX_KEY {
                    return Err(WireError::Text);
                }
                let mut w = Writer::new(KIND_KEY_ACCOUNT);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.bytes(clip(rhost).as_bytes());
                w.bytes(key.as_bytes());
                w
            }
        };
        Ok(w.0)
    }

    /// Decodes a request, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(WireError::Version(version));
        }
        let req = match r.u8()? {
            KIND_AUTHENTICATE => {
                let service = r.text()?;
                let user = r.user()?;
                let rhost = r.text()?;
                let pw = r.bytes()?;
                if pw.len() > MAX_PASSWORD {
                    return Err(WireError::Password);
                }
                Request::Authenticate {
                    service,
                    user,
                    rhost,
                    password: Secret::copy_from(pw),
                }
            }
            KIND_ACCOUNT => Request::Account {
                service: r.text()?,
                user: r.user()?,
                rhost: r.text()?,
            },
            KIND_OPEN_SESSION => Request::OpenSession {
                service: r.text()?,
                user: r.user()?,
                rhost: r.text()?,
                pid: r.u32()?,
            },
            KIND_CLOSE_SESSION => Request::CloseSession {
                service: r.text()?,
                user: r.user()?,
                pid: r.u32()?,
            },
            KIND_PING => Request::Ping,
            KIND_KEY_ACCOUNT => {
                let service = r.text()?;
                let user = r.user()?;
                let rhost = r.text()?;
                let key = r.bytes()?;
                if key.len() > MAX_KEY {
                    return Err(WireError::Text);
                }
                Request::KeyAccount {
                    service,
                    user,
                    rhost,
                    key: std::str::from_utf8(key)
                        .map_err(|_| WireError::Text)?
                        .to_owned(),
                }
            }
            k => return Err(WireError::Kind(k)),
        };
        r.finish()?;
        Ok(req)
    }

    /// A short name of the request kind, for logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Request::Authenticate { .. } => "authenticate",
            Request::Account { .. } => "account",
            Request::OpenSession { .. } => "open_session",
            Request::CloseSession { .. } => "close_session",
            Request::Ping => "ping",
            Request::KeyAccount { .. } => "key_account",
        }
    }
}

impl Reply {
    /// A reply with `status` and `reason`.
    pub fn new(status: ReplyStatus, reason: impl Into<String>) -> Reply {
        Reply {
            status,
            reason: reason.into(),
        }
    }

    /// Encodes the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(self.status as u8);
        w.bytes(clip(&self.reason).as_bytes());
        w.0.to_vec()
    }

    /// Decodes a reply, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(WireError::Version(version));
        }
        let status = match r.u8()? {
            0 => ReplyStatus::Ok,
            1 => ReplyStatus::Denied,
            2 => ReplyStatus::Unavailable,
            3 => ReplyStatus::BadRequest,
            k => return Err(WireError::Kind(k)),
        };
        let reason = r.text()?;
        r.finish()?;
        Ok(Reply { status, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserName {
        UserName::parse("user-00112233aabb").unwrap()
    }

    #[test]
    fn given_each_request_then_round_trip_keeps_it() {
        let reqs = [
            Request::Authenticate {
                service: "sshd".into(),
                user: user(),
                rhost: "127.0.0.1".into(),
                password: Secret::copy_from(b"pw"),
            },
            Request::Account {
                service: "sshd".into(),
                user: user(),
                rhost: String::new(),
            },
            Request::OpenSession {
                service: "sshd".into(),
                user: user(),
                rhost: "::1".into(),
                pid: 4242,
            },
            Request::CloseSession {
                service: "sshd".into(),
                user: user(),
                pid: 7,
            },
            Request::Ping,
            Request::KeyAccount {
                service: "sshd".into(),
                user: user(),
                rhost: "127.0.0.1".into(),
                key: format!("ssh-rsa {}", "A".repeat(700)),
            },
        ];
        for req in reqs {
            let bytes = req.encode().unwrap();
            let back = Request::decode(&bytes).unwrap();
            assert_eq!(format!("{req:?}"), format!("{back:?}"));
        }
    }

    #[test]
    fn given_authenticate_then_debug_hides_password() {
        let req = Request::Authenticate {
            service: "sshd".into(),
            user: user(),
            rhost: String::new(),
            password: Secret::copy_from(b"hunter2"),
        };
        assert!(!format!("{req:?}").contains("hunter2"));
    }

    #[test]
    fn given_garbage_then_each_gets_its_error() {
        assert_eq!(Request::decode(&[]).unwrap_err(), WireError::Short);
        assert_eq!(Request::decode(&[9, 5]).unwrap_err(), WireError::Version(9));
        assert_eq!(Request::decode(&[1, 99]).unwrap_err(), WireError::Kind(99));
        assert_eq!(
            Request::decode(&[1, 5, 0]).unwrap_err(),
            WireError::Trailing
        );
        // Account with a user field that is not a codext name.
        let mut b = vec![1, 2, 0, 4];
        b.extend_from_slice(b"sshd\0\x04root\0\0");
        assert_eq!(Request::decode(&b).unwrap_err(), WireError::User);
        // Non-UTF-8 service.
        let b = [1, 2, 0, 1, 0xff];
        assert_eq!(Request::decode(&b).unwrap_err(), WireError::Text);
    }

    #[test]
    fn given_every_truncation_then_short_and_no_panic() {
        let req = Request::OpenSession {
            service: "sshd".into(),
            user: user(),
            rhost: "h".into(),
            pid: 1,
        };
        let bytes = req.encode().unwrap();
        for n in 0..bytes.len() {
            assert!(Request::decode(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
    }

    #[test]
    fn given_oversized_password_then_encode_and_decode_refuse() {
        let req = Request::Authenticate {
            service: "sshd".into(),
            user: user(),
            rhost: String::new(),
            password: Secret::new(vec![b'a'; MAX_PASSWORD + 1]),
        };
        assert_eq!(req.encode().unwrap_err(), WireError::Password);
        let mut b = vec![1, 1, 0, 4];
        b.extend_from_slice(b"sshd");
        b.extend_from_slice(&17u16.to_be_bytes());
        b.extend_from_slice(b"user-00112233aabb");
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&600u16.to_be_bytes());
        b.extend_from_slice(&[b'a'; 600]);
        assert_eq!(Request::decode(&b).unwrap_err(), WireError::Password);
    }

    #[test]
    fn given_reply_then_round_trip_and_bad_status_rejected() {
        let r = Reply::new(ReplyStatus::Denied, "wrong password");
        assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        assert_eq!(
            Reply::decode(&[1, 9, 0, 0]).unwrap_err(),
            WireError::Kind(9)
        );
    }
}

//! The requests `pam_codext` sends to `codext-helper`, and its replies.
//!
//! Encoding (inside one frame, see [`crate::frame`]): a protocol version
//! byte, a kind byte, then the kind's fields in a fixed order. A text or
//! byte field is a 2-byte big-endian length and the bytes. Decoding is
//! strict: unknown versions and kinds, bad UTF-8, invalid user names, short
//! fields and trailing bytes are all errors.
//!
//! Version 2 (this one) carries no process id: the helper takes the pid of a
//! session from the socket's peer credentials (`SO_PEERCRED`, attested by
//! the kernel), never from the sender's word. Version 1 put a 4-byte
//! big-endian pid at the end of `open_session` and `close_session`; the
//! helper still reads version 1 for one release ([`Request::decode_any`]),
//! so an sshd that loaded the old module before an upgrade keeps logging
//! people in and out, and it answers each request in the version it came
//! in. Such a claimed pid is handed back separately and never keys a
//! session.
//!
//! One connection carries exactly one request and one reply: the helper
//! accepts nothing else on it (the monitor pattern of OpenSSH's privilege
//! separation, with a single state).

use crate::name::UserName;
use crate::secret::Secret;
use std::fmt;
use zeroize::Zeroizing;

/// Version byte at the start of every request and reply this crate sends.
pub const PROTOCOL_VERSION: u8 = 2;
/// The previous version, whose session requests carry a claimed pid. The
/// helper still accepts it (and answers in it) for one release; nothing
/// sends it any more. Drop it in the release after the one that introduced
/// version 2.
pub const PROTOCOL_VERSION_1: u8 = 1;

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
    /// A session of `user` opens in the process that sends this (sshd's
    /// monitor, which calls `pam_open_session`): the helper keys the session
    /// on the peer's pid from `SO_PEERCRED`.
    OpenSession {
        /// PAM service name.
        service: String,
        /// The account.
        user: UserName,
        /// Source address, may be empty.
        rhost: String,
    },
    /// The session opened by the sending process closes (sshd calls
    /// `pam_close_session` in the same monitor process that opened it).
    CloseSession {
        /// PAM service name.
        service: String,
        /// The account.
        user: UserName,
    },
    /// Liveness check.
    Ping,
    /// Sent before [`Request::OpenSession`] for a login sshd
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

/// A request as the helper read it: the version it came in (the reply
/// goes back in the same one) and, from a version-1 sender, the pid it
/// claimed for a session — kept apart from the request so that nothing
/// keys a session on it.
#[derive(Debug)]
pub struct Received {
    /// [`PROTOCOL_VERSION`] or [`PROTOCOL_VERSION_1`].
    pub version: u8,
    /// The request.
    pub request: Request,
    /// Version 1 `open_session`/`close_session` only: the pid the sender
    /// says it has. Untrusted; for a log line at most.
    pub claimed_pid: Option<u32>,
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
    /// A version byte this side does not read.
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
                "protocol version {v} is not supported (want {PROTOCOL_VERSION}); \
                 pam_codext and codext-helper must come from one release"
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
    fn new(version: u8, kind: u8) -> Writer {
        Writer(Zeroizing::new(vec![version, kind]))
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
    /// Encodes the request in the current version. Texts longer than
    /// [`MAX_TEXT`] are cut; a password longer than [`MAX_PASSWORD`] is
    /// refused.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, WireError> {
        self.encode_in(PROTOCOL_VERSION, 0)
    }

    /// Encodes the request as a version-1 module did, with `claimed_pid` at
    /// the end of a session request. Nothing in codext sends this any more:
    /// it exists to test the helper's compatibility (and that a claimed pid
    /// is ignored).
    pub fn encode_v1(&self, claimed_pid: u32) -> Result<Zeroizing<Vec<u8>>, WireError> {
        self.encode_in(PROTOCOL_VERSION_1, claimed_pid)
    }

    fn encode_in(&self, version: u8, pid: u32) -> Result<Zeroizing<Vec<u8>>, WireError> {
        let v1 = version == PROTOCOL_VERSION_1;
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
                let mut w = Writer::new(version, KIND_AUTHENTICATE);
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
                let mut w = Writer::new(version, KIND_ACCOUNT);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.bytes(clip(rhost).as_bytes());
                w
            }
            Request::OpenSession {
                service,
                user,
                rhost,
            } => {
                let mut w = Writer::new(version, KIND_OPEN_SESSION);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.bytes(clip(rhost).as_bytes());
                if v1 {
                    w.u32(pid);
                }
                w
            }
            Request::CloseSession { service, user } => {
                let mut w = Writer::new(version, KIND_CLOSE_SESSION);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                if v1 {
                    w.u32(pid);
                }
                w
            }
            Request::Ping => Writer::new(version, KIND_PING),
            Request::KeyAccount {
                service,
                user,
                rhost,
                key,
            } => {
                if key.len() > MAX_KEY {
                    return Err(WireError::Text);
                }
                let mut w = Writer::new(version, KIND_KEY_ACCOUNT);
                w.bytes(clip(service).as_bytes());
                w.bytes(user.as_str().as_bytes());
                w.bytes(clip(rhost).as_bytes());
                w.bytes(key.as_bytes());
                w
            }
        };
        Ok(w.0)
    }

    /// Decodes a request of the current version, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        match bytes.first() {
            Some(&PROTOCOL_VERSION) => Ok(Request::decode_any(bytes)?.request),
            Some(&v) => Err(WireError::Version(v)),
            None => Err(WireError::Short),
        }
    }

    /// Decodes a request of the current version or of version 1 (what the
    /// helper reads), strictly: a version-1 session request must end with
    /// its pid, a version-2 one must not.
    pub fn decode_any(bytes: &[u8]) -> Result<Received, WireError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION && version != PROTOCOL_VERSION_1 {
            return Err(WireError::Version(version));
        }
        let v1 = version == PROTOCOL_VERSION_1;
        let mut claimed_pid = None;
        let request = match r.u8()? {
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
            KIND_OPEN_SESSION => {
                let req = Request::OpenSession {
                    service: r.text()?,
                    user: r.user()?,
                    rhost: r.text()?,
                };
                if v1 {
                    claimed_pid = Some(r.u32()?);
                }
                req
            }
            KIND_CLOSE_SESSION => {
                let req = Request::CloseSession {
                    service: r.text()?,
                    user: r.user()?,
                };
                if v1 {
                    claimed_pid = Some(r.u32()?);
                }
                req
            }
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
        Ok(Received {
            version,
            request,
            claimed_pid,
        })
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

    /// Encodes the reply in the current version.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_in(PROTOCOL_VERSION)
    }

    /// Encodes the reply in `version`: the helper answers a request in the
    /// version it came in ([`Received::version`]), so a module of the
    /// previous release can read it. The layout is the same in both.
    pub fn encode_in(&self, version: u8) -> Vec<u8> {
        let mut w = Writer::new(version, self.status as u8);
        w.bytes(clip(&self.reason).as_bytes());
        w.0.to_vec()
    }

    /// Decodes a reply of the current version, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        Reply::decode_in(bytes, PROTOCOL_VERSION)
    }

    /// Decodes a reply that must be of `version`, strictly.
    pub fn decode_in(bytes: &[u8], version: u8) -> Result<Reply, WireError> {
        let mut r = Reader(bytes);
        let got = r.u8()?;
        if got != version {
            return Err(WireError::Version(got));
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
            },
            Request::CloseSession {
                service: "sshd".into(),
                user: user(),
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
            assert_eq!(bytes[0], PROTOCOL_VERSION);
            let back = Request::decode(&bytes).unwrap();
            assert_eq!(format!("{req:?}"), format!("{back:?}"));
            let any = Request::decode_any(&bytes).unwrap();
            assert_eq!((any.version, any.claimed_pid), (PROTOCOL_VERSION, None));
            // The same request as a version-1 module sent it.
            let old = Request::decode_any(&req.encode_v1(4242).unwrap()).unwrap();
            assert_eq!(old.version, PROTOCOL_VERSION_1);
            assert_eq!(format!("{req:?}"), format!("{:?}", old.request));
            let session = matches!(
                req,
                Request::OpenSession { .. } | Request::CloseSession { .. }
            );
            assert_eq!(old.claimed_pid, session.then_some(4242));
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
        assert_eq!(Request::decode(&[2, 99]).unwrap_err(), WireError::Kind(99));
        assert_eq!(
            Request::decode(&[2, 5, 0]).unwrap_err(),
            WireError::Trailing
        );
        // Account with a user field that is not a codext name.
        let mut b = vec![2, 2, 0, 4];
        b.extend_from_slice(b"sshd\0\x04root\0\0");
        assert_eq!(Request::decode(&b).unwrap_err(), WireError::User);
        // Non-UTF-8 service.
        let b = [2, 2, 0, 1, 0xff];
        assert_eq!(Request::decode(&b).unwrap_err(), WireError::Text);
        // Version 1 is read only by decode_any.
        assert_eq!(Request::decode(&[1, 5]).unwrap_err(), WireError::Version(1));
        assert!(Request::decode_any(&[1, 5]).is_ok());
        assert_eq!(
            Request::decode_any(&[3, 5]).unwrap_err(),
            WireError::Version(3)
        );
    }

    #[test]
    fn given_every_truncation_then_short_and_no_panic() {
        let req = Request::OpenSession {
            service: "sshd".into(),
            user: user(),
            rhost: "h".into(),
        };
        for bytes in [req.encode().unwrap(), req.encode_v1(1).unwrap()] {
            for n in 0..bytes.len() {
                assert!(
                    Request::decode_any(&bytes[..n]).is_err(),
                    "prefix {n} decoded"
                );
            }
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
        let mut b = vec![2, 1, 0, 4];
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
            Reply::decode(&[2, 9, 0, 0]).unwrap_err(),
            WireError::Kind(9)
        );
    }

    /// The bytes of PROTOCOL.md's examples: a session request in version 2
    /// (no pid) and as a version-1 module sent it (pid 4242 = 0x1092 at the
    /// end).
    #[test]
    fn given_the_documented_session_frames_then_they_decode_as_documented() {
        let v2: &[u8] = b"\x02\x03\x00\x04sshd\x00\x11user-00112233aabb\x00\x09127.0.0.1";
        let req = Request::OpenSession {
            service: "sshd".into(),
            user: user(),
            rhost: "127.0.0.1".into(),
        };
        assert_eq!(req.encode().unwrap().as_slice(), v2);
        let v1 = [&[1u8][..], &v2[1..], &[0, 0, 0x10, 0x92]].concat();
        assert_eq!(req.encode_v1(4242).unwrap().as_slice(), v1.as_slice());
        let got = Request::decode_any(&v1).unwrap();
        assert_eq!(
            (got.version, got.claimed_pid),
            (PROTOCOL_VERSION_1, Some(4242))
        );
        assert_eq!(format!("{:?}", got.request), format!("{req:?}"));
    }

    #[test]
    fn given_a_pid_appended_to_a_v2_session_request_or_missing_from_a_v1_one_then_refused() {
        let req = Request::CloseSession {
            service: "sshd".into(),
            user: user(),
        };
        // A version-2 sender cannot smuggle a pid in: trailing bytes.
        let mut b = req.encode().unwrap().to_vec();
        b.extend_from_slice(&4242u32.to_be_bytes());
        assert_eq!(Request::decode_any(&b).unwrap_err(), WireError::Trailing);
        // A version-1 session request must carry its pid.
        let mut b = req.encode().unwrap().to_vec();
        b[0] = PROTOCOL_VERSION_1;
        assert_eq!(Request::decode_any(&b).unwrap_err(), WireError::Short);
    }

    #[test]
    fn given_a_reply_in_version_1_then_only_a_version_1_reader_takes_it() {
        let r = Reply::new(ReplyStatus::Ok, "session opened");
        let old = r.encode_in(PROTOCOL_VERSION_1);
        assert_eq!(old[0], 1);
        assert_eq!(Reply::decode_in(&old, PROTOCOL_VERSION_1).unwrap(), r);
        assert_eq!(Reply::decode(&old).unwrap_err(), WireError::Version(1));
        assert_eq!(old[1..], r.encode()[1..]);
    }
}

//! The copy of every audit line sent to journald or syslog.

use super::{AUTHPRIV, SEND_TIMEOUT};
use serde_json::{Map, Value};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// The copy of each audit line sent to the system log: journald's native
/// protocol (structured fields `CODEXT_EVENT=`, `CODEXT_USER=`, …,
/// `CODEXT_SEQ=`, `CODEXT_HASH=`), else an RFC 3164 line to `/dev/log`,
/// facility authpriv. Datagrams, non-blocking: a stuck or absent logger
/// drops copies (counted), never stalls the helper.
#[derive(Debug)]
pub(super) struct SystemLog {
    pub(super) sock: UnixDatagram,
    pub(super) journal: PathBuf,
    pub(super) syslog: PathBuf,
    pub(super) dropped: AtomicU64,
}

/// A journald field name from a JSON key: `CODEXT_` and the key in upper
/// case, anything but letters and digits as `_`.
pub(super) fn field_name(key: &str) -> String {
    let mut s = String::from("CODEXT_");
    s.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

pub(super) fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn severity(event: &str) -> u8 {
    match event {
        "recover" => 4,          // warning
        "attempts_summary" => 5, // notice
        _ => 6,                  // info
    }
}

impl SystemLog {
    pub(super) fn open(journal: &Path, syslog: &Path) -> Option<SystemLog> {
        let sock = UnixDatagram::unbound().ok()?;
        // A logger that reads slowly costs at most this per batch: after
        // one timeout the rest of the batch's copies are dropped.
        sock.set_write_timeout(Some(SEND_TIMEOUT)).ok()?;
        Some(SystemLog {
            sock,
            journal: journal.to_path_buf(),
            syslog: syslog.to_path_buf(),
            dropped: AtomicU64::new(0),
        })
    }

    /// `journald`'s native format (`systemd.journal-fields(7)`, "Native
    /// protocol"): `KEY=value\n`, or `KEY\n<u64 LE length>value\n` for a
    /// value holding a newline.
    pub(super) fn journal_payload(
        body: &Map<String, Value>,
        event: &str,
        message: &str,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |k: &str, v: &str| {
            if v.contains('\n') {
                out.extend_from_slice(k.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            } else {
                out.extend_from_slice(format!("{k}={v}\n").as_bytes());
            }
        };
        put("MESSAGE", message);
        put("PRIORITY", &severity(event).to_string());
        put("SYSLOG_FACILITY", &AUTHPRIV.to_string());
        put("SYSLOG_IDENTIFIER", "codext-helper");
        for (k, v) in body {
            put(&field_name(k), &field_text(v));
        }
        out
    }

    /// Sends one line's copy; false when the logger is there but did not
    /// take it in time. An absent logger is not an error (nothing listens).
    pub(super) fn send(&self, line: &str) -> bool {
        let Ok(Value::Object(body)) = serde_json::from_str::<Value>(line) else {
            return true;
        };
        let event = body.get("event").map(field_text).unwrap_or_default();
        let user = body.get("user").map(field_text).unwrap_or_default();
        let seq = body.get("seq").map(field_text).unwrap_or_default();
        let message = format!("codext audit #{seq} {event} {user}");
        let native = SystemLog::journal_payload(&body, &event, message.trim_end());
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        match self.sock.send_to(&native, &self.journal) {
            Ok(_) => return true,
            Err(e) if timed_out(&e) => return false,
            Err(_) => {}
        }
        // No journald: classic syslog, the fields as KEY="json string".
        let mut text = format!(
            "<{}>codext-helper[{}]: {}",
            AUTHPRIV * 8 + severity(&event),
            std::process::id(),
            message.trim_end()
        );
        for (k, v) in &body {
            text.push(' ');
            text.push_str(&field_name(k));
            text.push('=');
            text.push_str(&Value::String(field_text(v)).to_string());
        }
        !matches!(self.sock.send_to(text.as_bytes(), &self.syslog), Err(e) if timed_out(&e))
    }
}

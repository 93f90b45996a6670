//! Every event the helper writes to the audit trail, as one enum serialised
//! in one place ([`AuditEvent::into_parts`]). The field names are the
//! trail's format (`audit verify`, the tests and `docs/` read them): a
//! variant's fields are written under exactly their names, optional ones
//! only when present. No variant carries a secret.

use serde::Serialize;
use serde_json::{Map, Value};

fn is_false(b: &bool) -> bool {
    !*b
}

/// One audit event. The variant's snake_case name is the `event` field.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// `init` ran.
    Init {
        /// Server key fingerprint.
        fingerprint: String,
        /// Whether this run made the key.
        created: bool,
        /// The codext group.
        gid: u32,
        /// The killer account's uid.
        killer_uid: u32,
    },
    /// The gate decided a channel of a grant with no shell.
    Gate {
        /// Whose.
        user: String,
        /// The grant's profile.
        profile: String,
        /// What was asked (`(login)` for none; the first 256 characters).
        request: String,
        /// `exec`, `enter`, `builtin` or `refused`.
        result: String,
        /// What runs, or why not.
        reason: String,
    },
    /// A grant's container was started (or could not be).
    Container {
        /// Whose.
        user: String,
        /// The grant's profile.
        profile: String,
        /// The image.
        image: String,
        /// `started` or `failed`.
        result: &'static str,
        /// What went wrong.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// How long the start took, ms.
        ms: u64,
    },
    /// A puzzle went out.
    Issue {
        /// For whom.
        user: String,
        /// Its uid.
        uid: u32,
        /// Puzzle id, hex.
        puzzle_id: String,
        /// A further token for a live user.
        renewal: bool,
        /// The agent key.
        client_fingerprint: String,
        /// Where it went.
        channel: String,
        /// Answer deadline.
        expires_at: u64,
        /// The grant's profile.
        profile: String,
    },
    /// An answer was looked at.
    Answer {
        /// Whose.
        user: String,
        /// `armed`, `wrong proof`, `not pending`, `unknown user`.
        result: &'static str,
        /// The uid, once armed (first login).
        #[serde(skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        /// About a renewal slot.
        #[serde(skip_serializing_if = "is_false")]
        renewal: bool,
        /// Channel or `cli`.
        source: String,
    },
    /// A password was looked at.
    Verify {
        /// Whose.
        user: String,
        /// `ok`, `wrong password` (a refusal that changed nothing, such as
        /// `not armed` or `token already used`, is counted in a
        /// `refusals_summary` line instead: [`crate::audit::Counted`]).
        result: &'static str,
        /// About a renewal slot.
        #[serde(skip_serializing_if = "is_false")]
        renewal: bool,
        /// Wrong attempts so far (on a wrong password).
        #[serde(skip_serializing_if = "Option::is_none")]
        attempts: Option<u32>,
        /// PAM_RHOST.
        source: String,
    },
    /// A deadline passed.
    Expire {
        /// Whose.
        user: String,
        /// `pending`, `armed`, `renewal`, `active`.
        phase: &'static str,
    },
    /// A user was ended on purpose.
    Revoke {
        /// Whose.
        user: String,
        /// Why.
        reason: String,
    },
    /// `useradd` made the account as announced.
    Create {
        /// Whose.
        user: String,
        /// Its uid.
        uid: u32,
        /// Its gid.
        gid: u32,
        /// Its home.
        home: std::path::PathBuf,
        /// The grant's profile.
        profile: String,
        /// Its supplementary groups.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        groups: Vec<String>,
        /// Its sudo rules.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sudo: Vec<String>,
    },
    /// Creating the account failed.
    CreateFailed {
        /// Whose.
        user: String,
        /// Always `failed`.
        result: &'static str,
        /// What went wrong.
        error: String,
    },
    /// A session opened.
    SessionOpen {
        /// Whose.
        user: String,
        /// sshd's pid.
        pid: u32,
        /// Open now.
        sessions: usize,
        /// PAM_RHOST.
        source: String,
    },
    /// A session closed.
    SessionClose {
        /// Whose.
        user: String,
        /// sshd's pid.
        pid: u32,
        /// Left open.
        sessions: usize,
    },
    /// A session's sshd process died without closing it (`pid`), or the
    /// reaper dropped such sessions (`dropped`).
    SessionLost {
        /// Whose.
        user: String,
        /// sshd's pid, when one was watched.
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Left open.
        sessions: usize,
        /// How many the reaper dropped.
        #[serde(skip_serializing_if = "Option::is_none")]
        dropped: Option<usize>,
    },
    /// An account was removed (`ok`, `incomplete`) or a removal failed.
    Remove {
        /// Whose.
        user: String,
        /// Its uid (not on failure).
        #[serde(skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        /// `ok`, `incomplete`, `failed`.
        result: &'static str,
        /// Files swept.
        #[serde(skip_serializing_if = "Option::is_none")]
        swept: Option<u64>,
        /// Files left (incomplete).
        #[serde(skip_serializing_if = "Option::is_none")]
        leftovers: Option<u64>,
        /// What went wrong (failed).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A uid is held back.
    Quarantine {
        /// The uid.
        uid: u32,
        /// Its last holder.
        user: String,
        /// Files left.
        leftovers: u64,
        /// The first few.
        named: Vec<String>,
    },
    /// A quarantined uid is free again.
    QuarantineRelease {
        /// The uid.
        uid: u32,
        /// Its last holder.
        user: String,
        /// `sweep` or `operator`.
        by: &'static str,
        /// Files the sweep removed.
        #[serde(skip_serializing_if = "Option::is_none")]
        removed: Option<u64>,
        /// Files left when the operator released it.
        #[serde(skip_serializing_if = "Option::is_none")]
        leftovers_at_last_look: Option<u64>,
    },
    /// State, records or accounts were brought back into agreement.
    Repair {
        /// Whose.
        user: String,
        /// What was done.
        what: String,
        /// Whether an account existed (interrupted creation).
        #[serde(skip_serializing_if = "Option::is_none")]
        account_created: Option<bool>,
    },
    /// An account with no live session was found at start.
    Orphan {
        /// Whose.
        user: String,
        /// Its uid.
        uid: u32,
        /// Sessions it had recorded.
        sessions_lost: usize,
    },
    /// A request refused before reaching the state.
    Refuse {
        /// The request kind.
        request: String,
        /// The user named, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The key offered, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Why.
        reason: String,
        /// Where from.
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// The channel, if it came from one.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'static str>,
    },
    /// A channel published a puzzle.
    Publish {
        /// Whose.
        user: String,
        /// Which channel.
        channel: String,
        /// Puzzle id, hex.
        puzzle_id: String,
    },
    /// The grant's agent key was authorised for key logins.
    KeyAuthorize {
        /// Whose.
        user: String,
        /// The key (on success).
        #[serde(skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        /// Until the grant ends (on success; written even when unknown).
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<Option<u64>>,
        /// `failed`, on failure.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'static str>,
        /// What went wrong.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The grant key was withdrawn.
    KeyWithdraw {
        /// Whose.
        user: String,
    },
    /// A key login was looked at.
    KeyLogin {
        /// Whose.
        user: String,
        /// The key offered (null when unparseable).
        fingerprint: Option<String>,
        /// `ok` or why not.
        result: String,
        /// PAM_RHOST.
        source: String,
    },
    /// The account lingers after its last session.
    Linger {
        /// Whose.
        user: String,
        /// Its uid.
        uid: u32,
        /// Seconds asked for.
        asked: u64,
        /// Seconds granted.
        seconds: u64,
        /// Until then.
        until: u64,
        /// Files swept.
        swept: u64,
        /// Files left.
        leftovers: u64,
    },
    /// A channel's recording began.
    RecordOpen {
        /// The record's id (`<session>.<n>`).
        id: String,
        /// Whose.
        user: String,
        /// The SSH connection (PAM session) it belongs to.
        session: String,
        /// `shell`, `command`, `sftp`, `scp`, `rsync`, `git`.
        kind: &'static str,
        /// The command, cut to 256 characters (none for a shell).
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        /// The record it continues after a helper restart.
        #[serde(skip_serializing_if = "Option::is_none")]
        continues: Option<String>,
    },
    /// A channel's record was sealed; its SHA-256 is what `audit verify`
    /// checks the stored record against.
    Record {
        /// The record's id.
        id: String,
        /// Whose.
        user: String,
        /// SHA-256 of the record file, hex.
        sha256: String,
        /// Its size.
        bytes: u64,
        /// How the channel's command ended (`0`, `3`, `signal 9`), if known.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit: Option<String>,
        /// The record is incomplete.
        #[serde(skip_serializing_if = "is_false")]
        truncated: bool,
        /// Why (when truncated).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A record left the store (age or the store's size).
    RecordExpire {
        /// The record's id.
        id: String,
        /// Whose, when its header said.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// `age` or `size`.
        reason: &'static str,
        /// Its size.
        bytes: u64,
    },
    /// A channel could not be recorded: refused (fail closed), or run
    /// unrecorded because the operator chose to fail open.
    RecordRefuse {
        /// Whose (the peer's uid when it is no codext account).
        user: String,
        /// `refused` or `unrecorded`.
        result: &'static str,
        /// Why.
        reason: String,
    },
}

impl AuditEvent {
    /// The event's name and fields, as the trail writes them: the one place
    /// an event becomes JSON.
    pub fn into_parts(self) -> (String, Value) {
        let mut fields = match serde_json::to_value(&self) {
            Ok(Value::Object(map)) => map,
            // Every variant is a struct of plain fields: cannot happen.
            _ => Map::new(),
        };
        let name = match fields.remove("event") {
            Some(Value::String(s)) => s,
            _ => "unknown".into(),
        };
        // Two shapes of one event share its name in the trail.
        let name = match name.as_str() {
            "create_failed" => "create".to_owned(),
            _ => name,
        };
        (name, Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(e: AuditEvent) -> (String, Value) {
        e.into_parts()
    }

    #[test]
    fn given_events_then_names_and_fields_are_the_trails_format() {
        assert_eq!(
            parts(AuditEvent::Answer {
                user: "user-00112233aabb".into(),
                result: "armed",
                uid: Some(59000),
                renewal: false,
                source: "cli".into()
            }),
            (
                "answer".into(),
                json!({"user": "user-00112233aabb", "result": "armed", "uid": 59000, "source": "cli"})
            )
        );
        assert_eq!(
            parts(AuditEvent::Verify {
                user: "u".into(),
                result: "wrong password",
                renewal: true,
                attempts: Some(2),
                source: "::1".into()
            }),
            (
                "verify".into(),
                json!({"user": "u", "result": "wrong password", "renewal": true, "attempts": 2, "source": "::1"})
            )
        );
        assert_eq!(
            parts(AuditEvent::CreateFailed {
                user: "u".into(),
                result: "failed",
                error: "e".into()
            }),
            (
                "create".into(),
                json!({"user": "u", "result": "failed", "error": "e"})
            )
        );
        assert_eq!(
            parts(AuditEvent::QuarantineRelease {
                uid: 1,
                user: "u".into(),
                by: "operator",
                removed: None,
                leftovers_at_last_look: Some(3)
            }),
            (
                "quarantine_release".into(),
                json!({"uid": 1, "user": "u", "by": "operator", "leftovers_at_last_look": 3})
            )
        );
        assert_eq!(
            parts(AuditEvent::KeyAuthorize {
                user: "u".into(),
                fingerprint: Some("SHA256:x".into()),
                until: Some(None),
                result: None,
                error: None
            }),
            (
                "key_authorize".into(),
                json!({"user": "u", "fingerprint": "SHA256:x", "until": null})
            )
        );
        assert_eq!(
            parts(AuditEvent::SessionLost {
                user: "u".into(),
                pid: None,
                sessions: 0,
                dropped: Some(1)
            }),
            (
                "session_lost".into(),
                json!({"user": "u", "sessions": 0, "dropped": 1})
            )
        );
    }
}

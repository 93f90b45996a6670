//! The state file's layout of an [`Entry`] (format version 1, unchanged
//! since the first release; the grant profile's fields are left out for a shell
//! grant, so such an entry is written exactly as before): the first login's token slot is written as
//! the entry's own `puzzle_id`, `login_hash`, `proof`, `answer_by` and
//! `login_by` fields, a renewal's as the nested `renewal` object, both with
//! the same hex encoding; so an existing `state.json` loads unchanged and
//! an older helper could read what this one writes.

use super::{Entry, RemovalProgress, Session, TokenSlot};
use crate::lifecycle::table::Phase;
use crate::lifecycle::types::{hex_array, hex_used, user_name, Channel, Linger, UnixTime};
use codext_core::token::PROOF_LEN;
use codext_core::ProfileName;
use codext_wire::UserName;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The state file's layout of an entry (format version 1, unchanged since
/// the first release).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntryRecord {
    #[serde(with = "user_name")]
    user: UserName,
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: PathBuf,
    phase: Phase,
    #[serde(with = "hex_array")]
    puzzle_id: [u8; 16],
    #[serde(with = "hex_used")]
    login_hash: Option<[u8; 32]>,
    #[serde(with = "hex_array")]
    proof: [u8; PROOF_LEN],
    client_fingerprint: String,
    channel: Channel,
    issued_at: UnixTime,
    answer_by: UnixTime,
    login_by: Option<UnixTime>,
    created_at: Option<UnixTime>,
    grant_until: Option<UnixTime>,
    attempts: u32,
    sessions: Vec<Session>,
    account_created: bool,
    #[serde(default)]
    renewal: Option<TokenSlot>,
    #[serde(default)]
    removal: Option<RemovalProgress>,
    #[serde(default)]
    puzzle: Option<String>,
    #[serde(default)]
    published: bool,
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default)]
    linger: Option<Linger>,
    // Absent in a state written before profiles: a shell grant.
    #[serde(default, skip_serializing_if = "ProfileName::is_shell")]
    profile: ProfileName,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sudo: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    container: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linger_asked: Option<u64>,
}

impl From<EntryRecord> for Entry {
    fn from(r: EntryRecord) -> Entry {
        Entry {
            user: r.user,
            uid: r.uid,
            gid: r.gid,
            home: r.home,
            shell: r.shell,
            phase: r.phase,
            token: TokenSlot {
                puzzle_id: r.puzzle_id,
                login_hash: r.login_hash,
                proof: r.proof,
                answer_by: r.answer_by,
                login_by: r.login_by,
            },
            client_fingerprint: r.client_fingerprint,
            channel: r.channel,
            issued_at: r.issued_at,
            created_at: r.created_at,
            grant_until: r.grant_until,
            attempts: r.attempts,
            sessions: r.sessions,
            account_created: r.account_created,
            renewal: r.renewal,
            removal: r.removal,
            puzzle: r.puzzle,
            published: r.published,
            client_key: r.client_key,
            linger: r.linger,
            profile: r.profile,
            groups: r.groups,
            sudo: r.sudo,
            container: r.container,
            linger_asked: r.linger_asked,
        }
    }
}

impl From<Entry> for EntryRecord {
    fn from(e: Entry) -> EntryRecord {
        EntryRecord {
            user: e.user,
            uid: e.uid,
            gid: e.gid,
            home: e.home,
            shell: e.shell,
            phase: e.phase,
            puzzle_id: e.token.puzzle_id,
            login_hash: e.token.login_hash,
            proof: e.token.proof,
            client_fingerprint: e.client_fingerprint,
            channel: e.channel,
            issued_at: e.issued_at,
            answer_by: e.token.answer_by,
            login_by: e.token.login_by,
            created_at: e.created_at,
            grant_until: e.grant_until,
            attempts: e.attempts,
            sessions: e.sessions,
            account_created: e.account_created,
            renewal: e.renewal,
            removal: e.removal,
            puzzle: e.puzzle,
            published: e.published,
            client_key: e.client_key,
            linger: e.linger,
            profile: e.profile,
            groups: e.groups,
            sudo: e.sudo,
            container: e.container,
            linger_asked: e.linger_asked,
        }
    }
}

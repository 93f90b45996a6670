//! A new entry, made when its puzzle is issued: pending, no account. Here
//! so that the entry's sealed fields are set by this module tree alone.

use super::{Entry, TokenSlot};
use crate::lifecycle::table::Phase;
use crate::lifecycle::types::{Channel, UnixTime};
use codext_core::ProfileName;
use codext_wire::UserName;
use std::path::PathBuf;

/// What an entry holds when its puzzle is issued; [`Entry::issued`] makes
/// it a pending entry with no account.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The user name.
    pub user: UserName,
    /// Announced uid.
    pub uid: u32,
    /// Announced gid.
    pub gid: u32,
    /// Announced home folder.
    pub home: PathBuf,
    /// Announced shell.
    pub shell: PathBuf,
    /// The first login's token.
    pub token: TokenSlot,
    /// Fingerprint of the agent key the puzzle was sealed to.
    pub client_fingerprint: String,
    /// Channel the puzzle went out on.
    pub channel: Channel,
    /// Issue time.
    pub issued_at: UnixTime,
    /// The puzzle's text while a channel has to publish it.
    pub puzzle: Option<String>,
    /// The agent key, OpenSSH text form.
    pub client_key: Option<String>,
    /// The grant's profile.
    pub profile: ProfileName,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Sudo rules.
    pub sudo: Vec<String>,
    /// A container is started for the grant.
    pub container: bool,
}

impl Entry {
    /// A puzzle was just issued: a pending entry, no account.
    pub fn issued(new: NewEntry) -> Entry {
        Entry {
            user: new.user,
            uid: new.uid,
            gid: new.gid,
            home: new.home,
            shell: new.shell,
            phase: Phase::Pending,
            token: new.token,
            client_fingerprint: new.client_fingerprint,
            channel: new.channel,
            issued_at: new.issued_at,
            created_at: None,
            grant_until: None,
            attempts: 0,
            sessions: Vec::new(),
            account_created: false,
            renewal: None,
            removal: None,
            puzzle: new.puzzle,
            published: false,
            client_key: new.client_key,
            linger: None,
            profile: new.profile,
            groups: new.groups,
            sudo: new.sudo,
            container: new.container,
            linger_asked: None,
        }
    }
}

//! The account a temporary user is announced and created as: its name,
//! uid, gid, home and shell, and nothing else of the entry.
//!
//! The adapters that make, check, kill and remove an account
//! ([`super::host::AccountTool`], [`crate::accounts`], [`crate::userdb`])
//! take this description rather than the whole [`super::Entry`]: what they
//! may act on is then said by their signature, and they cannot read (or
//! be handed a way to change) the entry's phase, token or sessions.

use crate::ids::{Gid, Uid};
use codext_wire::UserName;
use std::path::PathBuf;

/// One account, as announced to NSS and created by `useradd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub name: UserName,
    /// Its uid.
    pub uid: Uid,
    /// Its primary gid (the codext group).
    pub gid: Gid,
    /// Its home folder.
    pub home: PathBuf,
    /// Its login shell.
    pub shell: PathBuf,
}

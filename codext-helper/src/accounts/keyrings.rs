//! The kernel keyrings a removed uid leaves behind (keyrings(7)).
//!
//! A process of U can `keyctl add user NAME DATA @u`: since Linux 5.3 the
//! user keyring (`_uid.U`) and the user session keyring (`_uid_ses.U`)
//! belong to the user namespace, not to U's last process, so they outlive
//! the account, and the next holder of U reads them (measured here on
//! 6.x: a key added by one process of a uid is printed by a later one).
//! So is the persistent keyring (`keyctl get_persistent`, where Kerberos
//! keeps `KEYRING:persistent:` credential caches), for three days. None of
//! them is a file: the sweep cannot find them, the killer does not touch
//! them. [`clear`] empties all three (see [`crate::sys::clear_keyrings_as`]).
//!
//! It runs as part of the sweep of a removed uid, after the killer: a
//! keyring it cannot clear (its owner may take away every permission, and
//! only `CAP_SYS_ADMIN`, which the helper does not hold, or a reboot puts
//! them back) is a leftover, so the uid is quarantined, not handed out.

use super::sweep::Sweep;
use crate::ids::{Gid, Uid};
use crate::sys::{self, KeyringsCleared};
use std::time::Duration;

/// The group the clearing child runs as: it needs none, so nobody's
/// (`nogroup`, the kernel's overflow gid).
const NO_GROUP: Gid = Gid::from_raw(65534);

/// Empties `uid`'s user, user session and persistent keyrings within
/// `deadline`; what could not be cleared is reported as a leftover.
pub fn clear(uid: Uid, deadline: Duration) -> Sweep {
    match sys::clear_keyrings_as(uid, NO_GROUP, deadline) {
        Ok(KeyringsCleared::Cleared) | Ok(KeyringsCleared::Unavailable) => Sweep::default(),
        Err(e) => Sweep {
            removed: 0,
            leftovers: 1,
            named: vec![format!("the kernel keyrings of uid {uid} ({e})")],
            unfinished: false,
        },
    }
}

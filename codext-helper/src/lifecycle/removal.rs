//! The end of a user: revoke, the reaper's expiries, the removal worker
//! (kill, `userdel`, sweep, quarantine of a uid whose files remain), and
//! the reconcile that brings state, accounts and records back into
//! agreement after a crash.

mod quarantine;
mod reaper;
mod reconcile;
mod worker;

// Only the lifecycle tests name it from outside the removal.
#[cfg(test)]
pub use quarantine::CONTAINER_LEFT;

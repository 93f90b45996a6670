//! Session recording, the helper's side: the record store
//! ([`store`]), the record format ([`format`]), what the operator reads
//! ([`view`], [`filter`], [`html`]), the check of the records against the
//! audit trail ([`verify`]), and the host's part ([`host`]: the recorder's
//! group and file mode, doctor's checks).
//!
//! The recording socket the recorder streams to is served by
//! [`crate::daemon::recording`].

pub mod filter;
pub mod format;
pub mod host;
pub mod html;
pub mod store;
pub mod verify;
pub mod view;

//! `pam_codext`: the PAM module sshd loads to let a fresh `user-<hex>` in.
//!
//! It is deliberately thin. For a name outside the `user-…` pattern every
//! hook returns `PAM_IGNORE` at once, with no I/O at all (no socket, no
//! log), so the module is inert for every other user. For a `user-…` name
//! on an allowed service it asks `codext-helper` over its root-only Unix
//! socket and maps the answer to a PAM code; anything unexpected — helper
//! down or slow, malformed reply, a panic — is a denial (fail closed).
//!
//! * [`options`]: module arguments (`socket=`, `services=`, `timeout=`,
//!   `debug`).
//! * [`logic`]: every decision, behind the [`logic::PamContext`] and
//!   [`logic::Helper`] traits so it is unit-tested with scripted fakes.
//! * [`client`]: the blocking socket client with short timeouts.
//! * [`ffi`]: the pamsm glue — the only place `unsafe` appears (inside
//!   pamsm's `pam_module!` expansion) and where `catch_unwind` keeps any
//!   panic from crossing into sshd.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod client;
mod ffi;
pub mod logic;
pub mod options;

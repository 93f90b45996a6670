//! The channel socket: the root helper's side of the boundary with the
//! unprivileged `codext-channel` process, which does every DigitalOcean
//! API call (the helper links no HTTP or TLS code).
//!
//! What it guarantees (OpenSSH's monitor is the model):
//! * served only to the configured channel user: `SO_PEERCRED` is checked
//!   on every connection (the socket is also 0660 root:<channel group> in
//!   a 0750 folder, but modes are not trusted alone); at most
//!   [`MAX_CONNECTIONS`] at once, each with read and write timeouts;
//! * one gate, [`gate::TABLE`] (OpenSSH's `mon_table`): a row per verb
//!   says in which stage of the connection it is allowed (a connection
//!   must open with `hello` and the right protocol version, and says it
//!   once) and what it must name, checked before its handler runs: a
//!   puzzle only for a key on the allow-list (checked here, from the key
//!   itself), an answer only for a user of this server on this channel,
//!   "published" only for a puzzle waiting to be published; a verb
//!   without a row is refused;
//! * every refusal is a clear
//!   [`Reply::Refused`](codext_core::channel_wire::Reply::Refused) and
//!   changes nothing;
//! * requests are rate-limited (a token bucket of [`BURST`] refilled at
//!   [`PER_SECOND`] a second, shared by all connections) and the puzzles
//!   out on this channel are capped at [`MAX_PENDING`], so a compromised
//!   channel process can at most deny service and ask for puzzles for
//!   allowed keys (which only their holders can open).
//!
//! The requests call the same [`Helper`](crate::lifecycle::Helper) methods
//! as the CLI verbs.
//!
//! Where each part lives, in the order a frame meets them:
//! * [`listener`]: the channel user, the socket and its folder, the peer's
//!   uid, the cap on connections, each connection's loop, the token bucket;
//! * [`gate`]: `TABLE` and the one gate that checks a verb's row (its
//!   stages, what it must name) before its handler;
//! * [`checks`]: what a request names (`allowed_key`, `channel_user`,
//!   `waiting_puzzle`) and the counted refusal (`refuse`);
//! * [`handlers`]: each verb's handler (`hello` … `wait`) and the channel a
//!   `hello` announces (`announced`);
//! * [`types`]: what they share (the connection's stage and state, what a
//!   request must name and what the gate found, the shared state).

mod checks;
mod gate;
mod handlers;
mod listener;
mod types;

pub use handlers::MAX_PENDING;
pub use listener::{
    ensure_channel_user, spawn, BURST, CHANNEL_USER_COMMENT, MAX_CONNECTIONS, PER_SECOND,
};

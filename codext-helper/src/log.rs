//! The helper's log: the daemons' shared levelled log
//! ([`codext_core::log`]), as `codext-helper`, through the macros
//! [`error!`](crate::log::error), [`warn!`](crate::log::warn),
//! [`info!`](crate::log::info) and [`debug!`](crate::log::debug).

pub use codext_core::log::*;
/// A line at [`Level::Debug`].
pub(crate) use codext_core::log_debug as debug;
/// A line at [`Level::Error`].
pub(crate) use codext_core::log_error as error;
/// A line at [`Level::Info`].
pub(crate) use codext_core::log_info as info;
/// A line at [`Level::Warning`].
pub(crate) use codext_core::log_warn as warn;

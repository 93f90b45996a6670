//! The helper's one error type, and how it maps to exit statuses and
//! socket replies. Messages never contain a secret.

use std::fmt;

/// Result with [`HelperError`].
pub type Result<T> = std::result::Result<T, HelperError>;

/// What can go wrong in the helper.
#[derive(Debug)]
pub enum HelperError {
    /// Bad configuration file.
    Config(String),
    /// A protocol or key problem from the core.
    Core(codext_core::Error),
    /// Bad input on the command line (user name, answer, duration…).
    Input(String),
    /// The state folder or file is unusable.
    State(String),
    /// A named user is not pending / not known.
    UnknownUser(String),
    /// A proof or password was wrong.
    Refused(String),
    /// Creating or removing an account failed.
    Account(String),
    /// No free uid in the configured range.
    NoUid,
    /// The daemon's socket or another OS facility failed.
    System(String),
    /// The audit chain links, but a recovery recorded entries it could not
    /// find (a crash that lost data, or a cut).
    AuditGaps(String),
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperError::Config(m) => write!(f, "configuration: {m}"),
            HelperError::Core(e) => write!(f, "{e}"),
            HelperError::Input(m) => write!(f, "{m}"),
            HelperError::State(m) => write!(f, "state: {m}"),
            HelperError::UnknownUser(u) => write!(f, "{u} is not a pending codext user"),
            HelperError::Refused(m) => write!(f, "refused: {m}"),
            HelperError::Account(m) => write!(f, "account: {m}"),
            HelperError::NoUid => write!(f, "no free uid left in the configured range: widen accounts.uid_min..uid_max or wait for removals"),
            HelperError::System(m) => write!(f, "{m}"),
            HelperError::AuditGaps(m) => write!(f, "audit trail: {m}"),
        }
    }
}

impl std::error::Error for HelperError {}

impl From<codext_core::Error> for HelperError {
    fn from(e: codext_core::Error) -> HelperError {
        HelperError::Core(e)
    }
}

impl HelperError {
    /// Exit status for the CLI: 2 bad input or config, 3 refused or
    /// unknown, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            HelperError::Config(_) | HelperError::Input(_) => 2,
            HelperError::Core(codext_core::Error::AnswerFormat(_))
            | HelperError::Core(codext_core::Error::KeyFormat(_))
            | HelperError::Core(codext_core::Error::KeyPolicy(_))
            | HelperError::Core(codext_core::Error::FilePolicy(_)) => 2,
            HelperError::Refused(_) | HelperError::UnknownUser(_) => 3,
            HelperError::AuditGaps(_) => 4,
            _ => 1,
        }
    }
}

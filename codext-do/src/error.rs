//! The errors of talking to DigitalOcean: what its API or metadata service
//! answered, or failed to. Each message says what happened and what to do;
//! none contains the API token (the client scrubs it from every text it
//! passes on).

use std::fmt;

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong between codext and DigitalOcean.
#[derive(Debug)]
pub enum Error {
    /// The DigitalOcean API refused a request (a 4xx other than 429, or a
    /// 5xx that persisted through the retries).
    Api {
        /// HTTP status.
        status: u16,
        /// DigitalOcean's error `id` (e.g. `unauthorized`); empty if none.
        id: String,
        /// DigitalOcean's error `message`.
        message: String,
        /// DigitalOcean's `request_id`, for its support; empty if none.
        request_id: String,
    },
    /// An HTTP service (the DigitalOcean API, the droplet metadata service)
    /// could not be reached or answered nonsense at the transport level.
    Http(String),
    /// Going on would mean waiting longer for the API's rate limit than the
    /// configured maximum.
    RateLimited {
        /// How long the API asks to wait, in seconds.
        wait_secs: u64,
    },
    /// A successful API answer that is not in the documented shape.
    ApiFormat(String),
    /// A string that cannot be a DigitalOcean tag name.
    TagName(String),
    /// A protocol or key problem (a key the account lists that is not a
    /// codext key, the OS random generator).
    Core(codext_core::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api {
                status,
                id,
                message,
                request_id,
            } => {
                write!(f, "the DigitalOcean API answered HTTP {status}")?;
                if !id.is_empty() {
                    write!(f, " {id}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                if !request_id.is_empty() {
                    write!(f, " (request id {request_id})")?;
                }
                match status {
                    401 => write!(f, "; check the API token (is it valid and not expired?)"),
                    403 => write!(f, "; the API token lacks a scope this needs (tag, droplet, ssh_key)"),
                    _ => Ok(()),
                }
            }
            Error::Http(m) => write!(f, "HTTP request failed: {m}"),
            Error::RateLimited { wait_secs } => write!(
                f,
                "the DigitalOcean API rate limit asks to wait {wait_secs} s, longer than allowed: try again later"
            ),
            Error::ApiFormat(m) => write!(f, "unexpected answer from the DigitalOcean API: {m}"),
            Error::TagName(m) => write!(
                f,
                "not a valid DigitalOcean tag name (letters, digits, '_', '-', ':', at most 255): {m}"
            ),
            Error::Core(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<codext_core::Error> for Error {
    fn from(e: codext_core::Error) -> Error {
        Error::Core(e)
    }
}

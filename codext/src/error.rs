//! The client's error type and its exit statuses.

use std::fmt;

/// Result with [`ClientError`].
pub type Result<T> = std::result::Result<T, ClientError>;

/// What can go wrong on the agent's side.
#[derive(Debug)]
pub enum ClientError {
    /// Protocol or key problem.
    Core(codext_core::Error),
    /// The DigitalOcean API or metadata service.
    Api(codext_do::Error),
    /// Bad command-line input.
    Input(String),
    /// The server could not be verified or reached.
    Host(String),
    /// Anything else (I/O, a child process).
    Other(String),
    /// The ssh login itself failed (token refused, no master).
    Login(String),
    /// A valid puzzle the agent will not use: it grants
    /// another profile than the one asked for.
    Refused(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Core(e) => write!(f, "{e}"),
            ClientError::Api(e) => write!(f, "{e}"),
            ClientError::Input(m)
            | ClientError::Host(m)
            | ClientError::Other(m)
            | ClientError::Login(m)
            | ClientError::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<codext_core::Error> for ClientError {
    fn from(e: codext_core::Error) -> ClientError {
        ClientError::Core(e)
    }
}

impl From<codext_do::Error> for ClientError {
    fn from(e: codext_do::Error) -> ClientError {
        match e {
            // A key or protocol problem keeps its own exit status.
            codext_do::Error::Core(e) => ClientError::Core(e),
            e => ClientError::Api(e),
        }
    }
}

impl ClientError {
    /// 2: malformed input; 3: refused (signature, key, expiry, host); 4:
    /// the ssh login failed; 1: other.
    pub fn exit_code(&self) -> i32 {
        use codext_core::Error as E;
        match self {
            ClientError::Input(_) => 2,
            ClientError::Core(E::PuzzleFormat(_) | E::AnswerFormat(_) | E::KeyFormat(_)) => 2,
            ClientError::Core(
                E::BadSignature
                | E::WrongSigner { .. }
                | E::WrongRecipient
                | E::Decrypt
                | E::PuzzleContent(_)
                | E::Expired { .. }
                | E::KeyPolicy(_)
                | E::FilePolicy(_),
            ) => 3,
            ClientError::Host(_) | ClientError::Refused(_) => 3,
            ClientError::Login(_) => 4,
            _ => 1,
        }
    }
}

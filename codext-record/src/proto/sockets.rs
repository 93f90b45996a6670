//! Where the recorder finds the helper: the fixed socket paths.

/// The folder of the recording socket: root's, group the recorder's group,
/// mode 0750 (only a process running the setgid recorder can enter it).
pub const SOCKET_DIR: &str = "/run/codext-record";
/// The recording socket. A fixed path: the recorder has no trusted way to
/// learn another one (its environment and files belong to the user).
pub const SOCKET: &str = "/run/codext-record/socket";

/// The socket a recorder passes a container grant's channel
/// through (its descriptors, with `SCM_RIGHTS`): the helper runs the
/// session in the grant's container on them. Beside [`SOCKET`], in the
/// same root:recorder-group 0750 folder.
pub const ENTER_SOCKET: &str = "/run/codext-record/enter";

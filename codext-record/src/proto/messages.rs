//! The messages of each direction and the values they carry.

/// What the recorder runs once the helper accepted the channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Run {
    /// The real shell, as sshd would have run it (a `shell` grant).
    #[default]
    Shell,
    /// This program with these arguments, directly (no shell), in `cwd`,
    /// with exactly `env` plus the channel's own `TERM` and `SSH_*`
    /// variables (a `commands` grant's allowed command or transfer).
    Exec {
        /// The program (absolute) and its arguments.
        argv: Vec<Vec<u8>>,
        /// The working folder.
        cwd: Vec<u8>,
        /// The environment the helper sets.
        env: Vec<(Vec<u8>, Vec<u8>)>,
        /// An sftp server confined to this folder (empty: not confined):
        /// the recorder judges every request ([`crate::confine`]).
        confine: Vec<u8>,
    },
    /// Nothing runs: print this and exit with `code` (the gate answered
    /// itself, e.g. `codext-grant linger`).
    Print {
        /// What goes to standard output.
        text: Vec<u8>,
        /// The exit status.
        code: i32,
    },
    /// The channel runs in the grant's container: pass its descriptors to
    /// the helper through [`ENTER_SOCKET`].
    Enter,
}

/// Which descriptor a `Data` frame came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// What the client sent: keystrokes of a terminal (only when the
    /// operator turned input recording on), or a command's standard input.
    In,
    /// Terminal output, or a command's standard output.
    Out,
    /// A command's standard error (a terminal has none of its own).
    Err,
}

impl Stream {
    pub(super) fn byte(self) -> u8 {
        match self {
            Stream::In => 0,
            Stream::Out => 1,
            Stream::Err => 2,
        }
    }
    pub(super) fn from_byte(b: u8) -> Option<Stream> {
        match b {
            0 => Some(Stream::In),
            1 => Some(Stream::Out),
            2 => Some(Stream::Err),
            _ => None,
        }
    }
    /// The event code in a record (`i`, `o`, `e`).
    pub fn code(self) -> &'static str {
        match self {
            Stream::In => "i",
            Stream::Out => "o",
            Stream::Err => "e",
        }
    }
}

/// How the channel's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

/// The recorder's first frame: what this channel is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// sshd gave the channel a terminal.
    pub tty: bool,
    /// A login shell (sshd ran `-codext-record`), not `-c COMMAND`.
    pub login: bool,
    /// Terminal size (0 without a terminal).
    pub cols: u16,
    /// Terminal size (0 without a terminal).
    pub rows: u16,
    /// The recorder's clock (µs since it started) when it said hello; the
    /// events' times are on the same clock.
    pub t_us: u64,
    /// The command (`-c COMMAND`), at most [`MAX_COMMAND`] bytes.
    pub command: Vec<u8>,
    /// The command was longer and was cut.
    pub command_cut: bool,
    /// `TERM`.
    pub term: String,
    /// `SSH_CONNECTION` (client address and port, server address and port).
    pub ssh_connection: String,
    /// After the helper restarted mid-channel: the record this one
    /// continues (empty otherwise).
    pub continues: String,
    /// sshd forced the gate of this profile (`ForceCommand
    /// <recorder> --gate <profile>`): `command` and `login` are then the
    /// request (`SSH_ORIGINAL_COMMAND`, or none), not the forced command.
    pub gate: Option<String>,
}

/// A frame from the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToHelper<'a> {
    /// The first frame.
    Hello(Hello),
    /// The only frame on [`ENTER_SOCKET`], sent with the
    /// session's three descriptors (`SCM_RIGHTS`): run the channel in the
    /// grant's container on them.
    Enter {
        /// The descriptors are a terminal.
        tty: bool,
        /// No command: a login shell.
        login: bool,
        /// `TERM`.
        term: String,
        /// The command (when not `login`).
        command: Vec<u8>,
    },
    /// Bytes that went through the channel.
    Data {
        /// Which way.
        stream: Stream,
        /// When (µs on the recorder's clock).
        t_us: u64,
        /// The bytes (at most [`MAX_DATA`]).
        bytes: &'a [u8],
    },
    /// The terminal was resized.
    Resize {
        /// When.
        t_us: u64,
        /// New size.
        cols: u16,
        /// New size.
        rows: u16,
    },
    /// An sftp request the client made (decoded by the recorder).
    Sftp {
        /// When.
        t_us: u64,
        /// `open`, `remove`, `rename`, …
        op: &'a str,
        /// The path it names.
        path: &'a [u8],
        /// A second path (rename, symlink, hardlink), else empty.
        path2: &'a [u8],
        /// Flags or byte counts, as text; may be empty.
        detail: &'a str,
    },
    /// Bytes relayed on `stream` that the recorder did not send, because
    /// the record would not keep them (past a cap, or a channel whose data
    /// is not kept): counted, so the record says how much was dropped.
    Count {
        /// Which way.
        stream: Stream,
        /// How many bytes.
        bytes: u64,
    },
    /// The command ended; nothing follows.
    End {
        /// When.
        t_us: u64,
        /// How.
        exit: Exit,
    },
}

/// A frame from the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToRecorder {
    /// Go ahead.
    Accept {
        /// The record's id (empty when not recording).
        id: String,
        /// The real shell to run (`[accounts] shell`).
        shell: Vec<u8>,
        /// Stream the channel (false: the helper cannot store it and the
        /// operator chose to fail open — run unrecorded).
        record: bool,
        /// Send a terminal's keystrokes too (`[recording] input`).
        input: bool,
        /// If the helper becomes unreachable mid-channel and stays so, run
        /// on unrecorded (true) or end the channel (false).
        fail_open: bool,
        /// Bytes of data to send as they pass, from the start (the part
        /// the record keeps first).
        head_bytes: u64,
        /// Past those, the newest bytes to keep in the recorder and send
        /// at least every [`FLUSH_MS`] (the part the record keeps last).
        tail_bytes: u64,
        /// Bytes of a command's standard input to send (the record's cap).
        input_bytes: u64,
        /// What runs (sent only when not [`Run::Shell`], so a
        /// shell grant's accept is the bytes it always was).
        run: Run,
    },
    /// No: the channel must not run. The reason is for the user.
    Refuse {
        /// Why.
        reason: String,
    },
    /// The record is sealed (answer to `End`).
    Closed {
        /// Its SHA-256, hex, as written to the audit trail.
        sha256: String,
    },
    /// The container session of an [`ToHelper::Enter`] ended.
    Exited {
        /// How.
        exit: Exit,
    },
}

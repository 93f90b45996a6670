//! The recording protocol between `codext-record` (the recorder, running as
//! the temporary user) and `codext-helper` (root), over the recording
//! socket [`SOCKET`].
//!
//! **Frames.** A 4-byte big-endian length, then that many bytes (as
//! `codext-wire`'s frames). The length is checked against [`MAX_FRAME`]
//! *before* anything is read into the caller's buffer, which is allocated
//! once per connection at [`MAX_FRAME`] bytes: a peer can make neither side
//! allocate more, and a short or garbled frame ends the connection.
//!
//! **Messages.** The first byte of a frame is its kind; the fields follow in
//! a fixed order; integers are big-endian; a text or byte field is a 2-byte
//! length and the bytes, capped per field. Decoding is strict: unknown
//! kinds, over-long fields, short fields and trailing bytes are errors.
//!
//! **Conversation.** The recorder opens with [`Hello`]; the helper checks
//! the peer (see `codext-helper/src/daemon/recording.rs`) and answers
//! [`ToRecorder::Accept`] or [`ToRecorder::Refuse`]. Then the recorder
//! streams `Data`, `Count`, `Resize` and `Sftp` frames and ends with `End`;
//! the helper seals the record and answers [`ToRecorder::Closed`] with the
//! record's SHA-256 (as written to the audit trail; the recorder need not
//! wait for it). Nothing else is valid in either direction.

use std::fmt;
use std::io::{self, Read, Write};

/// Protocol version carried in [`Hello`] and [`ToRecorder::Accept`].
pub const PROTOCOL: u8 = 1;
/// The folder of the recording socket: root's, group the recorder's group,
/// mode 0750 (only a process running the setgid recorder can enter it).
pub const SOCKET_DIR: &str = "/run/codext-record";
/// The recording socket. A fixed path: the recorder has no trusted way to
/// learn another one (its environment and files belong to the user).
pub const SOCKET: &str = "/run/codext-record/socket";
/// Most bytes of terminal or pipe data in one `Data` frame.
pub const MAX_DATA: usize = 64 * 1024;
/// Largest frame body either side accepts: a full `Data` frame and its
/// header, or a `Hello` with the longest command.
pub const MAX_FRAME: usize = MAX_DATA + 64;
/// Longest command line carried (longer ones are cut, and say so).
pub const MAX_COMMAND: usize = 32 * 1024;
/// Longest short text (terminal type, client address, ids, reasons).
pub const MAX_TEXT: usize = 512;
/// Longest path in an sftp operation (longer ones are cut).
pub const MAX_PATH: usize = 4096;
/// Longest time data past the first part waits in the recorder before it
/// is sent (milliseconds).
pub const FLUSH_MS: u64 = 250;

const HELLO: u8 = 1;
const DATA: u8 = 2;
const RESIZE: u8 = 3;
const SFTP: u8 = 4;
const END: u8 = 5;
const COUNT: u8 = 6;
const ENTER: u8 = 7;
const ACCEPT: u8 = 16;
const REFUSE: u8 = 17;
const CLOSED: u8 = 18;
const EXITED: u8 = 19;

/// (issue 26) The socket a recorder passes a container grant's channel
/// through (its descriptors, with `SCM_RIGHTS`): the helper runs the
/// session in the grant's container on them. Beside [`SOCKET`], in the
/// same root:recorder-group 0750 folder.
pub const ENTER_SOCKET: &str = "/run/codext-record/enter";
/// Longest refusal (a gate's refusal lists what is allowed).
pub const MAX_REASON: usize = 4096;
/// Most words of a command the helper has the recorder run.
pub const MAX_ARGV: usize = 128;
/// Most environment variables the helper sets for it.
pub const MAX_ENV: usize = 32;

/// (issue 26) What the recorder runs once the helper accepted the channel.
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
    fn byte(self) -> u8 {
        match self {
            Stream::In => 0,
            Stream::Out => 1,
            Stream::Err => 2,
        }
    }
    fn from_byte(b: u8) -> Option<Stream> {
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
    /// (issue 26) sshd forced the gate of this profile (`ForceCommand
    /// <recorder> --gate <profile>`): `command` and `login` are then the
    /// request (`SSH_ORIGINAL_COMMAND`, or none), not the forced command.
    pub gate: Option<String>,
}

/// A frame from the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToHelper<'a> {
    /// The first frame.
    Hello(Hello),
    /// (issue 26) The only frame on [`ENTER_SOCKET`], sent with the
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
        /// (issue 26) What runs (sent only when not [`Run::Shell`], so a
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
    /// (issue 26) The container session of an [`ToHelper::Enter`] ended.
    Exited {
        /// How.
        exit: Exit,
    },
}

/// Why a frame could not be read, written or understood.
#[derive(Debug)]
pub enum ProtoError {
    /// A frame length of 0 or above [`MAX_FRAME`].
    BadLength(u32),
    /// The peer closed the connection at a frame boundary.
    Closed,
    /// The peer closed the connection mid-frame.
    Truncated,
    /// The socket failed.
    Io(io::Error),
    /// A frame that is not a valid message.
    Malformed(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadLength(n) => write!(f, "frame length {n} is outside 1..={MAX_FRAME}"),
            ProtoError::Closed => write!(f, "the peer closed the connection"),
            ProtoError::Truncated => write!(f, "the peer closed the connection mid-frame"),
            ProtoError::Io(e) => write!(f, "socket error: {e}"),
            ProtoError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Reads one frame body into `buf` and returns it. `buf` grows to the
/// largest frame read (at most [`MAX_FRAME`]) and is reused as it is:
/// nothing is allocated or cleared per frame.
pub fn read_frame<'b>(r: &mut impl Read, buf: &'b mut Vec<u8>) -> Result<&'b [u8], ProtoError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(ProtoError::Closed),
            Ok(0) => return Err(ProtoError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtoError::Io(e)),
        }
    }
    let n = u32::from_be_bytes(len);
    let size = usize::try_from(n).map_err(|_| ProtoError::BadLength(n))?;
    if size == 0 || size > MAX_FRAME {
        return Err(ProtoError::BadLength(n));
    }
    if buf.len() < size {
        buf.resize(size, 0);
    }
    let body = &mut buf[..size];
    r.read_exact(body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ProtoError::Truncated
        } else {
            ProtoError::Io(e)
        }
    })?;
    Ok(body)
}

/// Writes `body` as one frame (one `write` of prefix and body, from
/// `scratch`, which is reused).
pub fn write_frame(w: &mut impl Write, body: &[u8], scratch: &mut Vec<u8>) -> io::Result<()> {
    if body.is_empty() || body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame body outside 1..=MAX_FRAME",
        ));
    }
    scratch.clear();
    // Lossless: checked against MAX_FRAME above.
    scratch.extend_from_slice(&(body.len() as u32).to_be_bytes());
    scratch.extend_from_slice(body);
    w.write_all(scratch)
}

/// Appends `b` as a 2-byte length and the bytes, cut to `max`.
fn put_bytes(out: &mut Vec<u8>, b: &[u8], max: usize) {
    let b = &b[..b.len().min(max).min(u16::MAX as usize)];
    // Lossless: at most u16::MAX.
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.b.len() < n {
            return Err(ProtoError::Malformed("short field"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn i32(&mut self) -> Result<i32, ProtoError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(i32::from_be_bytes(a))
    }
    fn bytes(&mut self, max: usize) -> Result<&'a [u8], ProtoError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(ProtoError::Malformed("field too long"));
        }
        self.take(n)
    }
    fn text(&mut self, max: usize) -> Result<&'a str, ProtoError> {
        std::str::from_utf8(self.bytes(max)?).map_err(|_| ProtoError::Malformed("text not UTF-8"))
    }
    fn done(&self) -> Result<(), ProtoError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Malformed("trailing bytes"))
        }
    }
}

impl ToHelper<'_> {
    /// Encodes into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        self.encode_append(out);
    }

    /// Encodes as a whole frame, length first, into `out` (cleared first):
    /// what [`write_frame`] would send, built in one buffer.
    pub fn encode_framed(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[0; 4]);
        self.encode_append(out);
        // Lossless: a message is at most MAX_FRAME bytes.
        let len = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
    }

    /// For a `Data` frame: its length prefix and header, 14 bytes, to be
    /// followed by the data itself (written without copying it).
    pub fn data_header(stream: Stream, t_us: u64, len: usize) -> [u8; 14] {
        let mut h = [0u8; 14];
        // Lossless: the data is at most MAX_DATA bytes.
        h[..4].copy_from_slice(&((len + 10) as u32).to_be_bytes());
        h[4] = DATA;
        h[5] = stream.byte();
        h[6..14].copy_from_slice(&t_us.to_be_bytes());
        h
    }

    fn encode_append(&self, out: &mut Vec<u8>) {
        match self {
            ToHelper::Hello(h) => {
                out.push(HELLO);
                out.push(PROTOCOL);
                out.push(
                    u8::from(h.tty)
                        | (u8::from(h.login) << 1)
                        | (u8::from(h.command_cut) << 2)
                        | (u8::from(h.gate.is_some()) << 3),
                );
                out.extend_from_slice(&h.cols.to_be_bytes());
                out.extend_from_slice(&h.rows.to_be_bytes());
                out.extend_from_slice(&h.t_us.to_be_bytes());
                put_bytes(out, &h.command, MAX_COMMAND);
                put_bytes(out, cut_str(&h.term, MAX_TEXT).as_bytes(), MAX_TEXT);
                put_bytes(
                    out,
                    cut_str(&h.ssh_connection, MAX_TEXT).as_bytes(),
                    MAX_TEXT,
                );
                put_bytes(out, cut_str(&h.continues, MAX_TEXT).as_bytes(), MAX_TEXT);
                if let Some(g) = &h.gate {
                    put_bytes(out, cut_str(g, MAX_TEXT).as_bytes(), MAX_TEXT);
                }
            }
            ToHelper::Enter {
                tty,
                login,
                term,
                command,
            } => {
                out.push(ENTER);
                out.push(PROTOCOL);
                out.push(u8::from(*tty) | (u8::from(*login) << 1));
                put_bytes(out, cut_str(term, MAX_TEXT).as_bytes(), MAX_TEXT);
                put_bytes(out, command, MAX_COMMAND);
            }
            ToHelper::Data {
                stream,
                t_us,
                bytes,
            } => {
                out.push(DATA);
                out.push(stream.byte());
                out.extend_from_slice(&t_us.to_be_bytes());
                out.extend_from_slice(&bytes[..bytes.len().min(MAX_DATA)]);
            }
            ToHelper::Resize { t_us, cols, rows } => {
                out.push(RESIZE);
                out.extend_from_slice(&t_us.to_be_bytes());
                out.extend_from_slice(&cols.to_be_bytes());
                out.extend_from_slice(&rows.to_be_bytes());
            }
            ToHelper::Sftp {
                t_us,
                op,
                path,
                path2,
                detail,
            } => {
                out.push(SFTP);
                out.extend_from_slice(&t_us.to_be_bytes());
                put_bytes(out, cut_str(op, MAX_TEXT).as_bytes(), MAX_TEXT);
                put_bytes(out, path, MAX_PATH);
                put_bytes(out, path2, MAX_PATH);
                put_bytes(out, cut_str(detail, MAX_TEXT).as_bytes(), MAX_TEXT);
            }
            ToHelper::Count { stream, bytes } => {
                out.push(COUNT);
                out.push(stream.byte());
                out.extend_from_slice(&bytes.to_be_bytes());
            }
            ToHelper::End { t_us, exit } => {
                out.push(END);
                out.extend_from_slice(&t_us.to_be_bytes());
                let (kind, code) = match exit {
                    Exit::Code(c) => (0u8, *c),
                    Exit::Signal(s) => (1u8, *s),
                };
                out.push(kind);
                out.extend_from_slice(&code.to_be_bytes());
            }
        }
    }

    /// Decodes one frame body; `Data` and `Sftp` borrow from it.
    pub fn decode(body: &[u8]) -> Result<ToHelper<'_>, ProtoError> {
        let mut r = Reader { b: body };
        let msg = match r.u8()? {
            HELLO => {
                if r.u8()? != PROTOCOL {
                    return Err(ProtoError::Malformed("unknown protocol version"));
                }
                let flags = r.u8()?;
                if flags & !0b1111 != 0 {
                    return Err(ProtoError::Malformed("unknown hello flags"));
                }
                let cols = r.u16()?;
                let rows = r.u16()?;
                let t_us = r.u64()?;
                let command = r.bytes(MAX_COMMAND)?.to_vec();
                let term = r.text(MAX_TEXT)?.to_owned();
                let ssh_connection = r.text(MAX_TEXT)?.to_owned();
                let continues = r.text(MAX_TEXT)?.to_owned();
                let gate = if flags & 8 != 0 {
                    Some(r.text(MAX_TEXT)?.to_owned())
                } else {
                    None
                };
                ToHelper::Hello(Hello {
                    tty: flags & 1 != 0,
                    login: flags & 2 != 0,
                    command_cut: flags & 4 != 0,
                    cols,
                    rows,
                    t_us,
                    command,
                    term,
                    ssh_connection,
                    continues,
                    gate,
                })
            }
            ENTER => {
                if r.u8()? != PROTOCOL {
                    return Err(ProtoError::Malformed("unknown protocol version"));
                }
                let flags = r.u8()?;
                if flags & !0b11 != 0 {
                    return Err(ProtoError::Malformed("unknown enter flags"));
                }
                ToHelper::Enter {
                    tty: flags & 1 != 0,
                    login: flags & 2 != 0,
                    term: r.text(MAX_TEXT)?.to_owned(),
                    command: r.bytes(MAX_COMMAND)?.to_vec(),
                }
            }
            DATA => {
                let stream =
                    Stream::from_byte(r.u8()?).ok_or(ProtoError::Malformed("unknown stream"))?;
                let t_us = r.u64()?;
                let bytes = r.b;
                if bytes.is_empty() || bytes.len() > MAX_DATA {
                    return Err(ProtoError::Malformed("data frame size"));
                }
                r.b = &[];
                ToHelper::Data {
                    stream,
                    t_us,
                    bytes,
                }
            }
            RESIZE => ToHelper::Resize {
                t_us: r.u64()?,
                cols: r.u16()?,
                rows: r.u16()?,
            },
            SFTP => ToHelper::Sftp {
                t_us: r.u64()?,
                op: r.text(MAX_TEXT)?,
                path: r.bytes(MAX_PATH)?,
                path2: r.bytes(MAX_PATH)?,
                detail: r.text(MAX_TEXT)?,
            },
            COUNT => ToHelper::Count {
                stream: Stream::from_byte(r.u8()?)
                    .ok_or(ProtoError::Malformed("unknown stream"))?,
                bytes: r.u64()?,
            },
            END => {
                let t_us = r.u64()?;
                let kind = r.u8()?;
                let code = r.i32()?;
                let exit = match kind {
                    0 => Exit::Code(code),
                    1 => Exit::Signal(code),
                    _ => return Err(ProtoError::Malformed("unknown exit kind")),
                };
                ToHelper::End { t_us, exit }
            }
            _ => return Err(ProtoError::Malformed("unknown message kind")),
        };
        r.done()?;
        Ok(msg)
    }
}

impl ToRecorder {
    /// Encodes into a fresh buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ToRecorder::Accept {
                id,
                shell,
                record,
                input,
                fail_open,
                head_bytes,
                tail_bytes,
                input_bytes,
                run,
            } => {
                out.push(ACCEPT);
                out.push(PROTOCOL);
                let has_run = *run != Run::Shell;
                out.push(
                    u8::from(*record)
                        | (u8::from(*input) << 1)
                        | (u8::from(*fail_open) << 2)
                        | (u8::from(has_run) << 3),
                );
                put_bytes(&mut out, cut_str(id, MAX_TEXT).as_bytes(), MAX_TEXT);
                put_bytes(&mut out, shell, MAX_PATH);
                for n in [head_bytes, tail_bytes, input_bytes] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                if has_run {
                    encode_run(&mut out, run);
                }
            }
            ToRecorder::Exited { exit } => {
                out.push(EXITED);
                let (kind, code) = match exit {
                    Exit::Code(c) => (0u8, *c),
                    Exit::Signal(s) => (1u8, *s),
                };
                out.push(kind);
                out.extend_from_slice(&code.to_be_bytes());
            }

            ToRecorder::Refuse { reason } => {
                out.push(REFUSE);
                put_bytes(&mut out, cut_str(reason, MAX_REASON).as_bytes(), MAX_REASON);
            }
            ToRecorder::Closed { sha256 } => {
                out.push(CLOSED);
                put_bytes(&mut out, cut_str(sha256, MAX_TEXT).as_bytes(), MAX_TEXT);
            }
        }
        out
    }

    /// Decodes one frame body.
    pub fn decode(body: &[u8]) -> Result<ToRecorder, ProtoError> {
        let mut r = Reader { b: body };
        let msg = match r.u8()? {
            ACCEPT => {
                if r.u8()? != PROTOCOL {
                    return Err(ProtoError::Malformed("unknown protocol version"));
                }
                let flags = r.u8()?;
                if flags & !0b1111 != 0 {
                    return Err(ProtoError::Malformed("unknown accept flags"));
                }
                ToRecorder::Accept {
                    record: flags & 1 != 0,
                    input: flags & 2 != 0,
                    fail_open: flags & 4 != 0,
                    id: r.text(MAX_TEXT)?.to_owned(),
                    shell: r.bytes(MAX_PATH)?.to_vec(),
                    head_bytes: r.u64()?,
                    tail_bytes: r.u64()?,
                    input_bytes: r.u64()?,
                    run: if flags & 8 != 0 {
                        decode_run(&mut r)?
                    } else {
                        Run::Shell
                    },
                }
            }
            REFUSE => ToRecorder::Refuse {
                reason: r.text(MAX_REASON)?.to_owned(),
            },
            EXITED => {
                let kind = r.u8()?;
                let code = r.i32()?;
                ToRecorder::Exited {
                    exit: match kind {
                        0 => Exit::Code(code),
                        1 => Exit::Signal(code),
                        _ => return Err(ProtoError::Malformed("unknown exit kind")),
                    },
                }
            }
            CLOSED => ToRecorder::Closed {
                sha256: r.text(MAX_TEXT)?.to_owned(),
            },
            _ => return Err(ProtoError::Malformed("unknown message kind")),
        };
        r.done()?;
        Ok(msg)
    }
}

const RUN_EXEC: u8 = 1;
const RUN_PRINT: u8 = 2;
const RUN_ENTER: u8 = 3;

fn put_u16(out: &mut Vec<u8>, n: usize) {
    // Callers cap their counts far below u16::MAX.
    out.extend_from_slice(&(n.min(u16::MAX as usize) as u16).to_be_bytes());
}

fn encode_run(out: &mut Vec<u8>, run: &Run) {
    match run {
        Run::Shell => {}
        Run::Exec {
            argv,
            cwd,
            env,
            confine,
        } => {
            out.push(RUN_EXEC);
            let argv = &argv[..argv.len().min(MAX_ARGV)];
            put_u16(out, argv.len());
            for a in argv {
                put_bytes(out, a, MAX_PATH);
            }
            put_bytes(out, cwd, MAX_PATH);
            let env = &env[..env.len().min(MAX_ENV)];
            put_u16(out, env.len());
            for (k, v) in env {
                put_bytes(out, k, MAX_TEXT);
                put_bytes(out, v, MAX_PATH);
            }
            put_bytes(out, confine, MAX_PATH);
        }
        Run::Print { text, code } => {
            out.push(RUN_PRINT);
            put_bytes(out, text, MAX_REASON);
            out.extend_from_slice(&code.to_be_bytes());
        }
        Run::Enter => out.push(RUN_ENTER),
    }
}

fn decode_run(r: &mut Reader<'_>) -> Result<Run, ProtoError> {
    Ok(match r.u8()? {
        RUN_EXEC => {
            let n = usize::from(r.u16()?);
            if n == 0 || n > MAX_ARGV {
                return Err(ProtoError::Malformed("argv count"));
            }
            let mut argv = Vec::with_capacity(n);
            for _ in 0..n {
                argv.push(r.bytes(MAX_PATH)?.to_vec());
            }
            let cwd = r.bytes(MAX_PATH)?.to_vec();
            let n = usize::from(r.u16()?);
            if n > MAX_ENV {
                return Err(ProtoError::Malformed("env count"));
            }
            let mut env = Vec::with_capacity(n);
            for _ in 0..n {
                env.push((r.bytes(MAX_TEXT)?.to_vec(), r.bytes(MAX_PATH)?.to_vec()));
            }
            let confine = r.bytes(MAX_PATH)?.to_vec();
            Run::Exec {
                argv,
                cwd,
                env,
                confine,
            }
        }
        RUN_PRINT => Run::Print {
            text: r.bytes(MAX_REASON)?.to_vec(),
            code: r.i32()?,
        },
        RUN_ENTER => Run::Enter,
        _ => return Err(ProtoError::Malformed("unknown run kind")),
    })
}

/// Writes every slice (`write_vectored` until all is written).
pub fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: ToHelper<'_>) {
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(ToHelper::decode(&buf).unwrap(), m);
        // Every strict prefix is refused, never misread.
        for cut in 0..buf.len() {
            assert!(ToHelper::decode(&buf[..cut]).is_err() || matches!(m, ToHelper::Data { .. }));
        }
        // A trailing byte is refused (a data frame's payload is its tail).
        let mut longer = buf.clone();
        longer.push(0);
        if !matches!(m, ToHelper::Data { .. }) {
            assert!(ToHelper::decode(&longer).is_err());
        }
    }

    #[test]
    fn given_each_message_then_it_survives_encoding_and_its_prefixes_are_refused() {
        roundtrip(ToHelper::Hello(Hello {
            tty: true,
            login: false,
            cols: 80,
            rows: 24,
            t_us: 12,
            command: b"echo hi".to_vec(),
            command_cut: true,
            term: "xterm".into(),
            ssh_connection: "127.0.0.1 5000 127.0.0.1 22".into(),
            continues: String::new(),
            gate: None,
        }));
        // (issue 26) A gated channel's hello, and a container entry.
        roundtrip(ToHelper::Hello(Hello {
            login: true,
            gate: Some("ci".into()),
            ..Hello::default()
        }));
        roundtrip(ToHelper::Enter {
            tty: true,
            login: false,
            term: "xterm".into(),
            command: b"git-receive-pack 'r.git'".to_vec(),
        });
        roundtrip(ToHelper::Data {
            stream: Stream::Err,
            t_us: 5,
            bytes: b"\x1b]52;c;AAAA\x07",
        });
        roundtrip(ToHelper::Resize {
            t_us: 1,
            cols: 100,
            rows: 40,
        });
        roundtrip(ToHelper::Sftp {
            t_us: 9,
            op: "rename",
            path: b"/a",
            path2: b"/b",
            detail: "",
        });
        roundtrip(ToHelper::Count {
            stream: Stream::In,
            bytes: 1 << 40,
        });
        roundtrip(ToHelper::End {
            t_us: 10,
            exit: Exit::Signal(9),
        });
        for m in [
            ToRecorder::Accept {
                id: "abc.1".into(),
                shell: b"/bin/bash".to_vec(),
                record: true,
                input: false,
                fail_open: true,
                head_bytes: 4 << 20,
                tail_bytes: 4 << 20,
                input_bytes: 1 << 20,
                run: Run::Shell,
            },
            ToRecorder::Refuse {
                reason: "no".into(),
            },
            ToRecorder::Closed {
                sha256: "00".into(),
            },
            ToRecorder::Exited {
                exit: Exit::Signal(15),
            },
        ] {
            assert_eq!(ToRecorder::decode(&m.encode()).unwrap(), m);
        }
        // (issue 26) Each way a gated channel runs; a shell grant's accept
        // is the bytes it always was (no run field).
        let accept = |run: Run| ToRecorder::Accept {
            id: String::new(),
            shell: b"/bin/bash".to_vec(),
            record: false,
            input: false,
            fail_open: false,
            head_bytes: 0,
            tail_bytes: 0,
            input_bytes: 0,
            run,
        };
        let shell = accept(Run::Shell).encode();
        assert_eq!(shell[2] & 8, 0);
        assert_eq!(shell.len(), 1 + 1 + 1 + 2 + 2 + 9 + 24);
        for run in [
            Run::Exec {
                argv: vec![b"/usr/bin/make".to_vec(), b"test".to_vec()],
                cwd: b"/home/u".to_vec(),
                env: vec![(b"PATH".to_vec(), b"/usr/bin".to_vec())],
                confine: b"/home/u/files".to_vec(),
            },
            Run::Print {
                text: b"restrict ssh-rsa AAAA\n".to_vec(),
                code: 0,
            },
            Run::Enter,
        ] {
            let m = accept(run);
            let bytes = m.encode();
            assert_eq!(ToRecorder::decode(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(ToRecorder::decode(&bytes[..cut]).is_err(), "prefix {cut}");
            }
        }
        // A long refusal (a gate listing what is allowed) is kept whole.
        let long = ToRecorder::Refuse {
            reason: "x".repeat(3000),
        };
        assert_eq!(ToRecorder::decode(&long.encode()).unwrap(), long);
    }

    #[test]
    fn given_hostile_frames_then_refused_before_any_allocation() {
        let mut buf = Vec::with_capacity(MAX_FRAME);
        // Oversized, zero and truncated lengths.
        for bytes in [
            &(MAX_FRAME as u32 + 1).to_be_bytes()[..],
            &u32::MAX.to_be_bytes()[..],
            &0u32.to_be_bytes()[..],
        ] {
            let e = read_frame(&mut &bytes[..], &mut buf).unwrap_err();
            assert!(matches!(e, ProtoError::BadLength(_)), "{e}");
            assert!(buf.capacity() <= MAX_FRAME);
        }
        let e = read_frame(&mut &[0u8, 0, 0, 9, 1, 2][..], &mut buf).unwrap_err();
        assert!(matches!(e, ProtoError::Truncated), "{e}");
        let e = read_frame(&mut &[0u8, 0][..], &mut buf).unwrap_err();
        assert!(matches!(e, ProtoError::Truncated), "{e}");
        let e = read_frame(&mut &[][..], &mut buf).unwrap_err();
        assert!(matches!(e, ProtoError::Closed), "{e}");
        // Garbage kinds and fields.
        for body in [
            &[0u8][..],
            &[99],
            &[DATA, 7, 0, 0, 0, 0, 0, 0, 0, 0, b'x'],
            &[DATA, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[END, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0],
            &[HELLO, 9],
            &[SFTP, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
        ] {
            assert!(ToHelper::decode(body).is_err(), "{body:?}");
        }
        // A data header and its bytes read back as the data frame.
        let mut wire = ToHelper::data_header(Stream::Out, 9, 3).to_vec();
        wire.extend_from_slice(b"abc");
        assert_eq!(
            ToHelper::decode(read_frame(&mut &wire[..], &mut buf).unwrap()).unwrap(),
            ToHelper::Data {
                stream: Stream::Out,
                t_us: 9,
                bytes: b"abc"
            }
        );
        // A framed encoding reads back as the message.
        let m = ToHelper::Resize {
            t_us: 7,
            cols: 1,
            rows: 2,
        };
        let mut framed = Vec::new();
        m.encode_framed(&mut framed);
        assert_eq!(
            ToHelper::decode(read_frame(&mut &framed[..], &mut buf).unwrap()).unwrap(),
            m
        );
        // A frame written and read back.
        let mut wire = Vec::new();
        let mut scratch = Vec::new();
        write_frame(&mut wire, b"hello", &mut scratch).unwrap();
        assert_eq!(read_frame(&mut &wire[..], &mut buf).unwrap(), b"hello");
        assert!(write_frame(&mut Vec::new(), &vec![0u8; MAX_FRAME + 1], &mut scratch).is_err());
    }

    #[test]
    fn given_a_long_command_then_it_is_cut_at_the_cap() {
        let m = ToHelper::Hello(Hello {
            command: vec![b'a'; MAX_COMMAND + 10],
            ..Hello::default()
        });
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert!(buf.len() <= MAX_FRAME);
        match ToHelper::decode(&buf).unwrap() {
            ToHelper::Hello(h) => assert_eq!(h.command.len(), MAX_COMMAND),
            other => panic!("{other:?}"),
        }
    }
}

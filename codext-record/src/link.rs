//! The recorder's connection to `codext-helper`'s recording socket.
//!
//! Every byte of a channel goes through [`Link::data`] (and every other
//! event through [`Link::send`]) *before* it is passed on, under one lock,
//! so the record is in the order the relay saw. What the record will keep
//! decides what crosses the socket (the helper says it in its accept):
//!
//! * the first `head_bytes` of data are sent as they pass;
//! * past them, only the newest `tail_bytes` are kept, in the recorder,
//!   and sent at least every [`proto::FLUSH_MS`] (and before any other
//!   event, and at the end); older ones are only counted, as they would
//!   be dropped from the record anyway. So a long bulk transfer (a 50 MB
//!   `cat`) does not cross the socket twice; the price: if the recorder is
//!   killed, what it relayed past the first part in its last quarter
//!   second is lost with it (the record says it was cut);
//! * a command's standard input past `input_bytes`, and an sftp channel's
//!   data (its file contents; its operations are what is kept), are only
//!   counted.
//!
//! If the helper goes away mid-channel (a restart), the
//! sender holding the lock reconnects for up to [`RESUME_FOR`] while the
//! whole channel waits (nothing passes unrecorded), and the record goes on
//! in a new one that names the old (`continues`); frames the old helper had
//! not yet read when it stopped are lost with it, and the old record says
//! it was cut. If it cannot come back, the channel ends (fail closed) —
//! unless the helper said at the start that the operator chose to fail
//! open, in which case the channel runs on unrecorded.

mod ring;

use codext_record::proto::{self, Hello, Run, Stream, ToHelper, ToRecorder};
pub use ring::Shared;
use ring::{index, Ring};
use std::io::{IoSlice, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a channel waits for a helper that went away.
pub const RESUME_FOR: Duration = Duration::from_secs(30);
/// How long the helper may take to answer a hello or an end.
const ANSWER: Duration = Duration::from_secs(10);
/// The socket's send buffer the recorder asks for (the kernel grants up to
/// `net.core.wmem_max`): the first part of a channel and the held-back
/// newest part cross without waiting for the helper to read them, so the
/// relay is not held up by it (Debian's default wmem_max grants 416 KiB).
const SEND_BUFFER: i32 = 8 << 20;

/// What the helper said to a hello.
#[derive(Debug)]
pub enum Opened {
    /// Record: stream everything through the link.
    Record {
        /// The link.
        link: Box<Link>,
        /// The real shell.
        shell: Vec<u8>,
        /// Record a terminal's keystrokes.
        input: bool,
        /// What runs.
        run: Run,
    },
    /// The helper cannot store it and the operator chose to fail open, or
    /// recording is off (a gated grant still asks the helper): run
    /// unrecorded (a fail-open is audited by the helper).
    Unrecorded {
        /// The real shell.
        shell: Vec<u8>,
        /// What runs.
        run: Run,
    },
}

/// The connection, shared by the relay threads.
#[derive(Debug)]
pub struct Link {
    state: Mutex<State>,
    start: Instant,
}

#[derive(Debug)]
struct State {
    sock: Option<UnixStream>,
    id: String,
    hello: Hello,
    fail_open: bool,
    /// Failed open mid-channel: frames are dropped.
    unrecorded: bool,
    body: Vec<u8>,
    read: Vec<u8>,
    plan: Plan,
    /// Data bytes sent as they passed.
    sent_head: u64,
    /// Input bytes sent (capped at the plan's).
    sent_input: u64,
    /// Past the first part: the newest data, waiting to be sent.
    ring: Ring,
    /// Bytes relayed and not sent, per stream, not yet counted to the
    /// helper.
    skipped: [u64; 3],
    last_flush: Instant,
}

/// What crosses the socket (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    head: u64,
    tail: u64,
    input: u64,
    /// An sftp channel: its data is only counted.
    sftp: bool,
}

const STREAMS: [Stream; 3] = [Stream::In, Stream::Out, Stream::Err];

/// The channel must end: the recording cannot go on.
#[derive(Debug)]
pub struct Lost(pub String);

fn connect(hello: &Hello, read: &mut Vec<u8>) -> Result<(UnixStream, ToRecorder), String> {
    let mut sock = UnixStream::connect(proto::SOCKET)
        .map_err(|e| format!("cannot reach the recording socket {}: {e}", proto::SOCKET))?;
    let _ = sock.set_read_timeout(Some(ANSWER));
    crate::sys::set_send_buffer(&sock, SEND_BUFFER);
    let mut body = Vec::new();
    let mut scratch = Vec::new();
    ToHelper::Hello(hello.clone()).encode(&mut body);
    proto::write_frame(&mut sock, &body, &mut scratch)
        .map_err(|e| format!("cannot talk to codext-helper: {e}"))?;
    let reply = proto::read_frame(&mut sock, read)
        .map_err(|e| format!("codext-helper did not answer: {e}"))?;
    let reply = ToRecorder::decode(reply).map_err(|e| format!("codext-helper's answer: {e}"))?;
    let _ = sock.set_read_timeout(None);
    Ok((sock, reply))
}

/// Says hello; the helper's answer decides whether and how the channel
/// runs. `Err` is the refusal, worded for the user.
pub fn open(hello: Hello, start: Instant) -> Result<Opened, String> {
    let mut read = Vec::with_capacity(proto::MAX_FRAME);
    let (sock, reply) = connect(&hello, &mut read)?;
    match reply {
        ToRecorder::Accept {
            record: false,
            shell,
            run,
            ..
        } => Ok(Opened::Unrecorded { shell, run }),
        ToRecorder::Accept {
            id,
            shell,
            input,
            fail_open,
            record: true,
            head_bytes,
            tail_bytes,
            input_bytes,
            run,
        } => {
            let sftp = !hello.login
                && codext_record::Kind::of(false, &hello.command) == codext_record::Kind::Sftp;
            Ok(Opened::Record {
                link: Box::new(Link {
                    state: Mutex::new(State {
                        sock: Some(sock),
                        id,
                        hello,
                        fail_open,
                        unrecorded: false,
                        body: Vec::with_capacity(proto::MAX_FRAME + 4),
                        read,
                        plan: Plan {
                            head: head_bytes,
                            tail: tail_bytes,
                            input: input_bytes,
                            sftp,
                        },
                        sent_head: 0,
                        sent_input: 0,
                        ring: Ring::default(),
                        skipped: [0; 3],
                        last_flush: Instant::now(),
                    }),
                    start,
                }),
                shell,
                input,
                run,
            })
        }
        ToRecorder::Refuse { reason } => Err(reason),
        ToRecorder::Closed { .. } | ToRecorder::Exited { .. } => {
            Err("codext-helper answered out of turn".into())
        }
    }
}

impl Link {
    /// A link that records nothing: the relay of a channel that
    /// runs unrecorded but still needs the recorder between the client
    /// and what runs (a container session on a terminal of its own).
    pub fn discard(start: Instant) -> Link {
        Link {
            state: Mutex::new(State {
                sock: None,
                id: String::new(),
                hello: Hello::default(),
                fail_open: true,
                unrecorded: true,
                body: Vec::new(),
                read: Vec::new(),
                plan: Plan {
                    head: 0,
                    tail: 0,
                    input: 0,
                    sftp: false,
                },
                sent_head: 0,
                sent_input: 0,
                ring: Ring::default(),
                skipped: [0; 3],
                last_flush: Instant::now(),
            }),
            start,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Microseconds since the recorder started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records `bytes` relayed on `stream` (see the module docs for what
    /// is sent at once, kept back, or only counted).
    pub fn data(&self, stream: Stream, bytes: &[u8]) -> Result<(), Lost> {
        self.record(stream, bytes, None)
    }

    /// As [`Link::data`], for `buf[..n]` of a relay's read buffer: past the
    /// first part the ring keeps a share of the buffer instead of a copy
    /// (see [`ring`]).
    pub fn data_shared(&self, stream: Stream, buf: &Shared, n: usize) -> Result<(), Lost> {
        let n = n.min(buf.len());
        self.record(stream, &buf[..n], Some(buf))
    }

    /// A read buffer of `len` bytes for a relay: one the ring let go of,
    /// or a new one.
    pub fn read_buffer(&self, len: usize) -> Vec<u8> {
        match self.lock().ring.spare() {
            Some(b) if b.len() == len => b,
            _ => vec![0; len],
        }
    }

    fn record(&self, stream: Stream, bytes: &[u8], shared: Option<&Shared>) -> Result<(), Lost> {
        let t_us = self.now_us();
        let mut st = self.lock();
        if st.unrecorded {
            return Ok(());
        }
        let n = bytes.len() as u64;
        if st.plan.sftp && stream != Stream::Err {
            st.skipped[index(stream)] += n;
            return Ok(());
        }
        let bytes = if stream == Stream::In {
            let room = st.plan.input.saturating_sub(st.sent_input);
            let keep = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
            st.skipped[index(stream)] += (bytes.len() - keep) as u64;
            st.sent_input += keep as u64;
            &bytes[..keep]
        } else {
            bytes
        };
        if bytes.is_empty() {
            return Ok(());
        }
        if st.sent_head < st.plan.head {
            st.sent_head += bytes.len() as u64;
            for piece in bytes.chunks(proto::MAX_DATA) {
                self.send_locked(
                    &mut st,
                    &ToHelper::Data {
                        stream,
                        t_us,
                        bytes: piece,
                    },
                )?;
            }
            return Ok(());
        }
        // Only the newest `tail` bytes wait; older ones are counted.
        let cap = usize::try_from(st.plan.tail).unwrap_or(usize::MAX);
        let State { ring, skipped, .. } = &mut *st;
        match shared {
            // Input is cut to its cap above: only whole output is shared.
            Some(buf) if stream != Stream::In => {
                ring.push_shared(cap, stream, t_us, buf, 0, bytes.len(), skipped)
            }
            _ => ring.push(cap, stream, t_us, bytes, skipped),
        }
        if st.last_flush.elapsed() >= Duration::from_millis(proto::FLUSH_MS) {
            self.flush_locked(&mut st)?;
        }
        Ok(())
    }

    /// Sends what waits in the recorder if it has waited long enough (the
    /// relay calls this every [`proto::FLUSH_MS`]).
    pub fn flush_due(&self) -> Result<(), Lost> {
        let mut st = self.lock();
        if st.last_flush.elapsed() >= Duration::from_millis(proto::FLUSH_MS) {
            self.flush_locked(&mut st)?;
        }
        Ok(())
    }

    /// Counts what was not sent, then sends what waits, in order.
    fn flush_locked(&self, st: &mut State) -> Result<(), Lost> {
        st.last_flush = Instant::now();
        for s in STREAMS {
            let bytes = std::mem::take(&mut st.skipped[index(s)]);
            if bytes > 0 {
                self.send_locked(st, &ToHelper::Count { stream: s, bytes })?;
            }
        }
        // Each piece as data frames (a piece that wraps is two).
        let mut ring = std::mem::take(&mut st.ring);
        let result = ring.drain(|stream, t_us, a, b| {
            for bytes in a.chunks(proto::MAX_DATA).chain(b.chunks(proto::MAX_DATA)) {
                self.send_locked(
                    st,
                    &ToHelper::Data {
                        stream,
                        t_us,
                        bytes,
                    },
                )?;
            }
            Ok(())
        });
        st.ring = ring;
        result
    }

    /// Sends one event (after what waits, so the record keeps the order).
    pub fn send(&self, msg: &ToHelper<'_>) -> Result<(), Lost> {
        let mut st = self.lock();
        if st.unrecorded {
            return Ok(());
        }
        self.flush_locked(&mut st)?;
        self.send_locked(&mut st, msg)
    }

    /// Sends one frame, resuming in a new record if the helper went away.
    fn send_locked(&self, st: &mut State, msg: &ToHelper<'_>) -> Result<(), Lost> {
        if st.unrecorded {
            return Ok(());
        }
        // A data frame: its header, then the bytes as they are (one
        // vectored write, no copy); any other: encoded in one buffer.
        let header = match msg {
            ToHelper::Data {
                stream,
                t_us,
                bytes,
            } => Some((ToHelper::data_header(*stream, *t_us, bytes.len()), *bytes)),
            _ => {
                msg.encode_framed(&mut st.body);
                None
            }
        };
        let write = |s: &mut UnixStream, body: &[u8]| match &header {
            Some((h, bytes)) => {
                proto::write_all_vectored(s, &mut [IoSlice::new(h), IoSlice::new(bytes)])
            }
            None => s.write_all(body),
        };
        let State { sock, body, .. } = &mut *st;
        if let Some(s) = sock.as_mut() {
            if write(s, body).is_ok() {
                return Ok(());
            }
        }
        self.resume(st)?;
        if st.unrecorded {
            return Ok(());
        }
        let State { sock, body, .. } = &mut *st;
        match sock.as_mut() {
            Some(s) => write(s, body).map_err(|e| Lost(format!("the recording was lost: {e}"))),
            None => Err(Lost("the recording was lost".into())),
        }
    }

    /// Reconnects after the helper went away (lock held: the channel
    /// waits). On success the socket is the new one; past [`RESUME_FOR`]
    /// it fails open (unrecorded) or returns [`Lost`].
    fn resume(&self, st: &mut State) -> Result<(), Lost> {
        st.sock = None;
        let deadline = Instant::now() + RESUME_FOR;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut hello = st.hello.clone();
            hello.continues = st.id.clone();
            hello.t_us = self.now_us();
            match connect(&hello, &mut st.read) {
                Ok((
                    sock,
                    ToRecorder::Accept {
                        record: true, id, ..
                    },
                )) => {
                    st.sock = Some(sock);
                    st.id = id;
                    return Ok(());
                }
                Ok((_, ToRecorder::Accept { record: false, .. })) => {
                    st.unrecorded = true;
                    return Ok(());
                }
                Ok((_, ToRecorder::Refuse { reason })) => {
                    last = reason;
                    break;
                }
                Ok((_, ToRecorder::Closed { .. } | ToRecorder::Exited { .. })) => {
                    last = "an answer out of turn".into()
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if st.fail_open {
            st.unrecorded = true;
            return Ok(());
        }
        Err(Lost(format!(
            "the recording could not go on ({last}); the channel ends"
        )))
    }

    /// Sends the end. The helper seals the record from what it has read
    /// (the channel does not wait for that: the sealing of a long record's
    /// last part must not hold the client).
    pub fn finish(&self, exit: proto::Exit) -> Result<(), Lost> {
        let t_us = self.now_us();
        self.send(&ToHelper::End { t_us, exit })?;
        let mut st = self.lock();
        if let Some(s) = st.sock.as_mut() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codext_record::proto::read_frame;

    fn link(plan: Plan) -> (Link, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let link = Link {
            state: Mutex::new(State {
                sock: Some(ours),
                id: "0123456789.1".into(),
                hello: Hello::default(),
                fail_open: false,
                unrecorded: false,
                body: Vec::new(),
                read: Vec::new(),
                plan,
                sent_head: 0,
                sent_input: 0,
                ring: Ring::default(),
                skipped: [0; 3],
                last_flush: Instant::now(),
            }),
            start: Instant::now(),
        };
        (link, theirs)
    }

    /// Every frame the link wrote so far: (kind, stream, bytes or count).
    fn frames(peer: &mut UnixStream) -> Vec<String> {
        peer.set_nonblocking(true).unwrap();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Ok(body) = read_frame(peer, &mut buf) {
            out.push(match ToHelper::decode(body).unwrap() {
                ToHelper::Data { stream, bytes, .. } => {
                    format!("{} {}", stream.code(), String::from_utf8_lossy(bytes))
                }
                ToHelper::Count { stream, bytes } => format!("{} skipped {bytes}", stream.code()),
                ToHelper::End { .. } => "end".into(),
                other => format!("{other:?}"),
            });
        }
        out
    }

    #[test]
    fn given_data_past_the_first_part_then_only_the_newest_is_sent_at_the_flush_and_the_rest_counted(
    ) {
        let (link, mut peer) = link(Plan {
            head: 4,
            tail: 5,
            input: 3,
            sftp: false,
        });
        link.data(Stream::Out, b"abcd").unwrap();
        assert_eq!(
            frames(&mut peer),
            vec!["o abcd"],
            "the first part goes at once"
        );
        link.data(Stream::Out, b"efghij").unwrap();
        link.data(Stream::Err, b"kl").unwrap();
        link.data(Stream::In, b"12345").unwrap();
        assert!(
            frames(&mut peer).is_empty(),
            "the rest waits in the recorder"
        );
        link.finish(proto::Exit::Code(0)).unwrap();
        // The input's cap of 3: "45" only counted. Of the rest, the newest
        // five bytes across the streams ("kl", "123") were held; the six
        // before them ("efghij") counted.
        assert_eq!(
            frames(&mut peer),
            vec!["i skipped 2", "o skipped 6", "e kl", "i 123", "end"],
            "counted, then the newest five bytes, then the end"
        );
    }

    #[test]
    fn given_an_sftp_channel_then_its_data_is_only_counted() {
        let (link, mut peer) = link(Plan {
            head: 100,
            tail: 100,
            input: 100,
            sftp: true,
        });
        link.data(Stream::In, b"file contents").unwrap();
        link.data(Stream::Err, b"warning").unwrap();
        link.finish(proto::Exit::Code(0)).unwrap();
        assert_eq!(frames(&mut peer), vec!["e warning", "i skipped 13", "end"]);
    }
}

//! The recorder's connection to `codext-helper`'s recording socket.
//!
//! Every frame of a channel goes through [`Link::send`] *before* the bytes
//! it records are passed on, under one lock, so the record is in the order
//! the relay saw. If the helper goes away mid-channel (a restart), the
//! sender holding the lock reconnects for up to [`RESUME_FOR`] while the
//! whole channel waits (nothing passes unrecorded), and the record goes on
//! in a new one that names the old (`continues`); frames the old helper had
//! not yet read when it stopped are lost with it, and the old record says
//! it was cut. If it cannot come back, the channel ends (fail closed) —
//! unless the helper said at the start that the operator chose to fail
//! open, in which case the channel runs on unrecorded.

use codext_record::proto::{self, Hello, ToHelper, ToRecorder};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a channel waits for a helper that went away.
pub const RESUME_FOR: Duration = Duration::from_secs(30);
/// How long the helper may take to answer a hello or an end.
const ANSWER: Duration = Duration::from_secs(10);

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
    },
    /// The helper cannot store it and the operator chose to fail open: run
    /// the shell unrecorded (the helper wrote an audit line saying so).
    Unrecorded {
        /// The real shell.
        shell: Vec<u8>,
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
    scratch: Vec<u8>,
    read: Vec<u8>,
}

/// The channel must end: the recording cannot go on.
#[derive(Debug)]
pub struct Lost(pub String);

fn connect(hello: &Hello, read: &mut Vec<u8>) -> Result<(UnixStream, ToRecorder), String> {
    let mut sock = UnixStream::connect(proto::SOCKET)
        .map_err(|e| format!("cannot reach the recording socket {}: {e}", proto::SOCKET))?;
    let _ = sock.set_read_timeout(Some(ANSWER));
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
            ..
        } => Ok(Opened::Unrecorded { shell }),
        ToRecorder::Accept {
            id,
            shell,
            input,
            fail_open,
            record: true,
        } => Ok(Opened::Record {
            link: Box::new(Link {
                state: Mutex::new(State {
                    sock: Some(sock),
                    id,
                    hello,
                    fail_open,
                    unrecorded: false,
                    body: Vec::with_capacity(proto::MAX_FRAME),
                    scratch: Vec::with_capacity(proto::MAX_FRAME + 4),
                    read,
                }),
                start,
            }),
            shell,
            input,
        }),
        ToRecorder::Refuse { reason } => Err(reason),
        ToRecorder::Closed { .. } => Err("codext-helper answered out of turn".into()),
    }
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Microseconds since the recorder started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Sends one frame, resuming in a new record if the helper went away.
    pub fn send(&self, msg: &ToHelper<'_>) -> Result<(), Lost> {
        let mut st = self.lock();
        if st.unrecorded {
            return Ok(());
        }
        let State {
            sock,
            body,
            scratch,
            ..
        } = &mut *st;
        msg.encode(body);
        if let Some(s) = sock.as_mut() {
            if proto::write_frame(s, body, scratch).is_ok() {
                return Ok(());
            }
        }
        self.resume(&mut st)?;
        if st.unrecorded {
            return Ok(());
        }
        let State {
            sock,
            body,
            scratch,
            ..
        } = &mut *st;
        match sock.as_mut() {
            Some(s) => proto::write_frame(s, body, scratch)
                .map_err(|e| Lost(format!("the recording was lost: {e}"))),
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
                Ok((_, ToRecorder::Closed { .. })) => last = "an answer out of turn".into(),
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

    /// Sends the end and waits (briefly) for the helper to seal the
    /// record, so that when the channel closes its record is complete.
    pub fn finish(&self, exit: proto::Exit) -> Result<(), Lost> {
        let t_us = self.now_us();
        self.send(&ToHelper::End { t_us, exit })?;
        let mut st = self.lock();
        let State { sock, read, .. } = &mut *st;
        if let Some(s) = sock.as_mut() {
            let _ = s.set_read_timeout(Some(ANSWER));
            let _ = proto::read_frame(s, read);
        }
        Ok(())
    }
}

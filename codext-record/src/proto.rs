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

mod error;
mod fields;
mod frame;
mod kinds;
mod limits;
mod messages;
mod run;
mod sockets;
mod to_helper;
mod to_recorder;

pub use error::ProtoError;
pub use fields::cut_str;
pub use frame::{read_frame, write_all_vectored, write_frame};
pub use kinds::PROTOCOL;
pub use limits::{
    FLUSH_MS, MAX_ARGV, MAX_COMMAND, MAX_DATA, MAX_ENV, MAX_FRAME, MAX_PATH, MAX_REASON, MAX_TEXT,
};
pub use messages::{Exit, Hello, Run, Stream, ToHelper, ToRecorder};
pub use sockets::{ENTER_SOCKET, SOCKET, SOCKET_DIR};

#[cfg(test)]
mod tests {
    use super::kinds::{DATA, END, HELLO, SFTP};
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
        // A gated channel's hello, and a container entry.
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
        // Each way a gated channel runs; a shell grant's accept
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
}

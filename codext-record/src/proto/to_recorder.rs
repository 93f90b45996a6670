//! The helper's frames to the recorder: encoding and strict decoding.

use super::error::ProtoError;
use super::fields::{cut_str, put_bytes, Reader};
use super::kinds::{ACCEPT, CLOSED, EXITED, PROTOCOL, REFUSE};
use super::limits::{MAX_PATH, MAX_REASON, MAX_TEXT};
use super::messages::{Exit, Run, ToRecorder};
use super::run::{decode_run, encode_run};

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

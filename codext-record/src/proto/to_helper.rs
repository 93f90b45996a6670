//! The recorder's frames to the helper: encoding and strict decoding.

use super::error::ProtoError;
use super::fields::{cut_str, put_bytes, Reader};
use super::kinds::{COUNT, DATA, END, ENTER, HELLO, PROTOCOL, RESIZE, SFTP};
use super::limits::{MAX_COMMAND, MAX_DATA, MAX_PATH, MAX_TEXT};
use super::messages::{Exit, Hello, Stream, ToHelper};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::limits::MAX_FRAME;

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

//! The record file: asciicast v2 (the format asciinema and Teleport's
//! exporters use) with codext's additions, one JSON value per line.
//!
//! * Line 1, the header: asciicast's `version` (2), `width`, `height`,
//!   `timestamp`, `env`, and a `codext` object with what the channel was
//!   (id, session, user, kind, command, terminal, client address, …).
//! * Then one event per line, `[seconds, code, data]`, times never going
//!   back: `o` terminal output or standard output, `e` standard error,
//!   `i` input (a command's standard input; a terminal's keystrokes only
//!   when the operator turned input recording on), `r` a resize
//!   (`"COLSxROWS"`), `x` an sftp operation (an object), `m` a marker
//!   (codext's notes: where bytes were dropped).
//! * The last line, the trailer: an object `{"codext_end": …}` with the
//!   end time, the exit status, whether the record is `truncated` and why,
//!   and the bytes seen, kept and dropped per stream.
//!
//! Bytes become text as lossy UTF-8 (a sequence split between two reads
//! is joined first); invalid bytes become U+FFFD. The byte counts are of
//! the original bytes.

use codext_record::proto::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// What the channel was: the header's `codext` object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// Record format version (1).
    pub format: u32,
    /// `<session>.<n>`.
    pub id: String,
    /// The SSH connection (one PAM session) the channel belongs to.
    pub session: String,
    /// The temporary user (one user is one grant).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// `shell`, `command`, `sftp`, `scp`, `rsync`, `git`.
    pub kind: String,
    /// sshd gave the channel a terminal.
    pub tty: bool,
    /// The command (none for a login shell), lossy UTF-8.
    pub command: Option<String>,
    /// The command was longer than the recorder sends, and was cut.
    #[serde(default)]
    pub command_cut: bool,
    /// `SSH_CONNECTION` as sshd set it.
    pub ssh_connection: String,
    /// pid of sshd's process for that connection (it opened the session).
    pub session_pid: u32,
    /// When that session opened (seconds since the epoch).
    pub session_opened: u64,
    /// pid of the recorder.
    pub recorder_pid: u32,
    /// The record this one continues after a helper restart.
    pub continues: Option<String>,
    /// Terminal keystrokes are in the record.
    pub input_recorded: bool,
    /// When recording started (seconds since the epoch).
    pub started: u64,
    /// The caps in force: `output_bytes`, `input_bytes`.
    pub output_bytes: u64,
    /// See [`Meta::output_bytes`].
    pub input_bytes: u64,
}

/// Bytes per stream.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bytes {
    /// Input (`i`).
    #[serde(rename = "in")]
    pub input: u64,
    /// Output (`o`).
    pub out: u64,
    /// Standard error (`e`).
    pub err: u64,
}

impl Bytes {
    /// The counter of `stream`.
    pub fn of(&mut self, stream: Stream) -> &mut u64 {
        match stream {
            Stream::In => &mut self.input,
            Stream::Out => &mut self.out,
            Stream::Err => &mut self.err,
        }
    }
    /// All streams together.
    pub fn total(&self) -> u64 {
        self.input + self.out + self.err
    }
}

/// How the channel ended: the trailer's `codext_end` object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct End {
    /// When the record was sealed (seconds since the epoch).
    pub ended: u64,
    /// Seconds from the first to the last event.
    pub duration: f64,
    /// `{"code": N}` or `{"signal": N}`; none when the recorder never said.
    pub exit: Option<Value>,
    /// The record is incomplete.
    pub truncated: bool,
    /// Why.
    pub reason: Option<String>,
    /// Bytes the recorder relayed (none: unknown, after a helper crash).
    pub bytes: Option<Bytes>,
    /// Bytes not kept (over the caps; sftp data is counted, not kept).
    pub dropped: Option<Bytes>,
    /// sftp operations recorded.
    pub sftp_ops: u64,
}

/// The header line.
pub fn header_line(meta: &Meta, cols: u16, rows: u16, term: &str, shell: &str) -> String {
    let (w, h) = if meta.tty && cols > 0 && rows > 0 {
        (cols, rows)
    } else {
        (120, 30)
    };
    let v = serde_json::json!({
        "version": 2,
        "width": w,
        "height": h,
        "timestamp": meta.started,
        "env": {"TERM": term, "SHELL": shell},
        "codext": meta,
    });
    let mut line = serde_json::to_string(&v).unwrap_or_default();
    line.push('\n');
    line
}

/// The trailer line.
pub fn trailer_line(end: &End) -> String {
    let mut line =
        serde_json::to_string(&serde_json::json!({ "codext_end": end })).unwrap_or_default();
    line.push('\n');
    line
}

/// `seconds` as asciicast writes them (microsecond precision).
fn seconds(t_us: u64) -> String {
    format!("{}.{:06}", t_us / 1_000_000, t_us % 1_000_000)
}

/// One event line: `[t, code, "text"]`.
pub fn event_line(t_us: u64, code: &str, text: &str) -> String {
    let mut line = Vec::with_capacity(text.len() + 32);
    push_event_line(&mut line, t_us, code, text);
    String::from_utf8(line).unwrap_or_default()
}

/// Appends [`event_line`] to `out`, building nothing else (the record's
/// writer reuses one buffer for every event of a frame).
pub fn push_event_line(out: &mut Vec<u8>, t_us: u64, code: &str, text: &str) {
    use std::io::Write;
    let start = out.len();
    // Writing to a Vec cannot fail; if the text could not be encoded, the
    // event is kept empty rather than torn.
    let ok = write!(
        out,
        "[{}.{:06},\"{code}\",",
        t_us / 1_000_000,
        t_us % 1_000_000
    )
    .is_ok()
        && serde_json::to_writer(&mut *out, text).is_ok();
    if !ok {
        out.truncate(start);
        let _ = write!(out, "[{},\"{code}\",\"\"", seconds(t_us));
    }
    out.extend_from_slice(b"]\n");
}

/// The length [`event_line`] would have, without building it.
pub fn event_line_len(t_us: u64, code: &str, text: &str) -> u64 {
    // Byte by byte: only ASCII is escaped, and every byte of a longer
    // UTF-8 sequence is written as it is.
    let mut n = 0u64;
    for b in text.bytes() {
        n += match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            b if b < 0x20 => 6,
            _ => 1,
        };
    }
    // [ seconds ,"code", "text" ] and the newline.
    (seconds(t_us).len() + code.len() + 9) as u64 + n
}

/// An `x` line: `[t, "x", {"op": …, "path": …, …}]`.
pub fn sftp_line(t_us: u64, op: &str, path: &[u8], path2: &[u8], detail: &str) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("op".into(), Value::from(op));
    obj.insert("path".into(), Value::from(String::from_utf8_lossy(path)));
    if !path2.is_empty() {
        obj.insert("path2".into(), Value::from(String::from_utf8_lossy(path2)));
    }
    if !detail.is_empty() {
        obj.insert("detail".into(), Value::from(detail));
    }
    format!(
        "[{},\"x\",{}]\n",
        seconds(t_us),
        serde_json::to_string(&Value::Object(obj)).unwrap_or_else(|_| "{}".into())
    )
}

/// How many bytes at the end of `b` are the start of a UTF-8 sequence
/// that the next bytes may complete (0 to 3).
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let lead = b[b.len() - back];
        if lead & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let want = match lead {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 0,
        };
        return if back < want { back } else { 0 };
    }
    0
}

/// Turns bytes into text, joining a UTF-8 sequence split across calls
/// (`carry` holds at most 3 bytes between them); invalid bytes become
/// U+FFFD (as `String::from_utf8_lossy` does, in one pass).
pub fn decode_lossy<'a>(carry: &mut Vec<u8>, bytes: &'a [u8]) -> Cow<'a, str> {
    if carry.is_empty() {
        // The common case: borrowed when the bytes are valid UTF-8.
        let keep = incomplete_tail(bytes);
        let (text, rest) = bytes.split_at(bytes.len() - keep);
        carry.extend_from_slice(rest);
        // Valid text (the common case) is checked by the faster
        // validator, and borrowed.
        return match std::str::from_utf8(text) {
            Ok(valid) => Cow::Borrowed(valid),
            Err(_) => String::from_utf8_lossy(text),
        };
    }
    let mut all = std::mem::take(carry);
    all.extend_from_slice(bytes);
    let keep = incomplete_tail(&all);
    carry.extend_from_slice(&all[all.len() - keep..]);
    all.truncate(all.len() - keep);
    Cow::Owned(String::from_utf8_lossy(&all).into_owned())
}

/// One parsed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start.
    pub t: f64,
    /// `o`, `e`, `i`, `r`, `x`, `m`.
    pub code: String,
    /// The text (for `x`, the operation as compact JSON).
    pub data: String,
    /// For `x`: the operation.
    pub op: Option<Value>,
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The header's asciicast fields.
    pub width: u64,
    /// See [`Parsed::width`].
    pub height: u64,
    /// `env.TERM`.
    pub term: String,
    /// The header's `codext` object.
    pub meta: Meta,
    /// The events.
    pub events: Vec<Event>,
    /// The trailer (none: still being written, or cut by a crash).
    pub end: Option<End>,
}

/// Parses a record's text. Lines that are not valid JSON (a crash's torn
/// last line) are skipped.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut lines = text.lines();
    let first = lines.next().ok_or("empty record")?;
    let header: Value = serde_json::from_str(first).map_err(|e| format!("header: {e}"))?;
    let meta: Meta =
        serde_json::from_value(header["codext"].clone()).map_err(|e| format!("header: {e}"))?;
    let mut events = Vec::new();
    let mut end = None;
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match v {
            Value::Array(a) if a.len() == 3 => {
                let t = a[0].as_f64().unwrap_or(0.0);
                let code = a[1].as_str().unwrap_or("").to_owned();
                let (data, op) = match &a[2] {
                    Value::String(s) => (s.clone(), None),
                    other => (other.to_string(), Some(other.clone())),
                };
                events.push(Event { t, code, data, op });
            }
            Value::Object(o) => {
                if let Some(e) = o.get("codext_end") {
                    end = serde_json::from_value(e.clone()).ok();
                }
            }
            _ => {}
        }
    }
    Ok(Parsed {
        width: header["width"].as_u64().unwrap_or(80),
        height: header["height"].as_u64().unwrap_or(24),
        term: header["env"]["TERM"].as_str().unwrap_or("").to_owned(),
        meta,
        events,
        end,
    })
}

/// The exit as text: `0`, `3`, `signal 9`, or `?`.
pub fn exit_text(exit: Option<&Value>) -> String {
    match exit {
        Some(v) if v.get("code").is_some() => v["code"].to_string(),
        Some(v) if v.get("signal").is_some() => format!("signal {}", v["signal"]),
        _ => "?".into(),
    }
}

/// The record as a plain asciicast v2 recording, for asciinema's player:
/// standard error is merged into the output, a command's lone newlines
/// become CR LF (no terminal did that for it), input is kept only for a
/// terminal, and sftp operations and codext's notes become markers.
pub fn to_asciicast(p: &Parsed) -> String {
    let title = match &p.meta.command {
        Some(c) => format!("{} {}: {}", p.meta.id, p.meta.kind, c),
        None => format!("{} {}", p.meta.id, p.meta.kind),
    };
    // A command's output has no screen of its own: as tall as its lines
    // (3 to the header's height).
    let height = if p.meta.tty {
        p.height
    } else {
        let lines: usize = p
            .events
            .iter()
            .filter(|e| e.code == "o" || e.code == "e")
            .map(|e| e.data.matches('\n').count())
            .sum();
        (lines as u64 + 1).clamp(3, p.height.max(3))
    };
    let header = serde_json::json!({
        "version": 2,
        "width": p.width,
        "height": height,
        "timestamp": p.meta.started,
        "title": title,
        "env": {"TERM": p.term},
    });
    let mut out = serde_json::to_string(&header).unwrap_or_default();
    out.push('\n');
    let mut last_cr = false;
    for e in &p.events {
        let (code, data) = match e.code.as_str() {
            "o" | "e" if p.meta.tty => ("o", e.data.clone()),
            "o" | "e" => {
                let mut s = String::with_capacity(e.data.len() + 8);
                for c in e.data.chars() {
                    if c == '\n' && !last_cr {
                        s.push('\r');
                    }
                    last_cr = c == '\r';
                    s.push(c);
                }
                ("o", s)
            }
            "i" if p.meta.tty => ("i", e.data.clone()),
            "r" => ("r", e.data.clone()),
            "m" => ("m", e.data.clone()),
            "x" => ("m", format!("sftp {}", op_text(e.op.as_ref()))),
            _ => continue,
        };
        out.push_str(
            &serde_json::to_string(&serde_json::json!([e.t, code, data])).unwrap_or_default(),
        );
        out.push('\n');
    }
    out
}

/// An sftp operation as one line of text (not yet escaped).
pub fn op_text(op: Option<&Value>) -> String {
    let Some(op) = op else {
        return String::new();
    };
    let mut s = format!(
        "{} {}",
        op["op"].as_str().unwrap_or("?"),
        op["path"].as_str().unwrap_or("")
    );
    if let Some(p2) = op["path2"].as_str() {
        s.push_str(" -> ");
        s.push_str(p2);
    }
    if let Some(d) = op["detail"].as_str() {
        s.push_str(&format!(" ({d})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_utf8_split_across_reads_and_invalid_bytes_then_text_is_joined_and_replaced() {
        let mut carry = Vec::new();
        let euro = "€".as_bytes();
        assert_eq!(decode_lossy(&mut carry, &[b'a', euro[0]]), "a");
        assert_eq!(carry.len(), 1);
        assert_eq!(decode_lossy(&mut carry, &euro[1..]), "€");
        assert!(carry.is_empty());
        assert_eq!(decode_lossy(&mut carry, b"x\xffy"), "x\u{fffd}y");
        // A 4-byte sequence split in every way, then random bytes.
        let crab = "🦀".as_bytes();
        for cut in 0..=4 {
            let mut carry = Vec::new();
            let mut text = decode_lossy(&mut carry, &crab[..cut]).into_owned();
            text.push_str(&decode_lossy(&mut carry, &crab[cut..]));
            assert_eq!(text, "🦀");
        }
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut carry = Vec::new();
        let pieces: String = noise
            .chunks(7)
            .map(|c| decode_lossy(&mut carry, c))
            .collect();
        assert_eq!(
            pieces + &String::from_utf8_lossy(&carry),
            String::from_utf8_lossy(&noise)
        );
    }

    #[test]
    fn given_any_text_then_the_line_length_is_known_without_building_it() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect::<String>() + "é€🦀";
        for text in [
            "",
            "plain",
            "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1b}[0m\u{7f}€\u{fffd}</script>",
            every_ascii.as_str(),
        ] {
            assert_eq!(
                event_line_len(1_234_567, "o", text),
                event_line(1_234_567, "o", text).len() as u64,
                "{text:?}"
            );
        }
    }

    #[test]
    fn given_control_bytes_and_quotes_then_each_event_line_is_one_json_array() {
        let line = event_line(1_500_000, "o", "a\"b\\\u{1b}]52;c;x\u{7}\n</script>");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v[0].as_f64(), Some(1.5));
        assert_eq!(v[2], "a\"b\\\u{1b}]52;c;x\u{7}\n</script>");
    }
}

//! The operator is an attack target too: a record is bytes the agent
//! chose, and the operator reads it in a terminal.
//!
//! * [`escape`] is for `sessions list` and `show`: one line of plain text
//!   where every control character (C0, DEL, C1) and every character that
//!   reorders or hides text (bidirectional overrides and isolates, zero
//!   widths) is written as an escape (`\x1b`, `\u{202e}`); nothing reaches
//!   the terminal that it would act on.
//! * [`Sanitizer`] is for `sessions play`: it lets through what draws
//!   (text, the usual C0 controls, colours, cursor movement, erasing,
//!   scrolling regions, the alternate screen) and drops what acts on the
//!   operator's terminal beyond drawing: every OSC string (clipboard
//!   `OSC 52`, titles `OSC 0/1/2`, hyperlinks `OSC 8`, colour queries and
//!   changes, notifications), every DCS, SOS, PM and APC string (`DECRQSS`,
//!   sixel, tmux passthrough), and every sequence that makes the terminal
//!   answer on its input (device status and cursor position reports
//!   `CSI n`, device attributes `CSI c`, `DECID` `ESC Z`, `ENQ`, window
//!   reports and moves `CSI t`, mode reports `DECRQM`, `XTVERSION`, the
//!   checksum `DECRQCRA`, mouse and focus reporting modes). C1 controls
//!   (U+0080–U+009F, which some terminals obey) are read as their 7-bit
//!   forms and filtered the same way. It keeps its state across chunks (a
//!   sequence split between two events is still recognised) and never
//!   holds more than [`MAX_SEQUENCE`] characters of one sequence.

use std::fmt::Write;

/// Longest control sequence kept whole (longer ones are dropped).
pub const MAX_SEQUENCE: usize = 64;

/// Characters that reorder or hide text without being control characters.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{feff}')
}

/// `s` as one line of inert text (see the module docs).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if invisible(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Escape,
    /// `ESC` and intermediate bytes.
    EscInter,
    Csi,
    /// A string dropped up to its terminator (OSC ends at BEL too).
    Str {
        osc: bool,
    },
    /// `ESC` inside a string: `\` ends it.
    StrEsc {
        osc: bool,
    },
    /// A CSI too long to keep: dropped up to its final byte.
    CsiSkip,
}

/// The terminal filter of `sessions play` (see the module docs).
#[derive(Debug)]
pub struct Sanitizer {
    state: State,
    seq: String,
}

impl Default for Sanitizer {
    fn default() -> Sanitizer {
        Sanitizer::new()
    }
}

/// What the operator's terminal gets after a replay: default colours and
/// character set, the cursor shown, the main screen, no bracketed paste
/// or mouse reporting left on.
pub const RESET: &str = "\x1b[0m\x1b(B\x0f\x1b[?25h\x1b[?1049l\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1004l\x1b[?1006l\r\n";

/// Private modes (`CSI ? n h`) that make the terminal report mouse or
/// focus events on its input.
fn reporting_mode(n: &str) -> bool {
    matches!(
        n,
        "9" | "1000" | "1001" | "1002" | "1003" | "1004" | "1005" | "1006" | "1015" | "1016"
    )
}

/// Whether a whole CSI sequence (`ESC [` + `body`, its final character
/// last) only draws.
fn csi_allowed(body: &str) -> bool {
    let Some(fin) = body.chars().last() else {
        return false;
    };
    let head = &body[..body.len() - fin.len_utf8()];
    let private = head.starts_with(['?', '<', '=', '>']);
    let inter: String = head.chars().filter(|c| (' '..='/').contains(c)).collect();
    let params: String = head.chars().filter(|c| ('0'..=';').contains(c)).collect();
    match (private, head.chars().next(), inter.as_str(), fin) {
        (false, _, "", f) => "@ABCDEFGHIJKLMPSTXZ`abdefghilmrsu".contains(f) && f != 'i',
        (true, Some('?'), "", 'h' | 'l') => !params.split(';').any(reporting_mode),
        (true, Some('?'), "", 'J' | 'K') => true,
        (false, _, " ", 'q') => true,
        (false, _, "!", 'p') => true,
        _ => false,
    }
}

impl Sanitizer {
    /// A filter in its initial state.
    pub fn new() -> Sanitizer {
        Sanitizer {
            state: State::Ground,
            seq: String::new(),
        }
    }

    /// Filters `input` into `out`.
    pub fn push(&mut self, input: &str, out: &mut String) {
        for c in input.chars() {
            self.step(c, out);
        }
    }

    fn step(&mut self, c: char, out: &mut String) {
        // C1 controls as their 7-bit forms: ESC and c - 0x40.
        if ('\u{80}'..='\u{9f}').contains(&c) {
            let seven = char::from_u32(c as u32 - 0x40).unwrap_or('@');
            if c == '\u{9c}' {
                // ST: ends a string.
                if matches!(self.state, State::Str { .. } | State::StrEsc { .. }) {
                    self.state = State::Ground;
                }
                return;
            }
            if !matches!(self.state, State::Str { .. } | State::StrEsc { .. }) {
                self.state = State::Escape;
                self.seq.clear();
                self.step(seven, out);
            }
            return;
        }
        match self.state {
            State::Ground => match c {
                '\x1b' => {
                    self.state = State::Escape;
                    self.seq.clear();
                }
                // BEL, BS, HT, LF, VT, FF, CR, SO, SI draw (or beep);
                // ENQ would make the terminal send its answerback.
                '\x07' | '\x08' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x0e' | '\x0f' => {
                    out.push(c)
                }
                c if c.is_control() => {}
                c => out.push(c),
            },
            State::Escape => match c {
                '[' => {
                    self.state = State::Csi;
                    self.seq.clear();
                }
                ']' => self.state = State::Str { osc: true },
                'P' | 'X' | '^' | '_' => self.state = State::Str { osc: false },
                // Save and restore the cursor, keypad modes, index, next
                // line, tab set, reverse index, full reset.
                '7' | '8' | '=' | '>' | 'D' | 'E' | 'H' | 'M' | 'c' => {
                    out.push('\x1b');
                    out.push(c);
                    self.state = State::Ground;
                }
                ' '..='/' => {
                    self.seq.clear();
                    self.seq.push(c);
                    self.state = State::EscInter;
                }
                '\x1b' => {}
                // DECID (`ESC Z`) answers; the rest is dropped too.
                _ => self.state = State::Ground,
            },
            State::EscInter => match c {
                ' '..='/' if self.seq.len() < 4 => self.seq.push(c),
                '0'..='~' => {
                    // Character set designations and DEC line/screen
                    // tests draw; `ESC %` (leave UTF-8) and `ESC SP`
                    // (8-bit answers) do not pass.
                    if matches!(self.seq.as_str(), "(" | ")" | "*" | "+" | "#") {
                        out.push('\x1b');
                        out.push_str(&self.seq);
                        out.push(c);
                    }
                    self.state = State::Ground;
                }
                _ => self.state = State::Ground,
            },
            State::Csi => {
                if ('@'..='~').contains(&c) {
                    self.seq.push(c);
                    if csi_allowed(&self.seq) {
                        out.push_str("\x1b[");
                        out.push_str(&self.seq);
                    }
                    self.seq.clear();
                    self.state = State::Ground;
                } else if (' '..='?').contains(&c) {
                    if self.seq.len() >= MAX_SEQUENCE {
                        self.seq.clear();
                        self.state = State::CsiSkip;
                    } else {
                        self.seq.push(c);
                    }
                } else if c == '\x1b' {
                    self.state = State::Escape;
                    self.seq.clear();
                } else {
                    // A control inside a CSI: the sequence is broken.
                    self.seq.clear();
                    self.state = State::Ground;
                }
            }
            State::CsiSkip => {
                if ('@'..='~').contains(&c) || c == '\x1b' {
                    self.state = State::Ground;
                }
            }
            State::Str { osc } => match c {
                '\x1b' => self.state = State::StrEsc { osc },
                '\x07' if osc => self.state = State::Ground,
                _ => {}
            },
            State::StrEsc { osc } => {
                self.state = if c == '\\' {
                    State::Ground
                } else {
                    State::Str { osc }
                };
            }
        }
    }
}

/// Filters one whole text (a fresh [`Sanitizer`]).
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    Sanitizer::new().push(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "before";
    const AFTER: &str = "after";

    fn assert_dropped(seq: &str, class: &str) {
        let input = format!("{TEXT}{seq}{AFTER}");
        assert_eq!(
            sanitize(&input),
            format!("{TEXT}{AFTER}"),
            "{class}: {seq:?}"
        );
        // Split at every point between two events: still dropped.
        let chars: Vec<char> = input.chars().collect();
        for cut in 0..chars.len() {
            let (a, b): (String, String) =
                (chars[..cut].iter().collect(), chars[cut..].iter().collect());
            let mut f = Sanitizer::new();
            let mut out = String::new();
            f.push(&a, &mut out);
            f.push(&b, &mut out);
            assert_eq!(
                out,
                format!("{TEXT}{AFTER}"),
                "{class} split at {cut}: {seq:?}"
            );
        }
    }

    #[test]
    fn given_osc_52_clipboard_writes_and_queries_then_dropped() {
        for seq in [
            "\x1b]52;c;cm0gLXJmIH4K\x07",
            "\x1b]52;c;cm0gLXJmIH4K\x1b\\",
            "\x1b]52;c;?\x07",
            "\u{9d}52;p;cm0gLXJm\u{9c}",
        ] {
            assert_dropped(seq, "OSC 52");
        }
    }

    #[test]
    fn given_title_sequences_then_dropped() {
        for seq in [
            "\x1b]0;pwned\x07",
            "\x1b]2;pwned\x1b\\",
            "\x1b]1;icon\x07",
            "\x1b[22;0t",
            "\x1b[23;0t",
        ] {
            assert_dropped(seq, "title");
        }
    }

    #[test]
    fn given_hyperlinks_then_dropped_and_their_text_kept() {
        let input = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\";
        assert_eq!(sanitize(input), "click");
        assert_dropped("\x1b]8;id=1;file:///etc/passwd\x07", "hyperlink");
    }

    #[test]
    fn given_dcs_sos_pm_apc_strings_then_dropped() {
        for seq in [
            "\x1bP$q\"p\x1b\\",
            "\x1bPq#0;2;0;0;0#0~~@@vv@@~~$-\x1b\\",
            "\x1bPtmux;\x1b\x1b]52;c;AAAA\x07\x1b\\",
            "\u{90}$qm\u{9c}",
            "\x1bXsos\x1b\\",
            "\x1b^pm\x1b\\",
            "\x1b_Gf=100;AAAA\x1b\\",
        ] {
            assert_dropped(seq, "DCS/SOS/PM/APC");
        }
    }

    #[test]
    fn given_sequences_that_make_the_terminal_answer_then_dropped() {
        for seq in [
            "\x1b[5n",
            "\x1b[6n",
            "\x1b[?6n",
            "\x1b[c",
            "\x1b[0c",
            "\x1b[>c",
            "\x1b[=c",
            "\x1bZ",
            "\x05",
            "\x1b[14t",
            "\x1b[18t",
            "\x1b[21t",
            "\x1b[8;100;100t",
            "\x1b[?2004$p",
            "\x1b[>0q",
            "\x1b[1;1;1;1;1;1*y",
            "\x1b[?u",
            "\x1b[?1000h",
            "\x1b[?1003;1006h",
            "\x1b[?1004h",
            "\x1b%@",
            "\u{9b}6n",
        ] {
            assert_dropped(seq, "device query");
        }
    }

    #[test]
    fn given_drawing_sequences_then_they_pass_unchanged() {
        for seq in [
            "\x1b[31;1m",
            "\x1b[0m",
            "\x1b[2J",
            "\x1b[H",
            "\x1b[10;20H",
            "\x1b[K",
            "\x1b[?25l",
            "\x1b[?1049h",
            "\x1b[?2004h",
            "\x1b[1;24r",
            "\x1b7",
            "\x1b8",
            "\x1b(0",
            "\x1b[2 q",
            "\r\n\t\x08",
        ] {
            let input = format!("a{seq}b");
            assert_eq!(sanitize(&input), input, "{seq:?}");
        }
        // A C1 CSI that draws is written in its 7-bit form.
        assert_eq!(sanitize("\u{9b}1mx"), "\x1b[1mx");
    }

    #[test]
    fn given_an_endless_sequence_then_memory_stays_bounded_and_text_resumes() {
        let mut f = Sanitizer::new();
        let mut out = String::new();
        f.push("\x1b[", &mut out);
        for _ in 0..10_000 {
            f.push("1;", &mut out);
            assert!(f.seq.len() <= MAX_SEQUENCE);
        }
        f.push("mok", &mut out);
        assert_eq!(out, "ok");
        // An unterminated OSC swallows what follows until its end, keeping nothing.
        let mut f = Sanitizer::new();
        let mut out = String::new();
        f.push(&format!("\x1b]52;c;{}", "A".repeat(100_000)), &mut out);
        assert!(out.is_empty() && f.seq.is_empty());
    }

    #[test]
    fn given_controls_and_bidi_overrides_then_escape_writes_them_inert() {
        assert_eq!(escape("a\x1b]0;x\x07b"), "a\\x1b]0;x\\x07b");
        assert_eq!(escape("rm \u{202e}fdp.exe"), "rm \\u{202e}fdp.exe");
        assert_eq!(escape("x\u{9b}6n\r\n\\"), "x\\x9b6n\\r\\n\\\\");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}

//! The daemons' log on stderr (`codext-helper`'s and `codext-channel`'s),
//! with levels journald understands.
//!
//! Every line goes through [`write`] — the one place that prints a prefix —
//! through the macros [`log_error!`](crate::log_error),
//! [`log_warn!`](crate::log_warn), [`log_info!`](crate::log_info) and
//! [`log_debug!`](crate::log_debug). A line is `<program>: <message>`
//! ([`set_program`]); in
//! a daemon (and in a CLI verb whose stderr is the journal) it starts with
//! the sd-daemon(3) priority prefix `<N>`, which journald turns into the
//! entry's priority (systemd.exec(5), `SyslogLevelPrefix=`, on by default):
//! `<3>` error, `<4>` warning, `<6>` info, `<7>` debug.
//!
//! Lines below the threshold are not even formatted. The threshold is
//! the helper's `log_level` in `helper.toml` (default `info`), overridden by the
//! environment variable `CODEXT_LOG_LEVEL` (`error`, `warning`, `info`,
//! `debug`). Per-request lines (every connection, every ping) are `debug`:
//! a busy server's journal holds what happened, not every question asked.
//!
//! This is not the helper's audit trail, which records every
//! issue, answer, login and removal whatever the level. No secret is ever
//! passed to a log line.

use serde::Deserialize;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Environment variable that overrides the configured level.
pub const LEVEL_ENV: &str = "CODEXT_LOG_LEVEL";

/// How important a line is; the value is its syslog priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something failed: an operator should look (`<3>`).
    Error = 3,
    /// Something unusual or refused that the helper handled (`<4>`).
    Warning = 4,
    /// Start-up, listening, what the operator expects to see (`<6>`).
    #[default]
    Info = 6,
    /// Every connection and request (`<7>`).
    Debug = 7,
}

impl Level {
    /// Parses `error`, `warning` (or `warn`), `info`, `debug`.
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" | "err" => Some(Level::Error),
            "warning" | "warn" => Some(Level::Warning),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        })
    }
}

static THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);
static PRIORITY_PREFIX: AtomicBool = AtomicBool::new(false);
static PROGRAM: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the program every line starts with (once, at start; default
/// `codext`).
pub fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

fn program() -> &'static str {
    PROGRAM.get().copied().unwrap_or("codext")
}

/// Sets the threshold: `CODEXT_LOG_LEVEL` if it names a level, else
/// `configured`. Returns a warning to log when the variable is set to
/// something that is not a level.
pub fn set_level(configured: Level) -> Option<String> {
    let env = std::env::var(LEVEL_ENV).ok();
    let (level, bad) = resolve(configured, env.as_deref());
    THRESHOLD.store(level as u8, Ordering::Relaxed);
    bad
}

/// The level from the configuration and the environment's value.
fn resolve(configured: Level, env: Option<&str>) -> (Level, Option<String>) {
    match env {
        None => (configured, None),
        Some(v) => match Level::parse(v) {
            Some(l) => (l, None),
            None => (
                configured,
                Some(format!(
                    "{LEVEL_ENV}={v:?} is not error, warning, info or debug; using {configured}"
                )),
            ),
        },
    }
}

/// Turns the `<N>` priority prefix on (the daemon, whose stderr is the
/// journal or a collector) or off (a CLI verb at a terminal).
pub fn set_priority_prefix(on: bool) {
    PRIORITY_PREFIX.store(on, Ordering::Relaxed);
}

/// True when stderr is the journal: systemd sets `JOURNAL_STREAM` to the
/// `device:inode` of the stream it connected (systemd.exec(5)), and a
/// child whose stderr was redirected since no longer matches.
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsRawFd;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr().as_raw_fd())
        .is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// True when a line of `level` is written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= THRESHOLD.load(Ordering::Relaxed)
}

/// The text of one line (with its newline).
fn render(level: Level, prefix: bool, args: fmt::Arguments<'_>) -> String {
    let mut line = String::with_capacity(96);
    if prefix {
        line.push_str(&format!("<{}>", level as u8));
    }
    line.push_str(program());
    line.push_str(": ");
    if !prefix && level == Level::Warning {
        // At a terminal the priority is not shown: say it.
        line.push_str("warning: ");
    }
    line.push_str(&args.to_string());
    // One line per entry: an embedded newline would start a new journal
    // entry without a priority.
    let mut line = line.replace('\n', " ");
    line.push('\n');
    line
}

/// Writes one line at `level` if the threshold lets it through, in a
/// single write (concurrent threads' lines do not interleave). A failure
/// to write is ignored: there is nowhere else to say it.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = render(level, PRIORITY_PREFIX.load(Ordering::Relaxed), args);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A line at [`Level::Error`].
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
/// A line at [`Level::Warning`].
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($arg)*)) };
}
/// A line at [`Level::Info`].
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}
/// A line at [`Level::Debug`].
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_level_then_the_line_carries_its_sd_daemon_priority() {
        for (level, n) in [
            (Level::Error, "<3>"),
            (Level::Warning, "<4>"),
            (Level::Info, "<6>"),
            (Level::Debug, "<7>"),
        ] {
            let line = render(level, true, format_args!("x {}", 1));
            assert_eq!(line, format!("{n}{}: x 1\n", program()));
        }
    }

    #[test]
    fn given_no_prefix_then_a_terminal_reader_still_sees_warnings_as_such() {
        assert_eq!(
            render(Level::Warning, false, format_args!("gap")),
            format!("{}: warning: gap\n", program())
        );
        assert_eq!(
            render(Level::Error, false, format_args!("bad")),
            format!("{}: bad\n", program())
        );
    }

    #[test]
    fn given_an_embedded_newline_then_one_line_is_written() {
        let line = render(Level::Info, true, format_args!("a\nb"));
        assert_eq!(line, format!("<6>{}: a b\n", program()));
    }

    #[test]
    fn given_the_default_threshold_then_debug_lines_like_a_ping_are_dropped() {
        let (level, bad) = resolve(Level::default(), None);
        assert_eq!((level, bad), (Level::Info, None));
        THRESHOLD.store(level as u8, Ordering::Relaxed);
        assert!(
            !enabled(Level::Debug),
            "a per-request line would be written"
        );
        assert!(enabled(Level::Info) && enabled(Level::Warning) && enabled(Level::Error));
    }

    #[test]
    fn given_the_environment_then_it_overrides_the_configuration_or_is_reported() {
        assert_eq!(resolve(Level::Info, Some("debug")).0, Level::Debug);
        assert_eq!(resolve(Level::Debug, Some("WARN")).0, Level::Warning);
        let (level, bad) = resolve(Level::Warning, Some("loud"));
        assert_eq!(level, Level::Warning);
        assert!(bad.unwrap().contains("\"loud\""));
    }

    #[test]
    fn given_the_config_spelling_then_each_level_parses() {
        #[derive(Deserialize)]
        struct T {
            l: Level,
        }
        let t: T = serde_json::from_str(r#"{"l": "debug"}"#).unwrap();
        assert_eq!(t.l, Level::Debug);
        assert!(serde_json::from_str::<T>(r#"{"l": "loud"}"#).is_err());
    }
}

//! What the CLI tells its caller while it works: a line on stderr for
//! people (which step, how long so far), and with `--json` one JSON object
//! per line on stdout for programs (`{"event":"connected",…}`).

use serde_json::{json, Value};
use std::io::Write;
use std::time::Instant;

/// Reports progress and events.
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    start: Instant,
}

impl Reporter {
    /// A reporter; `json` adds the event lines on stdout.
    pub fn new(json: bool) -> Reporter {
        Reporter {
            json,
            start: Instant::now(),
        }
    }

    /// A step begins or ends: `text` for people, `event` and `fields` for
    /// programs (`fields` must be a JSON object; `event` and `elapsed_ms`
    /// are added).
    pub fn event(&self, event: &str, text: &str, fields: Value) {
        let elapsed = self.start.elapsed();
        eprintln!("codext: [{:>5.1}s] {text}", elapsed.as_secs_f64());
        if self.json {
            let mut v = json!({"event": event, "elapsed_ms": elapsed.as_millis() as u64});
            if let (Some(out), Value::Object(extra)) = (v.as_object_mut(), fields) {
                out.extend(extra);
            }
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{v}");
            let _ = stdout.flush();
        }
    }

    /// The final error, as an event too (with `--json`), before the CLI
    /// prints it and exits with `code`.
    pub fn error(&self, message: &str, code: i32) {
        if self.json {
            let v = json!({"event": "error", "message": message, "exit_code": code,
                           "elapsed_ms": self.start.elapsed().as_millis() as u64});
            let _ = writeln!(std::io::stdout().lock(), "{v}");
        }
    }
}

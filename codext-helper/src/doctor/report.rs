//! What `doctor` reports: one line per check (ok, warn or fail, and what
//! to do), and how the report is printed.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As codext needs it.
    Ok,
    /// Works, but weaker than it should be.
    Warn,
    /// codext is unsafe or will not work: fix it.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name (`sshd.usepam`, `modes.socket`, …).
    pub check: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do (empty when ok).
    pub advice: String,
}

/// The report being written: one [`Check`] per line.
#[derive(Default)]
pub(super) struct Report(pub(super) Vec<Check>);

impl Report {
    pub(super) fn add(
        &mut self,
        check: &str,
        status: Status,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) {
        let advice = if status == Status::Ok {
            String::new()
        } else {
            advice.into()
        };
        self.0.push(Check {
            check: check.into(),
            status,
            detail: detail.into(),
            advice,
        });
    }
    pub(super) fn ok(&mut self, check: &str, detail: impl Into<String>) {
        self.add(check, Status::Ok, detail, "");
    }
    pub(super) fn fail(
        &mut self,
        check: &str,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) {
        self.add(check, Status::Fail, detail, advice);
    }
    pub(super) fn warn(
        &mut self,
        check: &str,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) {
        self.add(check, Status::Warn, detail, advice);
    }
}

/// Prints the report; returns the exit status (1 when anything failed).
pub fn print(checks: &[Check], json: bool) -> i32 {
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if json {
        let v = serde_json::json!({"ok": !failed, "checks": checks});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in checks {
            let tag = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            if c.advice.is_empty() {
                println!("{tag} {:<width$}  {}", c.check, c.detail);
            } else {
                println!(
                    "{tag} {:<width$}  {} -- do: {}",
                    c.check, c.detail, c.advice
                );
            }
        }
    }
    i32::from(failed)
}

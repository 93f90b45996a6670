//! PAM files as text: parsing lines as Linux-PAM reads them, planning the
//! edits of sshd's stack and the job daemons' stacks, and taking codext's
//! lines out again.

use super::{refused, INCLUDE_AUTH, INCLUDE_SESSION, PAM_SSHD};
use crate::error::Result;

/// One line of a PAM file, as Linux-PAM reads it (pam.conf(5): `#` starts a
/// comment anywhere on a line; a leading `-` on the type silences a missing
/// module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamLine {
    /// Blank or comment only.
    Blank,
    /// `@include NAME`.
    Include(String),
    /// `TYPE CONTROL MODULE ARGS…`.
    Rule {
        /// `auth`, `account`, `session` or `password` (without `-`).
        kind: String,
        /// The control field, brackets included.
        control: String,
        /// The module path or name.
        module: String,
        /// The arguments.
        args: Vec<String>,
    },
}

/// Parses one line (see [`PamLine`]); `None` for a line PAM would not
/// accept or that this parser does not understand (continuations).
pub fn parse_pam_line(line: &str) -> Option<PamLine> {
    let text = line.split('#').next().unwrap_or("").trim();
    if text.is_empty() {
        return Some(PamLine::Blank);
    }
    if text.ends_with('\\') {
        return None;
    }
    if let Some(rest) = text.strip_prefix("@include") {
        let name = rest.trim();
        return (!name.is_empty() && !name.contains(char::is_whitespace))
            .then(|| PamLine::Include(name.to_owned()));
    }
    let (kind, rest) = text.split_once(char::is_whitespace)?;
    let kind = kind.trim_start_matches('-').to_ascii_lowercase();
    if !["auth", "account", "session", "password"].contains(&kind.as_str()) {
        return None;
    }
    let rest = rest.trim_start();
    let (control, rest) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        (&rest[..=end], &rest[end + 1..])
    } else {
        rest.split_once(char::is_whitespace)?
    };
    let mut words = rest.split_whitespace();
    let module = words.next()?.to_owned();
    Some(PamLine::Rule {
        kind,
        control: control.to_owned(),
        module,
        args: words.map(str::to_owned).collect(),
    })
}

pub(super) fn module_name(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

pub(super) fn is_rule(l: &PamLine) -> bool {
    !matches!(l, PamLine::Blank)
}

pub(super) fn selinux(l: &PamLine, arg: &str) -> bool {
    matches!(l, PamLine::Rule { kind, module, args, .. }
        if kind == "session" && module_name(module) == "pam_selinux.so" && args.iter().any(|a| a == arg))
}

pub(super) fn parse_all(text: &str, path: &str) -> Result<Vec<PamLine>> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            parse_pam_line(l).ok_or_else(|| {
                refused(format!(
                    "{path} line {}: {l:?} is not a PAM line codext-helper understands; \
                     wire codext by hand (docs/SECURITY_REVIEW.md) or fix the line",
                    i + 1
                ))
            })
        })
        .collect()
}

/// `text` without its line number `index` (0-based), and that line.
fn remove_line_at(text: &str, index: usize) -> (String, String) {
    let mut removed = String::new();
    let kept = text
        .split_inclusive('\n')
        .enumerate()
        .filter_map(|(i, l)| {
            if i == index {
                removed = l.to_owned();
                None
            } else {
                Some(l)
            }
        })
        .collect();
    (kept, removed)
}

pub(super) fn insert_before(text: &str, index: usize, lines: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i == index {
            for new in lines {
                out.push_str(new);
                out.push('\n');
            }
        }
        out.push_str(l);
    }
    out
}

/// `/etc/pam.d/sshd` with codext's two lines in place, and the lines added.
///
/// The shape understood is Debian's (and Ubuntu's): the first rule is
/// `@include common-auth`; the first session rule is `pam_selinux.so
/// close` and there is exactly one `pam_selinux.so open` after it. Anything
/// else is refused: a wrong guess in this file locks people out.
/// `@include codext` goes first; `@include codext-session` right after
/// `pam_selinux.so close` (moved there from an earlier release's place
/// just before `pam_selinux.so open`).
pub fn plan_pam_sshd(text: &str) -> Result<(String, Vec<String>)> {
    let lines = parse_all(text, PAM_SSHD)?;
    let shape = |why: &str| {
        refused(format!(
            "{PAM_SSHD}: {why}; codext-helper setup only edits the stock Debian shape \
             (first rule `@include common-auth`, session rules framed by `pam_selinux.so close` \
             first and one `pam_selinux.so open`). Nothing was changed: add `{INCLUDE_AUTH}` as the \
             first rule and `{INCLUDE_SESSION}` just after `pam_selinux.so close` by hand"
        ))
    };
    let inc = |name: &str| PamLine::Include(name.to_owned());
    let count = |l: &PamLine| lines.iter().filter(|x| *x == l).count();
    let (n_auth, n_session) = (count(&inc("codext")), count(&inc("codext-session")));
    if n_auth > 1 || n_session > 1 {
        return Err(shape("codext is included more than once"));
    }
    let rules: Vec<(usize, &PamLine)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_rule(l))
        .collect();
    // Auth: `@include codext` must be the first rule, `@include common-auth` next.
    let others: Vec<&(usize, &PamLine)> = rules
        .iter()
        .filter(|(_, l)| **l != inc("codext") && **l != inc("codext-session"))
        .collect();
    let Some(&&(first_index, first)) = others.first() else {
        return Err(shape("the file has no rules"));
    };
    if *first != inc("common-auth") {
        return Err(shape("the first rule is not `@include common-auth`"));
    }
    let mut added = Vec::new();
    let mut out = text.to_owned();
    let auth_ok = rules.first().is_some_and(|(_, l)| **l == inc("codext"));
    if n_auth == 1 && !auth_ok {
        return Err(shape("`@include codext` is not the first rule"));
    }
    // Session: right after the first session rule (selinux close), before
    // every other session module — pam_env above all, which reads the
    // user's own ~/.pam_environment (Debian: `user_readenv=1`) and could
    // otherwise replace what sshd put in SSH_AUTH_INFO_0 before
    // pam_codext reads it.
    let session: Vec<&(usize, &PamLine)> = others
        .iter()
        .copied()
        .filter(|(_, l)| matches!(l, PamLine::Rule { kind, .. } if kind == "session"))
        .collect();
    let Some(&&(close, close_line)) = session.first() else {
        return Err(shape("there is no session rule"));
    };
    if !selinux(close_line, "close") {
        return Err(shape(
            "the first session rule is not `pam_selinux.so close`",
        ));
    }
    let opens = lines.iter().filter(|l| selinux(l, "open")).count();
    if opens != 1 {
        return Err(shape("there is not exactly one `pam_selinux.so open` rule"));
    }
    let after_close = rules.iter().find(|(i, _)| *i > close).map(|(_, l)| *l);
    let at = lines.iter().position(|l| *l == inc("codext-session"));
    // Insert from the bottom up so indices stay valid.
    match at {
        Some(_) if after_close == Some(&inc("codext-session")) => {}
        Some(old) => {
            // An earlier release placed it just before `pam_selinux.so
            // open`, after pam_env: move it up (the line is the same, so
            // unsetup still finds it wherever it is).
            let (without, _) = remove_line_at(&out, old);
            out = insert_before(&without, close + 1, &[INCLUDE_SESSION.to_owned()]);
            added.push(INCLUDE_SESSION.to_owned());
        }
        None => {
            out = insert_before(&out, close + 1, &[INCLUDE_SESSION.to_owned()]);
            added.push(INCLUDE_SESSION.to_owned());
        }
    }
    if n_auth == 0 {
        out = insert_before(&out, first_index, &[INCLUDE_AUTH.to_owned()]);
        added.insert(0, INCLUDE_AUTH.to_owned());
    }
    Ok((out, added))
}

/// The rule that keeps `group` out of a job daemon's PAM stack.
pub fn job_rule(group: &str) -> String {
    format!("account    required     pam_succeed_if.so quiet user notingroup {group}")
}

pub(super) fn job_comment(group: &str) -> String {
    format!("# codext: members of group {group} (temporary users) may not run jobs here")
}

/// A job daemon's stack (`atd`, `cron`) with [`job_rule`] as its first
/// account rule, and the lines added. The shape understood: exactly one
/// `@include common-account` and no account rule before it.
pub fn plan_job_stack(text: &str, path: &str, group: &str) -> Result<(String, Vec<String>)> {
    let lines = parse_all(text, path)?;
    let rule = parse_pam_line(&job_rule(group));
    let is_ours = |l: &PamLine| Some(l) == rule.as_ref();
    let account = |l: &PamLine| matches!(l, PamLine::Rule { kind, .. } if kind == "account");
    let shape = |why: &str| {
        refused(format!(
            "{path}: {why}; codext-helper setup expects one `@include common-account` and no \
             account rule before it. Nothing was changed: add `{}` as the first account rule \
             by hand",
            job_rule(group)
        ))
    };
    let ours: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_ours(l))
        .map(|(i, _)| i)
        .collect();
    let first_account = lines
        .iter()
        .position(|l| account(l) && !is_ours(l) || *l == PamLine::Include("common-account".into()));
    match (&ours[..], first_account) {
        ([], None) => Err(shape("no account rules")),
        ([], Some(i)) => {
            if lines
                .iter()
                .filter(|l| **l == PamLine::Include("common-account".into()))
                .count()
                != 1
                || lines[i] != PamLine::Include("common-account".into())
            {
                return Err(shape("the account rules are not the stock ones"));
            }
            let added = vec![job_comment(group), job_rule(group)];
            Ok((insert_before(text, i, &added), added))
        }
        ([one], Some(i)) if *one < i => Ok((text.to_owned(), Vec::new())),
        ([_], None) => Ok((text.to_owned(), Vec::new())),
        _ => Err(shape("the codext rule is there twice or not first")),
    }
}

/// `text` without one occurrence of each of `lines` (compared without
/// trailing white space), and how many were found.
pub fn remove_lines(text: &str, lines: &[String]) -> (String, usize) {
    let mut kept: Vec<&str> = text.split_inclusive('\n').collect();
    let mut found = 0;
    for l in lines {
        if let Some(i) = kept.iter().position(|k| k.trim_end() == l.trim_end()) {
            kept.remove(i);
            found += 1;
        }
    }
    (kept.concat(), found)
}

/// The shipped PAM file text with the module token `pam_codext.so` of each
/// rule replaced by `module` (comments untouched).
pub fn with_module(text: &str, module: &str) -> String {
    text.split_inclusive('\n')
        .map(|l| match parse_pam_line(l) {
            Some(PamLine::Rule { module: m, .. }) if m == "pam_codext.so" => {
                let (code, comment) = l.split_once('#').map_or((l, None), |(c, r)| (c, Some(r)));
                let code = code
                    .split_inclusive(char::is_whitespace)
                    .map(|w| {
                        if w.trim_end() == "pam_codext.so" {
                            format!("{module}{}", &w["pam_codext.so".len()..])
                        } else {
                            w.to_owned()
                        }
                    })
                    .collect::<String>();
                match comment {
                    Some(c) => format!("{code}#{c}"),
                    None => code,
                }
            }
            _ => l.to_owned(),
        })
        .collect()
}

//! The gate: what a channel of a grant may run, decided by root from the
//! grant's profile and the requested command line
//! (`SSH_ORIGINAL_COMMAND`), before anything of the user's runs.
//!
//! For a `commands` profile:
//! * the request must be plain words: valid UTF-8, no control character
//!   (a newline would be a second command to a shell), none of the
//!   characters a shell reads (`;` `&` `|` `$` `` ` `` `<` `>` `(` `)`
//!   `{` `}` `[` `]` `*` `?` `!` `~` `#` `'` `"` `\`): no shell ever runs,
//!   so they would only be literal bytes, and refusing them says plainly
//!   that none is interpreted;
//! * it must match a rule: exactly its words, or its first words followed
//!   by at most `max_args` words each matching its pattern (anchored at
//!   both ends: `--output=…` or `--` fail a pattern that does not allow a
//!   leading `-`);
//! * the program is found by root in a fixed `PATH` of system folders,
//!   and run directly (`execve`, no shell) with a fixed environment
//!   ([`EXEC_ENV`], plus the user's names and home): nothing the user
//!   wrote (`~/.pam_environment`, `BASH_ENV`, `LD_PRELOAD`, `GIT_*`) gets
//!   in, in the home folder as its working folder;
//! * a transfer runs only if the profile lists it, confined to the
//!   transfer folder: legacy `scp -t|-f PATH` and `rsync --server … . PATH`
//!   have their paths resolved against it and refused outside it (no
//!   `..`, no `~`, an absolute path only under it), with their options
//!   from a fixed list (rsync's `-s`, which moves paths out of the command
//!   line, is refused; `--munge-links` is added, so no symlink it makes
//!   points anywhere); sftp starts there (`sftp-server -d`) with
//!   `symlink` and `hardlink` refused by the server, and the recorder
//!   judges every request on the way (`codext_record::confine`): a path
//!   outside the folder is answered "permission denied" without reaching
//!   the server (sftp-server has no confinement of its own without a
//!   chroot).
//!
//! Any profile: `codext-grant linger SECONDS` is answered by the helper
//! itself (`codext open`/`close` on a grant with no shell).
//!
//! Everything here is pure: the caller gives the profile, the request and
//! the paths; the unit tests play the escapes against it.

use super::{Commands, Transfer};
use codext_core::profile::GRANT_COMMAND;
use std::path::{Component, Path, PathBuf};

/// Folders the gate looks programs up in (root's).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The fixed part of an allowed command's environment.
pub const EXEC_ENV: &[(&str, &str)] = &[("PATH", PATH), ("LANG", "C.UTF-8")];
/// Debian's sftp server (the `Subsystem sftp` line's program).
pub const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// The scp program run for a legacy scp transfer.
pub const SCP: &str = "/usr/bin/scp";
/// rsync.
pub const RSYNC: &str = "/usr/bin/rsync";
/// Longest request looked at.
pub const MAX_REQUEST: usize = 8192;
/// Most words of a request.
pub const MAX_WORDS: usize = 128;

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run `argv` directly (no shell), in `cwd`.
    Exec {
        /// The program (absolute) and its arguments.
        argv: Vec<String>,
        /// Its working folder.
        cwd: PathBuf,
        /// An sftp server whose every request the recorder confines to
        /// this folder.
        confine: Option<PathBuf>,
    },
    /// The helper answers itself.
    Builtin(Builtin),
    /// Refused, with the reason the user sees.
    Refuse(String),
}

/// A request the helper answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `codext-grant linger SECONDS`.
    Linger(u64),
}

/// The characters a shell would read: refused in every request word.
const SHELL_CHARS: &[u8] = b";&|$`<>(){}[]*?!~#'\"\\";

/// Checks one word of a request or a rule: plain, as the module says.
pub fn check_plain_word(w: &str) -> Result<(), String> {
    if let Some(c) = w.bytes().find(|b| *b < 0x20 || *b == 0x7f) {
        return Err(format!(
            "a control character (byte {c:#04x}; a newline would start a second command) is refused"
        ));
    }
    if let Some(c) = w.bytes().find(|b| SHELL_CHARS.contains(b)) {
        return Err(format!(
            "{:?} is refused: no shell runs here, so quotes, `;`, `|`, `&`, `$`, backquotes, \
             redirections, globs and `~` mean nothing; send plain words",
            char::from(c)
        ));
    }
    Ok(())
}

/// The request's words, or why it is not plain.
pub fn parse_request(request: &[u8]) -> Result<Vec<String>, String> {
    if request.len() > MAX_REQUEST {
        return Err(format!("a command of more than {MAX_REQUEST} bytes"));
    }
    let text =
        std::str::from_utf8(request).map_err(|_| "a command that is not UTF-8".to_owned())?;
    // Tabs and newlines are control characters: refused like any.
    for w in text.split(' ') {
        check_plain_word(w)?;
    }
    let words = super::words(text);
    if words.len() > MAX_WORDS {
        return Err(format!("more than {MAX_WORDS} words"));
    }
    Ok(words)
}

/// Checks `transfer_dir` as configured: a relative path below the home
/// of plain components.
pub fn check_transfer_dir(dir: &str) -> Result<(), String> {
    let p = Path::new(dir);
    let plain = !dir.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && dir
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "transfer_dir {dir:?} must be a folder below the home (plain relative components)"
        ))
    }
}

/// Where a transfer path lands: `path` resolved against `root`, which it
/// must not leave (lexically: no `..`; the transfer folder holds no
/// symlink the user made, see the module docs).
pub fn confine(root: &Path, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let rel: PathBuf = if p.is_absolute() {
        p.strip_prefix(root)
            .map_err(|_| {
                format!(
                    "{path} is outside {} (transfers stay in the grant's transfer folder)",
                    root.display()
                )
            })?
            .to_path_buf()
    } else {
        p.to_path_buf()
    };
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "{path} leaves {} (transfers stay in the grant's transfer folder)",
                    root.display()
                ))
            }
        }
    }
    Ok(out)
}

fn base(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// `program` as an absolute path: itself if it has a `/`, else the first
/// executable regular file of that name in [`PATH`] (`exists` tells).
pub fn resolve(program: &str, exists: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    PATH.split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| exists(p))
}

/// A `codext-grant …` request, if it is one (any profile).
pub fn builtin(words: &[String]) -> Option<Result<Builtin, String>> {
    if words.first().map(String::as_str) != Some(GRANT_COMMAND) {
        return None;
    }
    Some(match &words[1..] {
        [verb, secs] if verb == "linger" => secs
            .parse::<u64>()
            .map(Builtin::Linger)
            .map_err(|_| format!("{GRANT_COMMAND} linger takes a number of seconds")),
        _ => Err(format!("usage: {GRANT_COMMAND} linger SECONDS")),
    })
}

/// The decision for a request on a `commands` profile named `profile`
/// whose account's home is `home` (`None`: no command, a login shell).
pub fn decide(
    profile: &str,
    c: &Commands,
    home: &Path,
    request: Option<&[u8]>,
    exists: &dyn Fn(&Path) -> bool,
) -> Decision {
    let refuse = |why: String| Decision::Refuse(format!("profile {profile}: {why}"));
    let Some(request) = request else {
        return refuse(format!(
            "this grant runs only its allowed commands, no shell; allowed: {}",
            allowed(c)
        ));
    };
    let words = match parse_request(request) {
        Ok(w) if w.is_empty() => return refuse("an empty command".into()),
        Ok(w) => w,
        Err(why) => return refuse(why),
    };
    if let Some(b) = builtin(&words) {
        return match b {
            Ok(b) => Decision::Builtin(b),
            Err(why) => refuse(why),
        };
    }
    if let Some(d) = transfer(profile, c, home, &words) {
        return d;
    }
    for rule in &c.rules {
        let n = rule.words.len();
        if words.len() < n || words[..n] != rule.words[..] {
            continue;
        }
        let extra = &words[n..];
        let fits = match &rule.args {
            None => extra.is_empty(),
            Some(re) => extra.len() <= rule.max_args && extra.iter().all(|w| re.is_match(w)),
        };
        if !fits {
            continue;
        }
        let Some(program) = resolve(&words[0], exists) else {
            return refuse(format!("{} is not installed on this server", words[0]));
        };
        let mut argv = vec![program.to_string_lossy().into_owned()];
        argv.extend(words[1..].iter().cloned());
        return Decision::Exec {
            argv,
            cwd: home.to_path_buf(),
            confine: None,
        };
    }
    refuse(format!(
        "`{}` is not allowed; allowed: {}",
        words.join(" "),
        allowed(c)
    ))
}

/// The allowed commands, for a refusal.
pub fn allowed(c: &Commands) -> String {
    let mut out: Vec<String> = c
        .rules
        .iter()
        .map(|r| match &r.args {
            None => format!("`{}`", r.words.join(" ")),
            Some(re) => format!(
                "`{}` and up to {} more words matching {}",
                r.words.join(" "),
                r.max_args,
                re.as_str()
            ),
        })
        .collect();
    for t in &c.transfers {
        out.push(
            match t {
                Transfer::Scp => "scp (legacy protocol, `scp -O`)",
                Transfer::Sftp => "sftp",
                Transfer::Rsync => "rsync",
            }
            .to_owned(),
        );
    }
    if out.is_empty() {
        "nothing".into()
    } else {
        out.join(", ")
    }
}

/// A transfer request (scp, sftp, rsync), if `words` is one.
fn transfer(profile: &str, c: &Commands, home: &Path, words: &[String]) -> Option<Decision> {
    let refuse = |why: String| Decision::Refuse(format!("profile {profile}: {why}"));
    let first = words.first()?;
    let kind = match base(first) {
        "sftp-server" | "internal-sftp" => Transfer::Sftp,
        "scp" => Transfer::Scp,
        "rsync" if words.get(1).map(String::as_str) == Some("--server") => Transfer::Rsync,
        _ => return None,
    };
    let name = match kind {
        Transfer::Scp => "scp",
        Transfer::Sftp => "sftp (also OpenSSH's default scp: use `scp -O` for the legacy protocol)",
        Transfer::Rsync => "rsync",
    };
    if !c.transfers.contains(&kind) {
        return Some(refuse(format!(
            "{name} is not allowed on this grant; allowed: {}",
            allowed(c)
        )));
    }
    let root = home.join(&c.transfer_dir);
    let d = match kind {
        Transfer::Sftp => sftp(words),
        Transfer::Scp => scp(words, &root),
        Transfer::Rsync => rsync(words, &root),
    };
    Some(match d {
        Ok(argv) => Decision::Exec {
            argv,
            confine: (kind == Transfer::Sftp).then(|| root.clone()),
            cwd: root,
        },
        Err(why) => refuse(why),
    })
}

fn sftp(words: &[String]) -> Result<Vec<String>, String> {
    // Only the subsystem as sshd runs it (options of its own, e.g. a log
    // level, are not the user's to choose: they are dropped).
    let first = words.first().map(String::as_str).unwrap_or("");
    if first != SFTP_SERVER && first != "internal-sftp" {
        return Err(format!("sftp runs only as {SFTP_SERVER}"));
    }
    Ok(vec![
        SFTP_SERVER.into(),
        "-d".into(),
        ".".into(),
        "-P".into(),
        "symlink,hardlink".into(),
    ])
}

fn scp(words: &[String], root: &Path) -> Result<Vec<String>, String> {
    let mut argv = vec![SCP.to_owned()];
    let mut dir = None;
    let mut paths = Vec::new();
    let mut options_done = false;
    for w in &words[1..] {
        if !options_done {
            match w.as_str() {
                "-t" | "-f" if dir.is_none() => {
                    dir = Some(w.clone());
                    continue;
                }
                "-r" | "-p" | "-d" | "-v" | "-q" => {
                    argv.push(w.clone());
                    continue;
                }
                "--" => {
                    options_done = true;
                    continue;
                }
                o if o.starts_with('-') => {
                    return Err(format!("scp option {o} is not allowed"));
                }
                _ => options_done = true,
            }
        }
        paths.push(w.as_str());
    }
    let Some(dir) = dir else {
        return Err("scp runs only as a transfer (-t or -f)".into());
    };
    if paths.is_empty() || (dir == "-t" && paths.len() != 1) {
        return Err("scp -t takes one path, scp -f one or more".into());
    }
    argv.push(dir);
    argv.push("--".into());
    for p in paths {
        argv.push(confine(root, p)?.to_string_lossy().into_owned());
    }
    Ok(argv)
}

/// rsync's single-letter options a client sends that move nothing out of
/// the transfer folder (`s`, protect-args, would carry the paths in the
/// protocol instead of the command line the gate checks; options taking
/// a folder, such as `-T`, are not here).
const RSYNC_LETTERS: &str = "logDtprvzcuxWnRHAXKkiSEPbCOJUmdy";

fn rsync(words: &[String], root: &Path) -> Result<Vec<String>, String> {
    let mut argv = vec![RSYNC.to_owned(), "--server".to_owned()];
    let mut rest = &words[2..];
    let sender = rest.first().map(String::as_str) == Some("--sender");
    if sender {
        argv.push("--sender".into());
        rest = &rest[1..];
    }
    let protects = |w: &String| {
        w.strip_prefix('-')
            .filter(|o| !o.starts_with('-'))
            .is_some_and(|o| o.split('.').next().unwrap_or("").contains('s'))
    };
    if rest.iter().any(protects)
        || rest
            .iter()
            .any(|w| w == "--protect-args" || w == "--secluded-args")
    {
        return Err(
            "rsync option -s (--protect-args) is not allowed: it moves the paths out of the command line the gate checks"
                .into(),
        );
    }
    let Some(dot) = rest.iter().position(|w| w == ".") else {
        return Err("rsync --server without its `.`".into());
    };
    for o in &rest[..dot] {
        let ok = if let Some(long) = o.strip_prefix("--") {
            let (name, value) = long.split_once('=').unwrap_or((long, ""));
            match name {
                "delete" | "delete-before" | "delete-during" | "delete-delay" | "delete-after"
                | "partial" | "inplace" | "append" | "existing" | "ignore-existing"
                | "size-only" | "numeric-ids" | "no-implied-dirs" | "mkpath" => value.is_empty(),
                "compress-level" | "timeout" | "modify-window" | "max-size" | "min-size" => {
                    !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric())
                }
                "log-format" | "out-format" => value == "%i" || value == "X",
                _ => false,
            }
        } else if let Some(short) = o.strip_prefix('-') {
            // `-logDtpre.iLsfxCIvu`: letters, then `e` and the protocol's
            // capability letters after a dot.
            let (letters, caps) = match short.split_once('.') {
                Some((l, caps)) => (l.strip_suffix('e').unwrap_or("!"), caps),
                None => (short, ""),
            };
            !letters.is_empty()
                && letters.chars().all(|ch| RSYNC_LETTERS.contains(ch))
                && caps.chars().all(|ch| ch.is_ascii_alphanumeric())
        } else {
            false
        };
        if !ok {
            return Err(format!("rsync option {o} is not allowed"));
        }
        argv.push(o.clone());
    }
    // Symlinks rsync makes point nowhere (rsyncd's munging).
    argv.push("--munge-links".into());
    argv.push(".".into());
    let paths = &rest[dot + 1..];
    if paths.is_empty() || (!sender && paths.len() != 1) {
        return Err("rsync takes one destination, or one or more sources".into());
    }
    for p in paths {
        argv.push(confine(root, p)?.to_string_lossy().into_owned());
    }
    Ok(argv)
}

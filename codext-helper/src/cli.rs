//! The command line: `setup`, `unsetup`, `doctor`, `init`, `issue`,
//! `answer`, `status`, `revoke`, `serve`, `audit verify` and `sessions`
//! (recorded sessions: `list`, `show`, `play`, `export`). Each failure
//! prints one line on stderr and exits non-zero (2: bad input or
//! configuration, 3: refused — for `audit verify`: the chain is broken —,
//! 4: `audit verify` found the chain intact but recorded losses to look at,
//! 1: other).
//!
//! Why one file over 400 lines: the clap definition of every verb and the one
//! `run` where each verb parses its arguments, calls the library and prints
//! the result as text or JSON; no verb holds logic of its own to move out.

use crate::config::{Config, DEFAULT_PATH};
use crate::error::{HelperError, Result};
use crate::lifecycle::{Channel, Helper, UnixTime};
use crate::log::{error, warn};
use clap::{Parser, Subcommand};
use codext_core::keys::PublicKey;
use codext_core::time::rfc3339;
use codext_wire::UserName;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "codext-helper",
    version,
    about = "Root side of codext: puzzles, pending users, just-in-time accounts"
)]
struct Cli {
    /// Configuration file (a missing file means the defaults).
    #[arg(long, global = true, default_value = DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the server key (if missing), the codext group, the system
    /// accounts (the killer's, the DigitalOcean channel's) and the state folder.
    Init {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Issue a puzzle for an agent key (manual channel): prints the puzzle.
    Issue {
        /// The agent's OpenSSH ssh-rsa public key file.
        #[arg(long)]
        client_key: PathBuf,
        /// How long the puzzle may stay unanswered (e.g. 10m).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Issue a further token for this logged-in user (another connection).
        #[arg(long)]
        user: Option<String>,
        /// Where the puzzle goes: printed (manual) or published in the
        /// droplet's tags by the daemon (digitalocean).
        #[arg(long, default_value = "manual", value_parser = ["manual", "digitalocean"])]
        channel: String,
        /// The grant's profile (a [profiles] name of helper.toml; default
        /// shell): what the account may do. The puzzle signs it.
        #[arg(long, default_value = "shell", value_parser = codext_core::ProfileName::parse)]
        profile: codext_core::ProfileName,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Accept an agent's answer (manual channel): arms the user.
    Answer {
        /// The answer line, user-<hex>-<proof>.
        text: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show pending, armed and logged-in users.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a user: forget its puzzle, or end its sessions and remove its account.
    Revoke {
        /// The user name.
        user: String,
    },
    /// Run the daemon (foreground).
    Serve,
    /// Wire this host: PAM lines, sshd drop-in, limits, at/cron rules,
    /// server key and group; checked with `sshd -t`, rolled back on failure.
    Setup {
        /// Folder with the shipped files (the source tree's pam.d/).
        #[arg(long, default_value = crate::setup::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The PAM module to name by absolute path (default: pam_codext.so
        /// in the PAM module folder).
        #[arg(long, conflicts_with = "install_module")]
        module: Option<PathBuf>,
        /// Install this built module as pam_codext.so in the PAM module
        /// folder (unsetup removes it).
        #[arg(long)]
        install_module: Option<PathBuf>,
        /// Print the diff and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Undo what setup did (its manifest says what).
    Unsetup {
        /// Print the diff and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every condition codext needs on this host, one line each.
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// uids held back because their last holder left files behind.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Recorded sessions (every channel of every codext session).
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SessionsCommand {
    /// The recorded sessions and their channels (every text escaped).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Only those that ended after this time (2026-01-31T12:00:00Z) or
        /// this long ago (2h), or are still recorded.
        #[arg(long)]
        since: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One session (10 hex digits) or channel (<session>.<n>): commands,
    /// times, exit codes, bytes, sftp operations, truncation.
    Show {
        /// Session or channel id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replays a session's or a channel's output in this terminal, through
    /// a filter that drops what would act on the terminal beyond drawing.
    Play {
        /// Session or channel id.
        id: String,
        /// Times the recorded pace.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Longest pause, in recorded seconds.
        #[arg(long, default_value_t = 2.0)]
        idle_limit: f64,
    },
    /// Writes one self-contained HTML page (the commands, and a player per
    /// channel) that needs no network to view.
    Export {
        /// Session or channel id.
        id: String,
        /// The page to write (0600).
        #[arg(long)]
        html: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum QuarantineCommand {
    /// List the quarantined uids and what was left.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hand a uid out again (after you removed what its last holder left).
    Release {
        /// The uid.
        uid: u32,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain of the audit trail, across its rotated files
    /// (exit 3 where it breaks; 4 when intact but a recovery recorded lost
    /// entries).
    Verify,
}

fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 90s or 10m: {e}"))?;
    if d.as_secs() == 0 || d.as_secs() > 7 * 24 * 3600 {
        return Err(format!("{s:?} must be between 1s and 7 days"));
    }
    Ok(d)
}

/// The clap definition, for generated man pages and shell completions
/// (`packaging/gen-docs`).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Runs the CLI; returns the exit status.
pub fn main() -> i32 {
    crate::log::set_program("codext-helper");
    let cli: Cli = match codext_core::cli_args::parse_args("codext-helper") {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The daemon's stderr is the journal (or a collector): its lines carry
    // their priority. A verb's carry it only when its stderr is the journal.
    crate::log::set_priority_prefix(
        matches!(cli.command, Command::Serve) || crate::log::stderr_is_journal(),
    );
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e}");
            e.exit_code()
        }
    }
}

/// One withheld uid, as `status` and `quarantine list` print it.
/// One quarantined uid, for the operator's terminal: the leftovers' names
/// are the temporary user's choosing, so control characters are escaped
/// (a name could otherwise carry terminal escape sequences).
fn quarantine_line(uid: u32, q: &crate::store::Quarantine) -> String {
    let named: Vec<String> = q
        .named
        .iter()
        .map(|n| n.escape_debug().to_string())
        .collect();
    format!(
        "uid {uid} (last {}) since {}: {} entries left: {}",
        q.user,
        rfc3339(q.since),
        q.leftovers,
        named.join("; ")
    )
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn run(cli: Cli) -> Result<()> {
    let cfg = Config::load(&cli.config)?;
    if let Some(why) = crate::log::set_level(cfg.log_level) {
        warn!("{why}");
    }
    if let Command::Serve = cli.command {
        return crate::daemon::serve(cfg);
    }
    if let Command::Audit {
        command: AuditCommand::Verify,
    } = cli.command
    {
        let r = crate::audit::verify(&cfg.audit_log, &cfg.state_dir).map_err(|e| {
            HelperError::Refused(format!("audit trail {}: {e}", cfg.audit_log.display()))
        })?;
        println!(
            "audit trail intact: {} entries in {} file{}",
            r.entries,
            r.files,
            if r.files == 1 { "" } else { "s" }
        );
        if r.first_file > 1 {
            println!(
                "checked from the checkpoint of {}.{}: files 1 to {} were deleted by the retention, each deletion recorded in the trail",
                cfg.audit_log.display(),
                r.first_file,
                r.first_file - 1
            );
        }
        // [recording] hook: every record against the SHA-256 the trail holds.
        let found =
            crate::recording::verify::verify(&cfg.audit_log, &cfg.state_dir, &cfg.recordings_dir());
        if !found.problems.is_empty() {
            for p in &found.problems {
                error!("{p}");
            }
            return Err(HelperError::Refused(format!(
                "{} of the recorded sessions' records do not match the audit trail",
                found.problems.len()
            )));
        }
        println!(
            "records intact: {} sealed records match the audit trail",
            found.checked
        );
        for u in &found.unchecked {
            warn!("{u}");
        }
        for w in &r.warnings {
            warn!("{w}");
        }
        match (r.warnings.len(), found.unchecked.len()) {
            (0, 0) => {}
            (0, n) => {
                return Err(HelperError::AuditGaps(format!(
                    "{n} record{} older than the trail's oldest kept line cannot be checked",
                    if n == 1 { "" } else { "s" }
                )))
            }
            (n, _) => {
                return Err(HelperError::AuditGaps(format!(
                    "the chain links, but {n} recover{} could not rule out lost entries",
                    if n == 1 { "y" } else { "ies" }
                )))
            }
        }
        return Ok(());
    }
    if let Command::Sessions { command } = &cli.command {
        return sessions(&cfg, command);
    }
    match &cli.command {
        Command::Setup {
            data_dir,
            module,
            install_module,
            dry_run,
        } => {
            let opts = crate::setup::SetupOptions {
                data_dir: data_dir.clone(),
                module: module.clone(),
                install_module: install_module.clone(),
                dry_run: *dry_run,
            };
            return crate::setup::setup(&cfg, &opts);
        }
        Command::Unsetup { dry_run } => return crate::setup::unsetup(&cfg, *dry_run),
        Command::Doctor { json } => {
            let checks = crate::doctor::run(&cfg);
            if crate::doctor::print(&checks, *json) != 0 {
                let n = checks
                    .iter()
                    .filter(|c| c.status == crate::doctor::Status::Fail)
                    .count();
                return Err(HelperError::Refused(format!("doctor: {n} check(s) failed")));
            }
            return Ok(());
        }
        _ => {}
    }
    let helper = Helper::new(cfg)?;
    match cli.command {
        Command::Init { json } => {
            let r = helper.init(UnixTime::now())?;
            if json {
                print_json(&serde_json::to_value(&r).unwrap_or_default());
            } else {
                println!("server public key: {}", r.server_public_key);
                println!("fingerprint:       {}", r.fingerprint);
                println!("group:             {} (gid {})", r.group, r.gid);
                println!(
                    "killer account:    {} (uid {})",
                    r.killer_user, r.killer_uid
                );
                if !r.quarantined.is_empty() {
                    println!(
                        "quarantined:       uid(s) {:?}: files or keys of earlier holders are still there (codext-helper quarantine list)",
                        r.quarantined
                    );
                }
                println!("Give the public key file to the agent; it pins it with `codext solve --server-key`.");
            }
        }
        Command::Issue {
            client_key,
            ttl,
            user,
            channel,
            profile,
            json,
        } => {
            let renew = user
                .map(|u| UserName::parse(&u).map_err(|e| HelperError::Input(format!("{u:?}: {e}"))))
                .transpose()?;
            let key = PublicKey::load(&client_key)?;
            let channel = Channel::parse(&channel)
                .ok_or_else(|| HelperError::Input(format!("unknown channel {channel:?}")))?;
            if channel == Channel::DigitalOcean && !helper.cfg.digitalocean.enabled {
                return Err(HelperError::Config(
                    "the digitalocean channel is not enabled ([channels.digitalocean] enabled = true)"
                        .into(),
                ));
            }
            let issued = helper.issue_profile(
                &key,
                ttl,
                channel,
                renew.as_ref(),
                &profile,
                UnixTime::now(),
            )?;
            if json {
                print_json(&serde_json::json!({
                    "user": issued.user,
                    "uid": issued.uid,
                    "profile": issued.profile,
                    "puzzle": issued.puzzle,
                    "puzzle_id": issued.puzzle_id,
                    "expires_at": rfc3339(issued.expires_at),
                    "expires_at_unix": issued.expires_at,
                }));
            } else {
                eprintln!(
                    "puzzle for {} (uid {}, profile {}), answer by {}:",
                    issued.user,
                    issued.uid,
                    issued.profile,
                    rfc3339(issued.expires_at)
                );
                println!("{}", issued.puzzle);
            }
        }
        Command::Answer { text, json } => {
            let e = helper.answer(&text, "cli", UnixTime::now())?;
            // A renewal's deadline when it armed one, else the first login's.
            let slot = e.renewal().unwrap_or(e.token());
            let login_by = slot.login_by.map(UnixTime::rfc3339).unwrap_or_default();
            if json {
                print_json(
                    &serde_json::json!({"user": e.user().as_str(), "uid": e.uid(), "armed": true, "login_by": login_by}),
                );
            } else {
                println!(
                    "{} is armed (uid {}); it may log in until {login_by}",
                    e.user(),
                    e.uid()
                );
            }
        }
        Command::Status { json } => {
            let entries = helper.status()?;
            if json {
                let list: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "user": e.user().as_str(), "uid": e.uid(), "phase": e.phase(), "channel": e.channel(),
                            "profile": e.profile().as_str(),
                            "client_fingerprint": e.client_fingerprint(), "attempts": e.attempts(),
                            "sessions": e.sessions().len(), "answer_by": e.token().answer_by.rfc3339(),
                            "login_by": e.token().login_by.map(UnixTime::rfc3339), "grant_until": e.grant_until().map(UnixTime::rfc3339),
                            "removal": e.removal().map(|r| serde_json::json!({
                                "started_at": r.started_at.rfc3339(), "attempts": r.attempts,
                                "last_error": r.last_error,
                                "next_retry": r.next_retry.map(UnixTime::rfc3339),
                            })),
                        })
                    })
                    .collect();
                print_json(&serde_json::Value::Array(list));
            } else if entries.is_empty() {
                println!("no codext users");
            } else {
                println!(
                    "{:<18} {:>6} {:<9} {:>8} {:<20} PROFILE",
                    "USER", "UID", "PHASE", "SESSIONS", "DEADLINE"
                );
                for e in entries {
                    let deadline = e
                        .grant_until()
                        .or(e.token().login_by)
                        .unwrap_or(e.token().answer_by);
                    let phase = e.phase().as_str();
                    println!(
                        "{:<18} {:>6} {:<9} {:>8} {:<20} {}",
                        e.user(),
                        e.uid(),
                        phase,
                        e.sessions().len(),
                        deadline.rfc3339(),
                        e.profile()
                    );
                    if let Some(r) = e.removal() {
                        println!(
                            "    removal since {}, {} attempt(s){}{}",
                            r.started_at.rfc3339(),
                            r.attempts,
                            r.last_error
                                .as_ref()
                                .map(|m| format!(", last failure: {}", m.escape_debug()))
                                .unwrap_or_default(),
                            r.next_retry
                                .map(|t| format!(", next try at {}", t.rfc3339()))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            if !json {
                // Why a uid is withheld: its last holder left files behind.
                for (uid, q) in helper.quarantined()? {
                    println!("quarantined {}", quarantine_line(uid, &q));
                }
            }
        }
        Command::Quarantine {
            command: QuarantineCommand::List { json },
        } => {
            let held = helper.quarantined()?;
            if json {
                print_json(&serde_json::to_value(&held).unwrap_or_default());
            } else if held.is_empty() {
                println!("no quarantined uid");
            } else {
                for (uid, q) in held {
                    println!("{}", quarantine_line(uid, &q));
                }
            }
        }
        Command::Quarantine {
            command: QuarantineCommand::Release { uid },
        } => {
            let q = helper.release_quarantine(uid)?;
            println!("uid {uid} (last {}) released", q.user);
        }
        Command::Revoke { user } => {
            let user =
                UserName::parse(&user).map_err(|e| HelperError::Input(format!("{user:?}: {e}")))?;
            helper.revoke(&user, "operator", UnixTime::now())?;
            println!("{user} revoked");
        }
        Command::Serve
        | Command::Audit { .. }
        | Command::Sessions { .. }
        | Command::Setup { .. }
        | Command::Unsetup { .. }
        | Command::Doctor { .. } => {}
    }
    Ok(())
}

/// `sessions …` (read-only: the records and nothing else).
fn sessions(cfg: &Config, command: &SessionsCommand) -> Result<()> {
    use crate::recording::view;
    match command {
        SessionsCommand::List { user, since, json } => {
            let since = since
                .as_deref()
                .map(|s| view::parse_since(s, codext_core::time::now()))
                .transpose()
                .map_err(HelperError::Input)?;
            print!("{}", view::list(cfg, user.as_deref(), since, *json)?);
        }
        SessionsCommand::Show { id, json } => print!("{}", view::show(cfg, id, *json)?),
        SessionsCommand::Play {
            id,
            speed,
            idle_limit,
        } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            view::play(cfg, id, *speed, *idle_limit, &mut out, std::thread::sleep)?;
        }
        SessionsCommand::Export { id, html } => {
            let n = view::export(cfg, id, html)?;
            eprintln!(
                "wrote {} ({n} channel{}): open it in a browser, no network needed",
                html.display(),
                if n == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}

//! The command line: `keygen`, `solve`, `ssh` (and, when ssh runs codext as
//! its askpass program, the askpass callback). Each failure prints one
//! line on stderr and exits non-zero (2: malformed input, 3: refused, 1:
//! other).

use crate::error::{ClientError, Result};
use crate::{askpass, ssh};
use clap::{Parser, Subcommand};
use codext_core::keys::{PrivateKey, PublicKey, MAX_BITS, MIN_AGENT_BITS, SERVER_BITS};
use codext_core::time::{now, rfc3339};
use codext_core::{OpenedPuzzle, Puzzle};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "codext",
    version,
    about = "Agent side of codext: solve a server's puzzle and log in with plain ssh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate the agent's RSA key: KEY (0600) and KEY.pub (OpenSSH format).
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        key: PathBuf,
        /// Key size in bits.
        #[arg(long, default_value_t = 3072)]
        bits: usize,
    },
    /// Verify and decrypt a puzzle; print the answer to publish.
    Solve {
        /// The agent's private key.
        #[arg(long)]
        key: PathBuf,
        /// The server's public key, pinned (OpenSSH format).
        #[arg(long)]
        server_key: PathBuf,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
        /// Also print the password (the token's text form).
        #[arg(long)]
        password: bool,
        /// The puzzle text, or - to read it from stdin.
        puzzle: String,
    },
    /// Solve a puzzle again and log in with ssh (after the server accepted the answer).
    Ssh {
        /// The agent's private key.
        #[arg(long)]
        key: PathBuf,
        /// The server's public key, pinned (OpenSSH format).
        #[arg(long)]
        server_key: PathBuf,
        /// Host to connect to.
        #[arg(long)]
        host: String,
        /// SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// The puzzle text, or - to read it from stdin.
        puzzle: String,
        /// Remote command (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
}

/// Runs the CLI; returns the exit status.
pub fn main() -> i32 {
    // ssh runs us as SSH_ASKPASS with the prompt as the only argument.
    if let Some(socket) = std::env::var_os(askpass::ENV) {
        if std::env::args_os().len() <= 2 {
            return askpass::client(&socket.to_string_lossy());
        }
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // One line, like every other error (the first line of clap's
            // message names the problem; `--help` has the rest).
            let text = e.to_string();
            eprintln!(
                "codext: {}",
                text.lines()
                    .next()
                    .unwrap_or("bad arguments")
                    .trim_start_matches("error: ")
            );
            return 2;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("codext: {e}");
            e.exit_code()
        }
    }
}

fn read_puzzle(arg: &str) -> Result<Puzzle> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut s)
            .map_err(|e| ClientError::Input(format!("cannot read the puzzle from stdin: {e}")))?;
        s
    } else {
        arg.to_owned()
    };
    Ok(Puzzle::from_text(&text)?)
}

/// Loads the agent key and the pinned server key, and opens the puzzle.
pub fn open(key: &Path, server_key: &Path, puzzle: &Puzzle) -> Result<OpenedPuzzle> {
    let agent = PrivateKey::load(key)?;
    let server = PublicKey::load(server_key)?;
    server.require_bits(SERVER_BITS, "server")?;
    Ok(puzzle.open(&agent, &server, now())?)
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Keygen { key, bits } => {
            if !(MIN_AGENT_BITS..=MAX_BITS).contains(&bits) {
                return Err(ClientError::Input(format!(
                    "--bits must be between {MIN_AGENT_BITS} and {MAX_BITS}"
                )));
            }
            let mut pub_path = key.clone().into_os_string();
            pub_path.push(".pub");
            let pub_path = PathBuf::from(pub_path);
            if pub_path.exists() {
                return Err(ClientError::Input(format!(
                    "{} already exists; not overwriting it",
                    pub_path.display()
                )));
            }
            let private = PrivateKey::generate(bits)?;
            private.save(&key)?;
            let public = private.public("codext-agent")?;
            codext_core::keys::write_new_file(
                &pub_path,
                format!("{}\n", public.to_openssh()?).as_bytes(),
                0o644,
            )?;
            println!("private key: {}", key.display());
            println!("public key:  {}", pub_path.display());
            println!("fingerprint: {}", public.fingerprint());
            Ok(0)
        }
        Command::Solve {
            key,
            server_key,
            json,
            password,
            puzzle,
        } => {
            let opened = open(&key, &server_key, &read_puzzle(&puzzle)?)?;
            let c = &opened.content;
            if json {
                let mut v = serde_json::json!({
                    "user": c.user.as_str(),
                    "answer": opened.answer.to_string(),
                    "expires_at": rfc3339(c.expires_at),
                    "expires_at_unix": c.expires_at,
                    "issued_at": rfc3339(c.issued_at),
                    "server_id": c.server_id,
                    "puzzle_id": codext_core::encoding::hex(&c.puzzle_id),
                    "host_key_fingerprints": c.host_keys.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                });
                if password {
                    v["password"] = serde_json::Value::String(c.token.password().to_string());
                }
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("{}", opened.answer);
                if password {
                    println!("{}", c.token.password().as_str());
                }
            }
            Ok(0)
        }
        Command::Ssh {
            key,
            server_key,
            host,
            port,
            puzzle,
            command,
        } => {
            let opened = open(&key, &server_key, &read_puzzle(&puzzle)?)?;
            let login = ssh::Login {
                host,
                port,
                user: opened.content.user.to_string(),
                password: opened.content.token.password(),
                host_keys: opened.content.host_keys.clone(),
                command,
            };
            drop(opened);
            let status = ssh::run(&login)?;
            Ok(status.code().unwrap_or(255))
        }
    }
}

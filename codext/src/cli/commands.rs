//! The subcommands and their arguments, as clap reads them.

use super::arg_groups::{ApiArgs, KeyArgs, PersistArgs, ProfileArg};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "codext",
    version,
    about = "Agent side of codext: solve a server's puzzle and log in with plain ssh"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
        #[command(flatten)]
        keys: KeyArgs,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
        /// Also print the password (the token's text form).
        #[arg(long)]
        password: bool,
        #[command(flatten)]
        profile: ProfileArg,
        /// The puzzle text, or - to read it from stdin.
        puzzle: String,
    },
    /// Publish the agent's public key in the DigitalOcean account (as codext-…).
    PublishKey {
        /// The agent's private key (its KEY.pub is published).
        #[arg(long)]
        key: PathBuf,
        /// Key name in the account (prefixed with codext- if needed).
        #[arg(long, default_value = "codext-agent")]
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ask the server for a puzzle and wait for it on its droplet; prints the puzzle.
    Poll {
        /// The server's droplet id.
        #[arg(long)]
        droplet: u64,
        #[command(flatten)]
        keys: KeyArgs,
        /// Only wait (the operator issued the puzzle; do not request one).
        #[arg(long)]
        no_request: bool,
        #[command(flatten)]
        profile: ProfileArg,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a droplet as the channel sees it: name, public IPv4, tags.
    Droplet {
        /// The droplet id.
        #[arg(long)]
        droplet: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Post an answer on the droplet.
    Answer {
        /// The server's droplet id.
        #[arg(long)]
        droplet: u64,
        /// The answer line printed by solve.
        answer: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Everything in one: request, wait, solve, answer, wait until armed, ssh.
    Connect {
        /// The server's droplet id.
        #[arg(long)]
        droplet: u64,
        #[command(flatten)]
        keys: KeyArgs,
        /// SSH port on the droplet.
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// Only wait (the operator issued the puzzle; do not request one).
        #[arg(long)]
        no_request: bool,
        /// Do not knock on the SSH port after the request (the server then
        /// finds it at its next idle poll).
        #[arg(long)]
        no_knock: bool,
        #[command(flatten)]
        profile: ProfileArg,
        #[command(flatten)]
        api: ApiArgs,
        /// Keep the connection for the whole task, like `codext open`
        /// (no COMMAND then).
        #[arg(long)]
        persist: bool,
        #[command(flatten)]
        persist_args: PersistArgs,
        /// Remote command (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// (Run by ssh as its KnownHostsCommand) vouch for a host key if it
    /// was signed into the puzzle.
    #[command(hide = true)]
    KnownHosts {
        /// The known-hosts name ssh looks up (%H).
        host: String,
        /// The offered key's type (%t), empty before any key is offered.
        key_type: String,
        /// The offered key, base64 (%K).
        key: String,
        /// The signed SHA-256 fingerprints.
        fingerprints: Vec<String>,
    },
    /// Log in once with the token and keep the connection for the whole
    /// task: stock ssh/scp/rsync/git/sftp then reach the server as
    /// codext-NAME (see `codext close`).
    Open {
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        persist: PersistArgs,
        /// Host to connect to.
        #[arg(long)]
        host: String,
        /// SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
        #[command(flatten)]
        profile: ProfileArg,
        /// The puzzle text (already answered), or - to read it from stdin.
        puzzle: String,
    },
    /// End a task `open` started: the server removes the account at once.
    Close {
        /// The task's name (the alias is codext-NAME).
        name: String,
        /// JSON event lines on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Solve a puzzle again and log in with ssh (after the server accepted the answer).
    Ssh {
        #[command(flatten)]
        keys: KeyArgs,
        /// Host to connect to.
        #[arg(long)]
        host: String,
        /// SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
        #[command(flatten)]
        profile: ProfileArg,
        /// The puzzle text, or - to read it from stdin.
        puzzle: String,
        /// Remote command (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
}

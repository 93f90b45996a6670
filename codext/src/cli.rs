//! The command line: `keygen`, `solve`, `ssh`, `open`/`close` (a whole
//! task on one connection, see [`crate::persist`]) and, when ssh runs
//! codext as its askpass program, the askpass callback. Each failure prints
//! one line on stderr and exits non-zero (2: malformed input, 3: refused, 4:
//! the ssh login failed, 1: other).

use crate::error::{ClientError, Result};
use crate::{askpass, digitalocean, ssh};
use clap::{Parser, Subcommand};
use codext_core::keys::{PrivateKey, PublicKey, MAX_BITS, MIN_AGENT_BITS, SERVER_BITS};
use codext_core::time::{now, rfc3339};
use codext_core::{OpenedPuzzle, ProfileName, Puzzle};
use std::io::Read;
use std::path::PathBuf;

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

/// The grant profile asked for and expected.
#[derive(clap::Args, Debug)]
struct ProfileArg {
    /// The grant profile (what the account may do: the server's operator
    /// names them; default shell). A request asks for it, and a puzzle
    /// granting another profile is refused.
    #[arg(long, value_parser = ProfileName::parse)]
    profile: Option<ProfileName>,
}

impl ProfileArg {
    /// Refuses `opened` unless it grants the profile asked for (any, when
    /// none was named).
    fn check(&self, opened: &OpenedPuzzle) -> Result<()> {
        digitalocean::check_profile(opened, self.profile.as_ref())
    }
}

/// `open`'s choices: a whole task on one grant.
#[derive(clap::Args, Debug)]
struct PersistArgs {
    /// The alias is codext-NAME (default: from the host).
    #[arg(long)]
    name: Option<String>,
    /// Keep the account this long after the connection drops, for a
    /// reconnect with the key (the server caps it; never past the grant).
    #[arg(long, default_value = "0s", value_parser = parse_linger)]
    linger: std::time::Duration,
    /// End the connection after this long with no command.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    idle: std::time::Duration,
    /// Leave ~/.ssh/config alone (use `ssh -F ~/.ssh/codext/NAME.conf`).
    #[arg(long)]
    no_include: bool,
    /// JSON event lines on stdout.
    #[arg(long)]
    json: bool,
}

impl PersistArgs {
    fn open(
        &self,
        key: &std::path::Path,
        opened: &OpenedPuzzle,
        host: String,
        port: u16,
    ) -> Result<crate::persist::Open> {
        let agent = PrivateKey::load(key)?;
        let name = match &self.name {
            Some(n) => n.clone(),
            None => crate::persist::default_name(&host),
        };
        Ok(crate::persist::Open {
            login: ssh::Login::from_puzzle(opened, host, port, Vec::new()),
            key: key.to_path_buf(),
            public_key: agent.public("codext-agent")?.to_openssh()?,
            name,
            linger: self.linger.as_secs(),
            idle: self.idle,
            include: !self.no_include,
        })
    }
}

fn parse_linger(s: &str) -> std::result::Result<std::time::Duration, String> {
    if s.trim() == "0" || s.trim() == "0s" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(s)
}

/// How to reach the DigitalOcean API (the token itself comes from
/// `DIGITALOCEAN_TOKEN` or `--token-file`, never from the command line).
#[derive(clap::Args, Debug)]
struct ApiArgs {
    /// API base URL.
    #[arg(long, default_value = codext_do::DEFAULT_API_URL)]
    api_url: String,
    /// File holding the API token (mode 0600) instead of DIGITALOCEAN_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Poll period.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: std::time::Duration,
    /// Give up waiting after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: std::time::Duration,
}

impl ApiArgs {
    fn access(&self) -> digitalocean::Access {
        digitalocean::Access {
            api_url: self.api_url.clone(),
            token_file: self.token_file.clone(),
            interval: self.interval,
            timeout: self.timeout,
            progress: true,
            knock: digitalocean::Knock::Off,
        }
    }
}

fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 2s or 10m: {e}"))?;
    if d.is_zero() || d.as_secs() > 24 * 3600 {
        return Err(format!("{s:?} must be between 1s and 24h"));
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
    // ssh runs us as SSH_ASKPASS with the prompt as the only argument.
    if let Some(socket) = std::env::var_os(askpass::ENV) {
        if std::env::args_os().len() <= 2
            && std::env::args_os()
                .nth(1)
                .is_none_or(|a| a != "known-hosts")
        {
            return askpass::client(&socket.to_string_lossy());
        }
    }
    let cli: Cli = match codext_core::cli_args::parse_args("codext") {
        Ok(c) => c,
        Err(code) => return code,
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

/// The agent's key and the server key it pinned.
#[derive(clap::Args, Debug)]
struct KeyArgs {
    /// The agent's private key.
    #[arg(long)]
    key: PathBuf,
    /// The server's public key, pinned (OpenSSH format).
    #[arg(long)]
    server_key: PathBuf,
}

impl KeyArgs {
    /// The agent key and the pinned server key (which must be RSA-4096+).
    fn load(&self) -> Result<(PrivateKey, PublicKey)> {
        let agent = PrivateKey::load(&self.key)?;
        let server = PublicKey::load(&self.server_key)?;
        server.require_bits(SERVER_BITS, "server")?;
        Ok((agent, server))
    }

    /// Loads both keys and opens `puzzle`.
    fn open(&self, puzzle: &Puzzle) -> Result<OpenedPuzzle> {
        let (agent, server) = self.load()?;
        Ok(puzzle.open(&agent, &server, now())?)
    }
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
            keys,
            json,
            password,
            profile,
            puzzle,
        } => {
            let opened = keys.open(&read_puzzle(&puzzle)?)?;
            profile.check(&opened)?;
            let c = &opened.content;
            if json {
                let mut v = serde_json::json!({
                    "user": c.user.as_str(),
                    "profile": c.profile.as_str(),
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
                if !c.profile.is_shell() {
                    eprintln!("codext: the grant's profile is {}", c.profile);
                }
            }
            Ok(0)
        }
        Command::PublishKey { key, name, api } => {
            let private = PrivateKey::load(&key)?;
            let public = private.public("codext-agent")?;
            let c = digitalocean::client(&api.access())?;
            let (id, fp, existed) = digitalocean::publish_key(&c, &public, &name)?;
            println!("id:          {id}");
            println!("fingerprint: {fp}");
            println!("sha256:      {}", public.fingerprint());
            if existed {
                println!("(the key was already in the account)");
            }
            Ok(0)
        }
        Command::Poll {
            droplet,
            keys,
            no_request,
            profile,
            api,
        } => {
            let access = api.access();
            let c = digitalocean::client(&access)?;
            let fetched = {
                let (agent, server) = keys.load()?;
                digitalocean::fetch_puzzle(
                    &c,
                    &access,
                    droplet,
                    &agent,
                    &server,
                    !no_request,
                    profile.profile.as_ref(),
                )?
            };
            println!("{}", fetched.text);
            Ok(0)
        }
        Command::Droplet { droplet, api } => {
            let d = digitalocean::client(&api.access())?.droplet(droplet)?;
            let mut tags = d.tags.clone();
            tags.sort();
            println!("name: {}", d.name);
            match d.public_address() {
                Ok(a) => println!("ipv4: {a}"),
                Err(why) => println!("ipv4: none ({why})"),
            }
            println!("tags: {}", tags.join(" "));
            Ok(0)
        }
        Command::Answer {
            droplet,
            answer,
            api,
        } => {
            let answer = codext_core::Answer::parse(&answer)?;
            let c = digitalocean::client(&api.access())?;
            digitalocean::answer(&c, droplet, &answer, digitalocean::Format::V3)?;
            println!("answer posted for {}", answer.user);
            Ok(0)
        }
        Command::Connect {
            droplet,
            keys,
            port,
            no_request,
            no_knock,
            profile,
            api,
            persist,
            persist_args,
            command,
        } => {
            let mut access = api.access();
            if !no_knock {
                access.knock = digitalocean::Knock::Ssh(port);
            }
            let c = digitalocean::client(&access)?;
            let digitalocean::Fetched {
                opened,
                format,
                address,
                ..
            } = {
                let (agent, server) = keys.load()?;
                digitalocean::fetch_puzzle(
                    &c,
                    &access,
                    droplet,
                    &agent,
                    &server,
                    !no_request,
                    profile.profile.as_ref(),
                )?
            };
            eprintln!(
                "codext: puzzle for {} (profile {}) solved; answering",
                opened.content.user, opened.content.profile
            );
            digitalocean::answer(&c, droplet, &opened.answer, format)?;
            let host = digitalocean::wait_ready(&c, &access, droplet, &opened, format, address)?;
            eprintln!(
                "codext: {} is armed; ssh to {host} ({} API calls)",
                opened.content.user,
                c.calls()
            );
            if persist {
                // One connection for the whole task.
                let reporter = crate::events::Reporter::new(persist_args.json);
                let o = persist_args.open(&keys.key, &opened, host, port)?;
                drop(opened);
                return crate::persist::open(o, &reporter)
                    .map(|_| 0)
                    .inspect_err(|e| reporter.error(&e.to_string(), e.exit_code()));
            }
            let login = ssh::Login::from_puzzle(&opened, host, port, command);
            drop(opened);
            let status = ssh::run(&login)?;
            Ok(status.code().unwrap_or(255))
        }
        Command::KnownHosts {
            host,
            key_type,
            key,
            fingerprints,
        } => {
            match ssh::known_hosts_line(&host, &key_type, &key, &fingerprints) {
                Ok(Some(line)) => println!("{line}"),
                Ok(None) => {}
                // Say nothing to ssh: with StrictHostKeyChecking it refuses.
                Err(why) => eprintln!("codext: {why}"),
            }
            Ok(0)
        }
        Command::Open {
            keys,
            persist,
            host,
            port,
            profile,
            puzzle,
        } => {
            let reporter = crate::events::Reporter::new(persist.json);
            let done = (|| {
                let opened = keys.open(&read_puzzle(&puzzle)?)?;
                profile.check(&opened)?;
                reporter.event(
                    "solved",
                    &format!(
                        "puzzle for {} verified and solved (profile {})",
                        opened.content.user, opened.content.profile
                    ),
                    serde_json::json!({"user": opened.content.user.as_str(),
                                       "profile": opened.content.profile.as_str()}),
                );
                let o = persist.open(&keys.key, &opened, host, port)?;
                drop(opened);
                crate::persist::open(o, &reporter)
            })();
            done.map(|_| 0)
                .inspect_err(|e| reporter.error(&e.to_string(), e.exit_code()))
        }
        Command::Close { name, json } => {
            let reporter = crate::events::Reporter::new(json);
            crate::persist::close(&name, &reporter)
                .map(|_| 0)
                .inspect_err(|e| reporter.error(&e.to_string(), e.exit_code()))
        }
        Command::Ssh {
            keys,
            host,
            port,
            profile,
            puzzle,
            command,
        } => {
            let opened = keys.open(&read_puzzle(&puzzle)?)?;
            profile.check(&opened)?;
            let login = ssh::Login::from_puzzle(&opened, host, port, command);
            drop(opened);
            let status = ssh::run(&login)?;
            Ok(status.code().unwrap_or(255))
        }
    }
}

//! Running each subcommand.

use super::commands::{Cli, Command};
use crate::error::{ClientError, Result};
use crate::{digitalocean, ssh};
use codext_core::keys::{PrivateKey, MAX_BITS, MIN_AGENT_BITS};
use codext_core::time::rfc3339;
use codext_core::Puzzle;
use std::io::Read;
use std::path::PathBuf;

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

pub(super) fn run(cli: Cli) -> Result<i32> {
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

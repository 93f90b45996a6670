//! The command line: `keygen`, `solve`, `ssh`, `open`/`close` (a whole
//! task on one connection, see [`crate::persist`]) and, when ssh runs
//! codext as its askpass program, the askpass callback. Each failure prints
//! one line on stderr and exits non-zero (2: malformed input, 3: refused, 4:
//! the ssh login failed, 1: other).

mod arg_groups;
mod commands;
mod run;

use crate::askpass;
use commands::Cli;
use run::run;

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

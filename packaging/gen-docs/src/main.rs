//! `codext-gen-docs OUT`: man pages (`OUT/man/*.{1,8}`, one per command and
//! subcommand) and shell completions (`OUT/completions/{bash,zsh,fish}/`)
//! for `codext-helper`, `codext-channel` and `codext`, generated from their
//! clap definitions so that they never drift from `--help`.

use clap_complete::Shell;
use std::path::{Path, PathBuf};

fn main() -> std::process::ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: codext-gen-docs OUT_DIR");
        return std::process::ExitCode::from(2);
    };
    // The helper and the channel process are system administration
    // commands (section 8, /usr/sbin); the agent CLI a user command (1).
    for (cmd, section) in [
        (codext_helper::cli::command(), "8"),
        (codext_channel::command(), "8"),
        (codext::cli::command(), "1"),
    ] {
        if let Err(e) = generate(cmd, section, &out) {
            eprintln!("codext-gen-docs: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

fn generate(cmd: clap::Command, section: &str, out: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    write_man(&cmd.clone(), &name, section, &man)?;
    for (shell, dir, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let d = out.join("completions").join(dir);
        std::fs::create_dir_all(&d)?;
        let mut f = std::fs::File::create(d.join(file))?;
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut f);
    }
    Ok(())
}

/// One page for the command and one per subcommand (`codext-helper-setup.8`),
/// as git and cargo do.
fn write_man(cmd: &clap::Command, name: &str, section: &str, dir: &Path) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .title(name.to_string())
        .section(section);
    let mut buf = Vec::new();
    page.render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.{section}")), buf)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        write_man(sub, &sub_name, section, dir)?;
    }
    Ok(())
}

//! The gate of a `commands` grant on arbitrary requests (the
//! agent writes them: `SSH_ORIGINAL_COMMAND`). Whatever it decides, a
//! program runs only by an absolute path found in the system folders or
//! named by a rule, never with a word a shell would read, and a transfer
//! only inside its folder.
#![no_main]

use codext_helper::config::Config;
use codext_helper::profiles::{gate, Body};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const PROFILE: &str = r#"
[profiles.ci]
kind = "commands"
commands = ["make test", { prefix = "ls", args = "[A-Za-z0-9_][A-Za-z0-9_./-]*", max_args = 3 }]
transfers = ["scp", "sftp", "rsync"]
"#;

fn commands() -> &'static codext_helper::profiles::Commands {
    static C: OnceLock<codext_helper::profiles::Commands> = OnceLock::new();
    C.get_or_init(|| {
        let cfg = Config::from_toml_str(PROFILE, Path::new("fuzz.toml")).unwrap();
        match &cfg.profile(&"ci".parse().unwrap()).unwrap().body {
            Body::Commands(c) => c.clone(),
            _ => unreachable!(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let home = Path::new("/home/user-000000000001");
    let d = gate::decide("ci", commands(), home, Some(data), &|p: &Path| p.starts_with("/usr/bin"));
    if let gate::Decision::Exec { argv, cwd, .. } = d {
        assert!(argv[0].starts_with('/'), "{argv:?}");
        assert!(cwd.starts_with(home), "{cwd:?}");
        for w in &argv {
            assert!(gate::check_plain_word(w).is_ok(), "{w:?}");
        }
        let base = argv[0].rsplit('/').next().unwrap_or("");
        if matches!(base, "scp" | "rsync") {
            let root = home.join("files");
            for w in argv.iter().skip(1).filter(|w| w.starts_with('/')) {
                assert!(Path::new(w).starts_with(&root), "{w} outside {root:?}");
                assert!(!w.contains("/../"), "{w}");
            }
        }
    }
});

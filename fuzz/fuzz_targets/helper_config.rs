//! The helper's `helper.toml` parser and validation on arbitrary bytes.
//!
//! codext-helper has no public parser from a string, only `Config::load`,
//! so each input is written to one temporary file per process (the same
//! path every time, under `$CODEXT_FUZZ_TMP` or the system temp folder) and
//! loaded from there. A config that loads must satisfy what validation
//! promises.
#![no_main]

use codext_helper::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::var_os("CODEXT_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("codext-fuzz"));
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz scratch folder");
        dir.join(format!("helper-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("cannot write the fuzz scratch file");
    let Ok(cfg) = Config::load(path) else {
        return;
    };
    assert_eq!(cfg.version, 1);
    assert!(cfg.server_key.is_absolute() && cfg.state_dir.is_absolute());
    assert!(cfg.accounts.uid_min >= 1000 && cfg.accounts.uid_min <= cfg.accounts.uid_max);
    assert!(cfg.accounts.uid_max <= 60000);
    assert!(cfg.limits.max_attempts >= 1);
    assert!(!cfg.pam_services.is_empty());
    for d in [cfg.ttl.puzzle, cfg.ttl.armed, cfg.ttl.grant] {
        assert!((1..=7 * 24 * 3600).contains(&d.as_secs()));
    }
    let _ = cfg.server_public_key();
});

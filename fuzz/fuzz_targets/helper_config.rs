//! The helper's `helper.toml` parser and validation on arbitrary text. A
//! config that loads must satisfy what validation promises.
#![no_main]

use codext_helper::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = Config::from_toml_str(text, Path::new("fuzz.toml")) else { return };
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

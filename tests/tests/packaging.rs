//! What operators install, checked without installing it: the systemd unit
//! verifies, and the PAM module exports only the PAM entry points and links
//! only a handful of crates. (The PAM
//! files and the sshd drop-in are exercised by every end-to-end test.)

use codext_tests::{bin, repo};
use std::process::Command;

#[test]
fn given_the_shipped_unit_then_systemd_analyze_verify_accepts_it() {
    let dir = std::env::temp_dir().join(format!("codext-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = std::fs::read_to_string(repo().join("systemd/codext-helper.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/sbin/codext-helper serve"));
    // Point it at the built binary: verify checks that the command exists.
    let unit = unit.replace(
        "/usr/local/sbin/codext-helper",
        &bin("codext-helper").display().to_string(),
    );
    let path = dir.join("codext-helper.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("codext-helper"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn given_the_pam_module_then_it_exports_exactly_the_six_pam_sm_entry_points() {
    // The list lives in one place, the script CI and packagers also run.
    let out = Command::new(repo().join("scripts/check-pam-symbols.sh"))
        .arg(bin("libpam_codext.so"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What sshd loads: the PAM module's normal dependency closure stays this
/// small (no serde, no crypto, no HTTP). A new entry must be argued for here.
#[test]
fn given_the_pam_module_then_its_dependency_closure_is_the_minimal_one() {
    let allowed = [
        "pam_codext",
        "codext-wire",
        "pamsm",
        "nix",
        "libc",
        "bitflags",
        "cfg-if",
        "memoffset",
        "zeroize",
        "zeroize_derive",
        "proc-macro2",
        "quote",
        "syn",
        "unicode-ident",
    ];
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "pam_codext",
            "-e",
            "normal",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let extra: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !allowed.contains(name))
        .collect();
    assert!(extra.is_empty(), "the PAM module now pulls in {extra:?}");
}

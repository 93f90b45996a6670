//! What operators install, checked without installing it: the systemd unit
//! verifies, and the PAM module exports only the PAM entry points. (The PAM
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
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(bin("libpam_codext.so"))
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "pam_sm_acct_mgmt",
            "pam_sm_authenticate",
            "pam_sm_chauthtok",
            "pam_sm_close_session",
            "pam_sm_open_session",
            "pam_sm_setcred"
        ]
    );
}

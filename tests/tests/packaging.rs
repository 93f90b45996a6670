//! What operators install, checked without installing it: the systemd
//! units verify, the PAM module exports only the PAM entry points and links
//! only a handful of crates, and the root helper links no HTTP or TLS crate.
//! (The PAM files and the sshd drop-in are exercised by every end-to-end
//! test.)

use codext_tests::{bin, repo};
use std::process::Command;

/// Crates that speak HTTP, TLS, or parse URLs: none may be in the root
/// helper's normal dependency closure.
const NETWORK_CRATES: &[&str] = &[
    "ureq",
    "rustls",
    "rustls-webpki",
    "rustls-pki-types",
    "ring",
    "webpki-roots",
    "webpki",
    "url",
    "idna",
    "http",
    "httparse",
    "hyper",
    "reqwest",
    "native-tls",
    "openssl",
    "tokio",
    "h2",
    "tiny_http",
    "aws-lc-rs",
];

/// `cargo tree -p PACKAGE -e normal --prefix none`, as a set of names.
fn closure(package: &str) -> std::collections::BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn given_the_root_helper_then_its_dependencies_hold_no_http_or_tls_crate() {
    let helper = closure("codext-helper");
    let channel = closure("codext-channel");
    println!(
        "normal dependency closure: codext-helper (root) {} packages, codext-channel (unprivileged) {} packages",
        helper.len(),
        channel.len()
    );
    let found: Vec<&String> = helper
        .iter()
        .filter(|n| NETWORK_CRATES.contains(&n.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "the root helper links network code: {found:?}"
    );
    // The check can fail: the channel does link them.
    assert!(channel.contains("ureq") && channel.contains("rustls"));
}

fn verify_unit(name: &str, installed: &str, built: &str) {
    let dir = std::env::temp_dir().join(format!("codext-unit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = std::fs::read_to_string(repo().join("systemd").join(name)).unwrap();
    assert!(unit.contains(&format!("ExecStart={installed}")));
    // Point it at the built binary: verify checks that the command exists.
    let unit = unit.replace(installed, &bin(built).display().to_string());
    let path = dir.join(name);
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains(built)).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn given_the_shipped_unit_then_systemd_analyze_verify_accepts_it() {
    verify_unit(
        "codext-helper.service",
        "/usr/local/sbin/codext-helper",
        "codext-helper",
    );
}

#[test]
fn given_the_shipped_channel_unit_then_it_verifies_and_runs_unprivileged_with_the_token_as_a_credential(
) {
    verify_unit(
        "codext-channel.service",
        "/usr/local/bin/codext-channel",
        "codext-channel",
    );
    let unit = std::fs::read_to_string(repo().join("systemd/codext-channel.service")).unwrap();
    for line in [
        "User=codext-channel",
        "LoadCredential=digitalocean.token:/etc/codext/digitalocean.token",
        "CapabilityBoundingSet=\n",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(line), "codext-channel.service lacks {line:?}");
    }
    assert!(!unit.contains("DynamicUser=yes"));
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

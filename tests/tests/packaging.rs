//! What operators install, checked without installing it: the systemd
//! units verify, the PAM module exports only the PAM entry points and links
//! only a handful of crates, and the root helper links no HTTP or TLS crate;
//! the server package ships each daemon with its unit, man page and
//! completions, and its purge script removes the accounts `init` makes (in
//! the sandbox). (The PAM files and the sshd drop-in are exercised by every
//! end-to-end test; the package itself, installed and purged, by
//! scripts/docker-test.sh.)

use codext_tests::world::{sh, World};
use codext_tests::{bin, repo, sandbox_test};
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

/// The server package's assets (`[package.metadata.deb]` of codext-helper)
/// and what packaging/build-deb.sh makes of the units: each daemon in
/// /usr/sbin comes with its unit pointing at that path, its man page and
/// its bash, zsh and fish completions.
#[test]
fn given_the_server_package_then_each_daemon_ships_with_its_unit_man_page_and_completions() {
    let manifest = std::fs::read_to_string(repo().join("codext-helper/Cargo.toml")).unwrap();
    let build = std::fs::read_to_string(repo().join("packaging/build-deb.sh")).unwrap();
    for (daemon, source_path) in [
        ("codext-helper", "/usr/local/sbin/codext-helper"),
        ("codext-channel", "/usr/local/bin/codext-channel"),
    ] {
        for asset in [
            format!("[\"target/release/{daemon}\", \"usr/sbin/\", \"755\"]"),
            format!("[\"../target/packaging/{daemon}.service\", \"lib/systemd/system/\", \"644\"]"),
            format!("[\"../target/packaging/completions/bash/{daemon}\", \"usr/share/bash-completion/completions/\", \"644\"]"),
            format!("[\"../target/packaging/completions/zsh/_{daemon}\", \"usr/share/zsh/vendor-completions/\", \"644\"]"),
            format!("[\"../target/packaging/completions/fish/{daemon}.fish\", \"usr/share/fish/vendor_completions.d/\", \"644\"]"),
        ] {
            assert!(manifest.contains(&asset), "the codext package lacks {asset}");
        }
        assert!(
            manifest.contains(&format!("[\"../target/packaging/man/{daemon}")),
            "no man page for {daemon}"
        );
        // The unit's ExecStart is rewritten to the packaged binary and checked.
        let unit =
            std::fs::read_to_string(repo().join(format!("systemd/{daemon}.service"))).unwrap();
        assert!(unit.contains(&format!("ExecStart={source_path}")));
        assert!(
            build.contains(&format!("s#{source_path}#/usr/sbin/{daemon}#"))
                && build.contains(&format!("grep -q 'ExecStart=/usr/sbin/{daemon} ")),
            "build-deb.sh does not point {daemon}.service at /usr/sbin"
        );
    }
    // No systemd-units key: cargo-deb would add snippets that enable and
    // start the units on install.
    assert!(!manifest
        .lines()
        .any(|l| l.trim_start().starts_with("systemd-units")));
}

sandbox_test! {
    fn given_init_ran_then_both_system_accounts_exist_and_the_packages_purge_removes_them_and_every_codext_path() {
        // What an operator who ran only `codext-helper init` (no setup, so
        // no manifest for unsetup) leaves for `apt purge codext`.
        let out = World::helper_cli(&["init"]);
        assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
        for (account, comment) in [
            ("codext-killer", "codext killer (never logs in)"),
            ("codext-channel", "codext DigitalOcean channel (never logs in)"),
        ] {
            let line = sh(&format!("getent passwd {account}"));
            let f: Vec<&str> = line.trim().split(':').collect();
            assert_eq!((f[4], f[6]), (comment, "/usr/sbin/nologin"), "{line}");
        }
        assert!(sh("ls /etc/codext").contains("server_key.pub"));
        let out = Command::new("sh")
            .arg(repo().join("packaging/debian/codext/postrm"))
            .arg("purge")
            .output()
            .unwrap();
        assert!(out.status.success(), "postrm purge: {}", String::from_utf8_lossy(&out.stderr));
        for gone in ["passwd codext-killer", "passwd codext-channel", "group codext", "group codext-channel", "group codext-killer"] {
            assert!(sh(&format!("getent {gone} || echo absent")).trim() == "absent", "{gone} is still there");
        }
        for path in ["/etc/codext", "/var/lib/codext", "/var/log/codext", "/run/codext"] {
            assert!(!std::path::Path::new(path).exists(), "{path} is still there");
        }
    }
}

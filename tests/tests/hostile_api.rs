//! The agent against a DigitalOcean API that answers with hostile values:
//! `codext` hands the droplet's address to `ssh` (as the host of the knock
//! and of the login, so also to ssh's `%h`/`%H` tokens), and prints it.
//! Only an IPv4 address of a host may pass. No root and no sandbox needed:
//! the real `codext` binary against the API emulator on loopback.

use codext_do_emulator::{Emulator, EmulatorConfig};
use codext_tests::{bin, repo};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "dop_v1_hostile_api_test_000000000000000000000000000000000000000000";

/// A private copy of the agent test key (codext refuses a key file others
/// can read) and the server's public key, in a fresh folder.
fn keys(dir: &Path) {
    let v = repo().join("docs/test-vectors/v1");
    for f in ["agent.key", "agent.pub", "server.pub"] {
        std::fs::copy(v.join(f), dir.join(f)).unwrap();
    }
    std::fs::set_permissions(
        dir.join("agent.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

#[test]
fn given_a_droplet_whose_public_ipv4_is_not_an_ipv4_address_then_connect_refuses_before_any_ssh() {
    let emu = Emulator::start(EmulatorConfig::with_tokens(&[TOKEN])).unwrap();
    let dir = std::env::temp_dir().join(format!("codext-hostile-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    keys(&dir);
    let marker = dir.join("pwned");
    for hostile in [
        format!("-oProxyCommand=touch {}", marker.display()),
        format!("127.0.0.1 -oProxyCommand=touch {}", marker.display()),
        "example.com".to_owned(),
        "::1".to_owned(),
        "127.0.0.1\n".to_owned(),
    ] {
        let id = emu.add_droplet("box", &hostile, &[]);
        let out = Command::new(bin("codext"))
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &dir)
            .env("DIGITALOCEAN_TOKEN", TOKEN)
            .args(["connect", "--droplet", &id.to_string()])
            .args(["--key", "agent.key", "--server-key", "server.pub"])
            .args([
                "--api-url",
                &emu.base_url(),
                "--timeout",
                "20s",
                "--",
                "true",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{hostile:?}: {stderr}");
        assert!(
            stderr.contains(&format!("droplet {id}")) && stderr.contains("not an IPv4 address"),
            "{hostile:?}: {stderr}"
        );
        assert!(!marker.exists(), "{hostile:?}: the payload ran");

        let out = Command::new(bin("codext"))
            .env("DIGITALOCEAN_TOKEN", TOKEN)
            .args([
                "droplet",
                "--droplet",
                &id.to_string(),
                "--api-url",
                &emu.base_url(),
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout
                .lines()
                .any(|l| l == format!("ipv4: {hostile}").trim_end())
                && !stdout.chars().any(|c| c.is_control() && c != '\n'),
            "{hostile:?}: printed as is: {stdout:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

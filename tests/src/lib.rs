//! Test support for codext's end-to-end tests: each test body runs as root
//! inside `codext-sandbox` (private mount, PID and network namespaces over
//! a copy of `/etc` and scratch `/home`, `/run`, `/var/lib`, …), with the
//! real sshd, PAM, `useradd`/`userdel`, NSS and ssh client.
//!
//! [`sandbox_test!`] declares a test whose body runs there: the outer test
//! process re-runs its own binary, filtered to that one test, under
//! `codext-sandbox`, and fails unless exactly that test ran and passed.
//! [`World`] sets up the server inside: `codext-helper setup` (the shipped
//! PAM files and sshd drop-in, server key, group), the daemon, sshd on port
//! 22, and an unprivileged local `agent` user with a codext key.

pub mod docker;
pub mod flood;
pub mod mounts;
pub mod pty;
pub mod tree;
pub mod world;

pub use world::World;

use std::path::PathBuf;
use std::process::Command;

/// Environment variable naming the test the inner run executes.
pub const INNER: &str = "CODEXT_SANDBOX_TEST";

/// The folder holding the workspace's built binaries (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>, or target/<profile>/<bin>
    let dir = exe.parent().expect("executable folder");
    if dir.ends_with("deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a built workspace binary, which must exist (`cargo build` first).
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` before the tests",
        p.display()
    );
    p
}

/// Where sandboxed tests keep what they make for people to look at
/// (`target/test-artifacts/`, writable inside the sandbox).
pub fn artifacts_dir() -> PathBuf {
    target_dir()
        .parent()
        .map(|t| t.join("test-artifacts"))
        .unwrap_or_else(|| target_dir().join("test-artifacts"))
}

/// The session recorder as the package ships it (built statically by
/// `tests/build.rs`).
pub fn recorder() -> PathBuf {
    PathBuf::from(env!("CODEXT_RECORD_STATIC"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Whether the sandboxed tests can run here (they need root). When they
/// cannot, this prints why, once (and fails under `CI=true`).
pub fn sandbox_available() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_unprivileged();
    false
}

/// The uids a sandboxed test's temporary users get: the test's own block
/// of 1,000 (see [`UidBlock`]), in place of the default 59000–59999.
/// Outside a sandbox (or before one was given a block), the default.
pub fn uid_base() -> u32 {
    std::env::var("CODEXT_TEST_UID_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_UID_BASE)
}

/// The helper's default `uid_min`.
pub const DEFAULT_UID_BASE: u32 = 59_000;

/// `n`, a uid written for the default range (59000–59999), moved into
/// this test's block: tests name uids as the defaults and get their own.
pub fn uid(n: u32) -> u32 {
    n - DEFAULT_UID_BASE + uid_base()
}

/// Every uid a test block may use (for checks that nothing of any of them
/// reached the host).
pub const TEST_UIDS: std::ops::RangeInclusive<u32> = 10_000..=59_999;

/// A block of 1,000 uids held by one sandboxed test while it runs.
///
/// Sandboxes have their own mounts, processes and network, but the
/// kernel keys what it keeps per uid (keyrings, key quotas, the
/// per-uid process count) by the uid alone: two sandboxes with a user of
/// the same uid at once would see each other's keys — and the helper,
/// rightly, does not hand out a uid something else still holds. So each
/// running test takes a block of its own, held by binding an abstract Unix
/// socket named after it in the host's network namespace (atomic, and
/// released by the kernel when the holder exits, leaving nothing behind).
#[derive(Debug)]
pub struct UidBlock {
    /// The first uid of the block.
    pub base: u32,
    _held: std::os::unix::net::UnixListener,
}

impl UidBlock {
    /// Takes a free block (waiting for one if every block is taken).
    pub fn take() -> UidBlock {
        use std::os::linux::net::SocketAddrExt;
        loop {
            for slot in 0..49u32 {
                let name = format!("codext-test-uids-{slot}");
                let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                else {
                    continue;
                };
                if let Ok(held) = std::os::unix::net::UnixListener::bind_addr(&addr) {
                    return UidBlock {
                        base: 10_000 + slot * 1_000,
                        _held: held,
                    };
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// Runs `body` inside the sandbox (see the crate docs).
pub fn run_in_sandbox(name: &str, body: impl FnOnce()) {
    if std::env::var(INNER).as_deref() == Ok(name) {
        assert_eq!(
            std::env::var("CODEXT_SANDBOX").as_deref(),
            Ok("1"),
            "inner run outside the sandbox"
        );
        body();
        return;
    }
    if !sandbox_available() {
        return;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let block = UidBlock::take();
    // The checkout and the built binaries stay visible inside even when
    // they lie under /tmp, which the sandbox covers.
    let artifacts = artifacts_dir();
    let _ = std::fs::create_dir_all(&artifacts);
    let out = Command::new(bin("codext-sandbox"))
        .arg("--keep")
        .arg(repo())
        .arg("--keep")
        .arg(target_dir())
        .arg("--artifacts")
        .arg(&artifacts)
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, name)
        .env("CODEXT_TEST_UID_BASE", block.base.to_string())
        .output()
        .expect("run codext-sandbox");
    drop(block);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && stdout.contains("test result: ok. 1 passed");
    if !ok || std::env::var_os("CODEXT_TEST_VERBOSE").is_some() {
        println!("--- sandbox stdout ---\n{stdout}\n--- sandbox stderr ---\n{stderr}");
    }
    assert!(ok, "sandboxed test {name} failed ({})", out.status);
}

/// As a normal user the sandboxed tests cannot run (namespaces, mounts,
/// `useradd` need root): each is skipped, with the reason printed once per
/// test binary, so `cargo test` still runs every unit test. Under `CI=true`
/// a skip is a failure: CI runs as root and must run them all.
fn skip_unprivileged() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but not root: the end-to-end tests need root (namespaces, mounts, useradd)"
    );
    ONCE.call_once(|| {
        use std::io::Write;
        // Written to the real stderr, past the test harness's capture.
        let _ = writeln!(
            std::io::stderr(),
            "codext-tests: skipping the sandboxed end-to-end tests: they need root \
             (namespaces, mounts, useradd); run `sudo scripts/test.sh` for all of them"
        );
    });
}

/// Declares a test whose body runs inside the sandbox.
#[macro_export]
macro_rules! sandbox_test {
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::run_in_sandbox(stringify!($name), || $body)
        }
    };
}

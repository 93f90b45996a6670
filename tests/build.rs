//! Builds the session recorder the way it ships: statically linked
//! (`-C target-feature=+crt-static`), so that no dynamic loader runs in it
//! and `LD_PRELOAD` and friends cannot load code into it. The flag must not
//! reach the rest of the workspace (the helper resolves users through NSS,
//! the PAM module is a shared object), and cargo has no per-package flag on
//! stable, so this is a separate cargo run for that one package, with its
//! own target folder (`target/static-record/`) and `--target` (so the flag
//! applies to the recorder, not to build scripts). The end-to-end tests and
//! the benchmarks find it through `CODEXT_RECORD_STATIC`;
//! `packaging/build-deb.sh` builds the shipped one the same way.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(PathBuf::from).unwrap_or_default();
    println!("cargo:rerun-if-changed=../codext-record/src");
    println!("cargo:rerun-if-changed=../codext-record/Cargo.toml");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let target_dir = out
        .ancestors()
        .nth(4)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let static_dir = target_dir.join("static-record");
    let triple = std::env::var("TARGET").unwrap_or_else(|_| "x86_64-unknown-linux-gnu".into());
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--locked",
            "--quiet",
            "-p",
            "codext-record",
            "--bin",
            "codext-record",
        ])
        .arg("--target")
        .arg(&triple)
        .arg("--target-dir")
        .arg(&static_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        println!("cargo:warning=the static session recorder did not build");
        std::process::exit(1);
    }
    let bin = static_dir
        .join(&triple)
        .join(if release { "release" } else { "debug" })
        .join("codext-record");
    println!("cargo:rustc-env=CODEXT_RECORD_STATIC={}", bin.display());
}

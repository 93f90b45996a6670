//! The `do-emulator` binary: prints its address and droplet, serves the API and the control
//! API until killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn given_binary_started_then_prints_listening_line_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_do-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            "t1",
            "t2",
            "--droplet",
            "demo-box:203.0.113.5:codext",
            "--rename-delay-ms",
            "50",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn do-emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read line");
    let result = std::panic::catch_unwind(|| {
        let rest = line
            .trim()
            .strip_prefix("listening ")
            .expect("listening line");
        let (base, droplet) = rest.split_once(" droplet=").expect("droplet=");
        let id: u64 = droplet.parse().expect("droplet id");
        let meta = ureq::get(&format!("{base}/metadata/v1/id"))
            .call()
            .expect("metadata")
            .into_string()
            .expect("body");
        assert_eq!(meta, id.to_string());
        let d: serde_json::Value = ureq::get(&format!("{base}/v2/droplets/{id}"))
            .set("Authorization", "Bearer t2")
            .call()
            .expect("droplet")
            .into_json()
            .expect("json");
        assert_eq!(d["droplet"]["name"], "demo-box");
        assert_eq!(d["droplet"]["tags"], serde_json::json!(["codext"]));
        let v: serde_json::Value = ureq::get(&format!("{base}/_emulator/violations"))
            .call()
            .expect("violations")
            .into_json()
            .expect("json");
        assert_eq!(v, serde_json::json!([]));
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

//! `socket-probe PATH MODE`: talks to the helper's socket the way a hostile
//! or broken local client would, and prints what came back (`reply
//! <status> <reason>`, `closed`, or `error …`). Modes:
//! `ping`, `garbage` (a frame that is no message), `oversized` (a 2 GiB
//! length), `truncated` (a frame cut short, then the peer goes quiet),
//! `reply-as-request` (a reply frame sent as a request), `two` (two
//! requests on one connection), `idle:N` (N connections that send nothing,
//! held until the helper closes them), and, as a PAM module of the previous
//! release would send them (protocol version 1, answered in version 1):
//! `v1-ping`, `v1-open:USER:PID` and `v1-close:USER:PID` (a session request
//! claiming to come from process PID; the probe prints its own pid first,
//! `probe pid N`). Test support only.

use codext_wire::{read_frame, Reply, Request, UserName, PROTOCOL_VERSION_1};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn ping() -> Vec<u8> {
    frame(
        &Request::Ping
            .encode()
            .map(|b| b.to_vec())
            .unwrap_or_default(),
    )
}

/// A version-1 request (the claimed pid goes at the end of a session
/// request): `v1-ping`, `v1-open:USER:PID`, `v1-close:USER:PID`.
fn v1(mode: &str) -> Option<Vec<u8>> {
    let mut parts = mode.split(':');
    let kind = parts.next()?;
    if kind == "v1-ping" {
        return Some(frame(&Request::Ping.encode_v1(0).ok()?));
    }
    let user = UserName::parse(parts.next()?).ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let service = "sshd".to_owned();
    let req = match kind {
        "v1-open" => Request::OpenSession {
            service,
            user,
            rhost: "127.0.0.1".into(),
        },
        "v1-close" => Request::CloseSession { service, user },
        _ => return None,
    };
    println!("probe pid {}", std::process::id());
    Some(frame(&req.encode_v1(pid).ok()?))
}

fn report(s: &mut UnixStream, version: u8) {
    match read_frame(s) {
        Ok(f) => match Reply::decode_in(&f, version) {
            Ok(r) => println!("reply {:?} {}", r.status, r.reason),
            Err(e) => println!("error decode: {e}"),
        },
        Err(codext_wire::FrameError::Truncated) => println!("closed"),
        Err(codext_wire::FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            println!("closed")
        }
        Err(e) => println!("error {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("/run/codext/helper.sock");
    let mode = args.get(2).map(String::as_str).unwrap_or("ping");
    if let Some(n) = mode.strip_prefix("idle:") {
        let n: usize = n.parse().unwrap_or(1);
        let start = Instant::now();
        let mut conns: Vec<UnixStream> = (0..n)
            .filter_map(|_| UnixStream::connect(path).ok())
            .collect();
        let opened = conns.len();
        // Wait until the helper has closed every one of them.
        let mut closed = 0;
        for c in conns.iter_mut() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
            let mut b = [0u8; 1];
            if matches!(c.read(&mut b), Ok(0) | Err(_)) {
                closed += 1;
            }
        }
        println!(
            "idle opened {opened} closed {closed} in {:?}",
            start.elapsed()
        );
        return;
    }
    let mut s = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            println!("error connect: {e}");
            return;
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let bytes: Vec<u8> = match mode {
        "ping" => ping(),
        "garbage" => frame(b"hello"),
        "oversized" => 0x7fff_ffffu32.to_be_bytes().to_vec(),
        "truncated" => b"\x00\x00\x00\x40abc".to_vec(),
        "reply-as-request" => frame(&Reply::new(codext_wire::ReplyStatus::Ok, "ok").encode()),
        "two" => [ping(), ping()].concat(),
        m if m.starts_with("v1-") => v1(m).unwrap_or_default(),
        _ => Vec::new(),
    };
    let version = if mode.starts_with("v1-") {
        PROTOCOL_VERSION_1
    } else {
        codext_wire::PROTOCOL_VERSION
    };
    if s.write_all(&bytes).is_err() {
        println!("closed");
        return;
    }
    report(&mut s, version);
    if mode == "two" {
        report(&mut s, version);
    }
}

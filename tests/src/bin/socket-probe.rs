//! `socket-probe PATH MODE`: talks to the helper's socket the way a hostile
//! or broken local client would, and prints what came back (`reply
//! <status> <reason>`, `closed`, or `error …`). Modes:
//! `ping`, `garbage` (a frame that is no message), `oversized` (a 2 GiB
//! length), `truncated` (a frame cut short, then the peer goes quiet),
//! `reply-as-request` (a reply frame sent as a request), `two` (two
//! requests on one connection), `idle:N` (N connections that send nothing,
//! held until the helper closes them). Test support only.

use codext_wire::{read_frame, Reply, Request};
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

fn report(s: &mut UnixStream) {
    match read_frame(s) {
        Ok(f) => match Reply::decode(&f) {
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
        _ => Vec::new(),
    };
    if s.write_all(&bytes).is_err() {
        println!("closed");
        return;
    }
    report(&mut s);
    if mode == "two" {
        report(&mut s);
    }
}

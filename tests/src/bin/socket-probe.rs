//! `socket-probe PATH [ping|garbage|oversized|truncated|idle]`: talks to the
//! helper's socket the way a hostile or broken local client would, and
//! prints what came back (`reply <status>`, `closed`, or `error …`).
//! Test support only.

use codext_wire::{read_frame, Reply, Request};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("/run/codext/helper.sock");
    let mode = args.get(2).map(String::as_str).unwrap_or("ping");
    let mut s = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            println!("error connect: {e}");
            return;
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let bytes: Vec<u8> = match mode {
        "ping" => {
            let body = Request::Ping
                .encode()
                .map(|b| b.to_vec())
                .unwrap_or_default();
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&body);
            v
        }
        "garbage" => b"\x00\x00\x00\x05hello".to_vec(),
        "oversized" => 0x7fff_ffffu32.to_be_bytes().to_vec(),
        "truncated" => b"\x00\x00\x00\x40abc".to_vec(),
        _ => Vec::new(),
    };
    if !bytes.is_empty() && s.write_all(&bytes).is_err() {
        println!("closed");
        return;
    }
    match read_frame(&mut s) {
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

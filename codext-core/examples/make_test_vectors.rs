//! Writes the puzzles of `docs/test-vectors/v1/` from the fixed keys in that
//! folder: `puzzle-1.{txt,json}` (a `shell` grant, plaintext version 1) and
//! `puzzle-2.{txt,json}` (a grant of the profile `gpu`,
//! plaintext version 2). Sealing is randomised (OAEP, PSS), so a vector
//! that exists is kept: only missing ones are written (`--force` writes
//! both again). Run by hand (`cargo run -p codext-core --example
//! make_test_vectors`); the tests only ever *read* the files, in the
//! decrypt/verify direction, and `openssl` checks them independently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use codext_core::encoding::hex;
use codext_core::hostkeys;
use codext_core::{PrivateKey, ProfileName, PublicKey, Puzzle, PuzzleContent, Token};
use codext_wire::UserName;
use std::path::Path;

fn main() {
    let force = std::env::args().any(|a| a == "--force");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/test-vectors/v1");
    let server =
        PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(dir.join("server.key")).unwrap())
            .unwrap();
    let agent = PublicKey::load(&dir.join("agent.pub")).unwrap();
    let host_keys = hostkeys::fingerprints(&dir.join("hostkeys"), &[]).unwrap();
    for (n, user, profile, shift) in [
        (1, "user-5eed00c0ffee", "shell", 3u8),
        (2, "user-0a0b0c0d0e0f", "gpu", 11u8),
    ] {
        let txt = dir.join(format!("puzzle-{n}.txt"));
        if txt.exists() && !force {
            println!("kept {} (--force writes it again)", txt.display());
            continue;
        }
        let token_bytes: [u8; 32] =
            core::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(shift));
        let profile = ProfileName::parse(profile).unwrap();
        let content = PuzzleContent {
            puzzle_id: core::array::from_fn(|i| 0xa0 + (n as u8 - 1) * 0x10 + i as u8),
            issued_at: 1_795_000_000,
            expires_at: 1_795_000_600,
            user: UserName::parse(user).unwrap(),
            server_id: "droplet-512345678".into(),
            host_keys: host_keys.clone(),
            token: Token::from_bytes(token_bytes),
            profile: profile.clone(),
        };
        let puzzle = Puzzle::seal(&content, &agent, &server).unwrap();
        std::fs::write(&txt, format!("{}\n", puzzle.to_text())).unwrap();
        let token = Token::from_bytes(token_bytes);
        let expected = serde_json::json!({
            "puzzle": format!("puzzle-{n}.txt"),
            "agent_key": "agent.key",
            "server_public_key": "server.pub",
            "version": 1,
            "plaintext_version": if profile.is_shell() { 1 } else { 2 },
            "profile": profile.as_str(),
            "puzzle_id": hex(&content.puzzle_id),
            "issued_at": content.issued_at,
            "expires_at": content.expires_at,
            "user": content.user.as_str(),
            "server_id": content.server_id,
            "host_keys": host_keys.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "token_hex": hex(token.expose()),
            "password": token.password().as_str(),
            "login_hash_hex": hex(&token.login_hash(&content.user)),
            "answer": format!("{}-{}", content.user, hex(&token.proof(&content.puzzle_id, &content.user))),
            "ciphertext_hex": hex(&puzzle.ciphertext),
            "signature_hex": hex(&puzzle.signature),
            "signed_message_hex": hex(&puzzle.signed_message()),
        });
        std::fs::write(
            dir.join(format!("puzzle-{n}.json")),
            serde_json::to_string_pretty(&expected).unwrap() + "\n",
        )
        .unwrap();
        println!("wrote {}", txt.display());
    }
}

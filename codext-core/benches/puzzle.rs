//! Puzzle protocol cost against its floor: sealing (OAEP encrypt + PSS
//! sign) compared with a bare RSA-4096 PSS signature, and opening (PSS
//! verify + OAEP decrypt + checks) compared with a bare RSA-3072 OAEP
//! decryption, both with the same keys in the same run. The ratios show
//! what codext's framing and checks add on top of the RSA operations that
//! dominate. `cargo bench -p codext-core --bench puzzle`.

use codext_core::{Fingerprint, PrivateKey, PublicKey, Puzzle, PuzzleContent, Token};
use codext_wire::UserName;
use rand_core::OsRng;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::RandomizedSigner;
use rsa::{pss, Oaep, RsaPrivateKey};
use sha2::Sha256;
use std::time::{Duration, Instant};

const N: u32 = 30;

fn vectors(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../docs/test-vectors/v1/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn time(n: u32, mut f: impl FnMut()) -> Duration {
    f(); // warm up
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn main() {
    let server = PrivateKey::from_pkcs8_pem(&vectors("server.key")).unwrap();
    let agent = PrivateKey::from_pkcs8_pem(&vectors("agent.key")).unwrap();
    let agent_pub = PublicKey::from_openssh(&vectors("agent.pub")).unwrap();
    let server_pub = PublicKey::from_openssh(&vectors("server.pub")).unwrap();
    let content = PuzzleContent {
        puzzle_id: [7; 16],
        issued_at: 1000,
        expires_at: 2000,
        user: UserName::parse("user-0123456789ab").unwrap(),
        server_id: "droplet-512345678".into(),
        host_keys: vec![
            Fingerprint([1; 32]),
            Fingerprint([2; 32]),
            Fingerprint([3; 32]),
        ],
        token: Token::generate().unwrap(),
        profile: codext_core::ProfileName::shell(),
    };
    let puzzle = Puzzle::seal(&content, &agent_pub, &server).unwrap();

    let raw_server = RsaPrivateKey::from_pkcs8_pem(&vectors("server.key")).unwrap();
    let raw_agent = RsaPrivateKey::from_pkcs8_pem(&vectors("agent.key")).unwrap();
    let signer = pss::SigningKey::<Sha256>::new(raw_server);
    let message = puzzle.signed_message();

    let seal = time(N, || {
        Puzzle::seal(&content, &agent_pub, &server).unwrap();
    });
    let sign = time(N, || {
        let _ = signer.sign_with_rng(&mut OsRng, &message);
    });
    let open = time(N, || {
        puzzle.open(&agent, &server_pub, 1500).unwrap();
    });
    let decrypt = time(N, || {
        raw_agent
            .decrypt(Oaep::new::<Sha256>(), &puzzle.ciphertext)
            .unwrap();
    });
    let text = puzzle.to_text();
    let parse = time(N * 100, || {
        Puzzle::from_text(&text).unwrap();
    });

    println!("puzzle protocol v1, {N} runs each (RSA-4096 server key, RSA-3072 agent key)");
    println!("  seal  (server: encrypt + sign)      {:>9.2?}   baseline bare PSS sign     {:>9.2?}   ratio {:.2}", seal, sign, ratio(seal, sign));
    println!("  open  (agent: verify + decrypt)     {:>9.2?}   baseline bare OAEP decrypt {:>9.2?}   ratio {:.2}", open, decrypt, ratio(open, decrypt));
    println!(
        "  parse (text form, {} chars)       {:>9.2?}",
        text.len(),
        parse
    );
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

//! Protocol v1 against the fixed test vectors in `docs/test-vectors/v1`
//! (written once, read here in the decrypt/verify direction), an
//! independent check of the same vector with `openssl`, and every way a
//! puzzle can be bad.

use codext_core::encoding::{b32_decode, b32_encode, hex, hex_decode};
use codext_core::{
    hostkeys, Answer, Error, Fingerprint, PrivateKey, PublicKey, Puzzle, PuzzleContent, Token,
};
use codext_wire::UserName;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/test-vectors/v1")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(&read("puzzle-1.json")).unwrap()
}

fn agent() -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&read("agent.key")).unwrap()
}

fn server_pub() -> PublicKey {
    PublicKey::from_openssh(&read("server.pub")).unwrap()
}

fn puzzle() -> Puzzle {
    Puzzle::from_text(&read("puzzle-1.txt")).unwrap()
}

fn now() -> u64 {
    expected()["issued_at"].as_u64().unwrap() + 1
}

#[test]
fn given_vector_then_opens_to_the_expected_content() {
    let e = expected();
    let opened = puzzle().open(&agent(), &server_pub(), now()).unwrap();
    let c = &opened.content;
    assert_eq!(hex(&c.puzzle_id), e["puzzle_id"]);
    assert_eq!(c.issued_at, e["issued_at"]);
    assert_eq!(c.expires_at, e["expires_at"]);
    assert_eq!(c.user.as_str(), e["user"]);
    assert_eq!(c.server_id, e["server_id"]);
    let fps: Vec<String> = c.host_keys.iter().map(|f| f.to_string()).collect();
    assert_eq!(serde_json::json!(fps), e["host_keys"]);
    assert_eq!(hex(c.token.expose()), e["token_hex"]);
    assert_eq!(c.token.password().as_str(), e["password"]);
    assert_eq!(hex(&c.token.login_hash(&c.user)), e["login_hash_hex"]);
    assert_eq!(opened.answer.to_string(), e["answer"]);
}

#[test]
fn given_vector_host_keys_then_they_are_what_ssh_keygen_prints() {
    let fps = hostkeys::fingerprints(&dir().join("hostkeys"), &[]).unwrap();
    let mut ours: Vec<String> = fps.iter().map(|f| f.to_string()).collect();
    let mut theirs: Vec<String> = read("hostkeys/fingerprints.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    assert_eq!(
        PublicKey::from_openssh(&read("server.pub"))
            .unwrap()
            .fingerprint()
            .to_string(),
        read("server.pub.fingerprint").trim()
    );
}

#[test]
fn given_vector_then_openssl_independently_verifies_and_decrypts() {
    let e = expected();
    let tmp = tempdir("openssl");
    let p = puzzle();
    // The vector's fields are what the envelope says.
    assert_eq!(hex(&p.ciphertext), e["ciphertext_hex"]);
    assert_eq!(hex(&p.signed_message()), e["signed_message_hex"]);
    std::fs::write(
        tmp.join("msg"),
        hex_decode(e["signed_message_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        tmp.join("sig"),
        hex_decode(e["signature_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        tmp.join("ct"),
        hex_decode(e["ciphertext_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let verify = openssl_verify(&tmp);
    assert!(
        verify.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let decrypt = Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(dir().join("agent.key"))
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-in",
        ])
        .arg(tmp.join("ct"))
        .output()
        .unwrap();
    assert!(
        decrypt.status.success(),
        "openssl decrypt: {}",
        String::from_utf8_lossy(&decrypt.stderr)
    );
    let pt = decrypt.stdout;
    // Plaintext layout (docs/PROTOCOL.md): version, id, issued, expires, token, ...
    assert_eq!(pt[0], 1);
    assert_eq!(hex(&pt[1..17]), e["puzzle_id"]);
    assert_eq!(
        u64::from_be_bytes(pt[17..25].try_into().unwrap()),
        e["issued_at"]
    );
    assert_eq!(
        u64::from_be_bytes(pt[25..33].try_into().unwrap()),
        e["expires_at"]
    );
    assert_eq!(hex(&pt[33..65]), e["token_hex"]);
    let user_len = usize::from(pt[65]);
    assert_eq!(
        std::str::from_utf8(&pt[66..66 + user_len]).unwrap(),
        e["user"]
    );
    // And a tampered message fails openssl's verification too.
    let mut msg = std::fs::read(tmp.join("msg")).unwrap();
    let last = msg.len() - 1;
    msg[last] ^= 1;
    std::fs::write(tmp.join("msg"), msg).unwrap();
    let verify = openssl_verify(&tmp);
    assert!(!verify.status.success());
}

/// `openssl dgst` verifying `tmp/sig` over `tmp/msg` with the server key
/// (RSA-PSS, SHA-256, 32-byte salt).
fn openssl_verify(tmp: &Path) -> std::process::Output {
    Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-verify",
        ])
        .arg(dir().join("server.pub.pem"))
        .arg("-signature")
        .arg(tmp.join("sig"))
        .arg(tmp.join("msg"))
        .output()
        .unwrap()
}

#[test]
fn given_vector_answer_then_parses_and_matches_the_proof() {
    let e = expected();
    let a = Answer::parse(e["answer"].as_str().unwrap()).unwrap();
    let token = Token::from_password(e["password"].as_str().unwrap().as_bytes()).unwrap();
    let id: [u8; 16] = hex_decode(e["puzzle_id"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(a.proof, token.proof(&id, &a.user));
    // The token appears in the answer in no encoding.
    let ans = e["answer"].as_str().unwrap();
    assert!(!ans.contains(&hex(token.expose())[..8]));
    assert!(!ans.contains(&token.password()[..8]));
}

#[test]
fn given_any_flipped_byte_then_the_puzzle_is_refused() {
    let bytes = puzzle().to_bytes();
    // Every byte of the header, and a sample of the ciphertext and signature.
    let positions: Vec<usize> = (0..120)
        .chain((120..bytes.len()).step_by(37))
        .chain([bytes.len() - 1])
        .collect();
    for i in positions {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        let result = Puzzle::from_bytes(&b).and_then(|p| p.open(&agent(), &server_pub(), now()));
        assert!(result.is_err(), "flipping byte {i} was not noticed");
    }
}

#[test]
fn given_ciphertext_tampered_then_bad_signature() {
    let mut p = puzzle();
    p.ciphertext[10] ^= 1;
    assert!(matches!(
        p.open(&agent(), &server_pub(), now()),
        Err(Error::BadSignature)
    ));
    let mut p = puzzle();
    p.recipient.0[0] ^= 1;
    assert!(matches!(
        p.open(&agent(), &server_pub(), now()),
        Err(Error::BadSignature)
    ));
}

#[test]
fn given_every_truncation_then_format_error_without_panic() {
    let text = read("puzzle-1.txt");
    let text = text.trim();
    for n in (0..text.len()).step_by(7) {
        let err = Puzzle::from_text(&text[..n]).unwrap_err();
        assert!(matches!(err, Error::PuzzleFormat(_)), "cut at {n}: {err}");
    }
    let bytes = puzzle().to_bytes();
    for n in 0..bytes.len() {
        assert!(
            Puzzle::from_bytes(&bytes[..n]).is_err(),
            "cut at {n} parsed"
        );
    }
}

#[test]
fn given_garbled_text_then_clear_format_errors() {
    let text = read("puzzle-1.txt");
    for (bad, what) in [
        ("", "starts with"),
        ("hello", "starts with"),
        (&text.trim().to_uppercase(), "starts with"),
        (
            &format!("cdx1{}", text.trim()[4..].to_uppercase()),
            "base32",
        ),
        (&format!("{}!", text.trim()), "base32"),
        (&format!("cdx2{}", &text.trim()[4..]), "starts with"),
    ] {
        let err = Puzzle::from_text(bad).unwrap_err().to_string();
        assert!(err.contains(what), "{bad:.20}… gave {err}");
    }
    // Valid base32 of something that is not an envelope.
    let err = Puzzle::from_text(&format!("cdx1{}", b32_encode(b"CDXQ-not-a-puzzle"))).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
    // A future version is named.
    let mut b = puzzle().to_bytes();
    b[4] = 2;
    let err = Puzzle::from_text(&format!("cdx1{}", b32_encode(&b))).unwrap_err();
    assert!(err.to_string().contains("version 2"), "{err}");
    // Trailing bytes after the signature.
    let mut b = puzzle().to_bytes();
    b.push(0);
    assert!(Puzzle::from_bytes(&b)
        .unwrap_err()
        .to_string()
        .contains("after the signature"));
    assert!(b32_decode(text.trim().strip_prefix("cdx1").unwrap()).is_some());
}

#[test]
fn given_wrong_agent_key_then_wrong_recipient() {
    let other = PrivateKey::from_pkcs8_pem(&read("other-agent.key")).unwrap();
    assert!(matches!(
        puzzle().open(&other, &server_pub(), now()),
        Err(Error::WrongRecipient)
    ));
}

#[test]
fn given_wrong_server_key_then_wrong_signer() {
    let other = PublicKey::from_openssh(&read("other-server.pub")).unwrap();
    let err = puzzle().open(&agent(), &other, now()).unwrap_err();
    assert!(matches!(err, Error::WrongSigner { .. }), "{err}");
    // A puzzle that claims the pinned key as signer but was signed by
    // another key fails the signature itself.
    let mut p = puzzle();
    p.signer = other.fingerprint();
    assert!(matches!(
        p.open(&agent(), &other, now()),
        Err(Error::BadSignature)
    ));
}

#[test]
fn given_expired_or_future_puzzle_then_expired() {
    let e = expected();
    let exp = e["expires_at"].as_u64().unwrap();
    let issued = e["issued_at"].as_u64().unwrap();
    assert!(puzzle().open(&agent(), &server_pub(), exp).is_ok());
    let err = puzzle().open(&agent(), &server_pub(), exp + 1).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }));
    assert!(err.to_string().contains("expired 1 s ago"));
    let err = puzzle()
        .open(&agent(), &server_pub(), issued - 301)
        .unwrap_err();
    assert!(err.to_string().contains("not valid yet"), "{err}");
}

fn fresh_content(host_keys: Vec<Fingerprint>, server_id: &str) -> PuzzleContent {
    PuzzleContent {
        puzzle_id: [9; 16],
        issued_at: 1000,
        expires_at: 2000,
        user: UserName::parse("user-000000000001").unwrap(),
        server_id: server_id.into(),
        host_keys,
        token: Token::generate().unwrap(),
        profile: codext_core::ProfileName::shell(),
    }
}

#[test]
fn given_fresh_seal_then_round_trip_and_text_is_tag_safe() {
    let server = PrivateKey::from_pkcs8_pem(&read("server.key")).unwrap();
    let agent_pub = PublicKey::from_openssh(&read("agent.pub")).unwrap();
    let content = fresh_content(vec![Fingerprint([1; 32]), Fingerprint([2; 32])], "host-1");
    let p = Puzzle::seal(&content, &agent_pub, &server).unwrap();
    let text = p.to_text();
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let opened = Puzzle::from_text(&text)
        .unwrap()
        .open(&agent(), &server_pub(), 1500)
        .unwrap();
    assert_eq!(opened.content.token.expose(), content.token.expose());
    assert_eq!(opened.content.host_keys, content.host_keys);
}

#[test]
fn given_too_much_content_for_the_agent_key_then_seal_refuses() {
    let server = PrivateKey::from_pkcs8_pem(&read("server.key")).unwrap();
    let agent_pub = PublicKey::from_openssh(&read("agent.pub")).unwrap();
    let content = fresh_content(vec![Fingerprint([1; 32]); 7], &"s".repeat(64));
    let err = Puzzle::seal(&content, &agent_pub, &server).unwrap_err();
    assert!(err.to_string().contains("fewer host keys"), "{err}");
    let content = fresh_content(vec![Fingerprint([1; 32])], "bad id with spaces");
    assert!(Puzzle::seal(&content, &agent_pub, &server).is_err());
}

fn tempdir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("codext-core-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

// --- puzzle-2: a grant of the profile `gpu`, plaintext version 2

fn expected_2() -> Value {
    serde_json::from_str(&read("puzzle-2.json")).unwrap()
}

#[test]
fn given_the_profile_vector_then_it_opens_to_its_profile_and_the_shell_vector_to_shell() {
    let e = expected_2();
    let p = Puzzle::from_text(&read("puzzle-2.txt")).unwrap();
    let opened = p
        .open(
            &agent(),
            &server_pub(),
            e["issued_at"].as_u64().unwrap() + 1,
        )
        .unwrap();
    assert_eq!(opened.content.profile.as_str(), "gpu");
    assert_eq!(e["profile"], "gpu");
    assert_eq!(opened.content.user.as_str(), e["user"]);
    assert_eq!(opened.answer.to_string(), e["answer"]);
    assert_eq!(hex(opened.content.token.expose()), e["token_hex"]);
    // The envelope is version 1 either way (same size, same tags).
    assert_eq!(p.to_bytes()[4], 1);
    assert_eq!(p.to_bytes().len(), puzzle().to_bytes().len());
    // puzzle-1 predates profiles: a shell grant.
    let one = puzzle().open(&agent(), &server_pub(), now()).unwrap();
    assert!(one.content.profile.is_shell());
}

/// The plaintext of `p`, decrypted with the agent key by openssl (an
/// independent implementation).
fn openssl_plaintext(p: &Puzzle, tag: &str) -> Vec<u8> {
    let tmp = tempdir(tag);
    std::fs::write(tmp.join("ct"), &p.ciphertext).unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(dir().join("agent.key"))
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-in",
        ])
        .arg(tmp.join("ct"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn given_the_profile_vector_then_openssl_finds_version_2_and_the_profile_at_the_end() {
    let e = expected_2();
    let p = Puzzle::from_text(&read("puzzle-2.txt")).unwrap();
    let pt = openssl_plaintext(&p, "openssl-2");
    assert_eq!(pt[0], 2);
    assert_eq!(hex(&pt[1..17]), e["puzzle_id"]);
    // ... the v1 fields, then len8 || "gpu" last.
    assert_eq!(&pt[pt.len() - 4..], b"\x03gpu");
    let v1 = openssl_plaintext(&puzzle(), "openssl-1");
    assert_eq!(v1[0], 1);
    // Same fields but the profile: same user length and host keys here.
    assert_eq!(pt.len(), v1.len() + 4);
}

#[test]
fn given_a_shell_grant_then_it_is_sealed_as_version_1_which_an_older_agent_opens() {
    // An agent of the previous release reads plaintext version 1 only; a
    // shell grant must still be exactly that.
    let hk = hostkeys::fingerprints(&dir().join("hostkeys"), &[]).unwrap();
    let server = PrivateKey::from_pkcs8_pem(&read("server.key")).unwrap();
    let agent_pub = PublicKey::from_openssh(&read("agent.pub")).unwrap();
    let mut c = fresh_content(hk, "droplet-1");
    let p = Puzzle::seal(&c, &agent_pub, &server).unwrap();
    let pt = openssl_plaintext(&p, "seal-1");
    assert_eq!(pt[0], 1);
    c.profile = codext_core::ProfileName::parse("ci").unwrap();
    let p = Puzzle::seal(&c, &agent_pub, &server).unwrap();
    let pt = openssl_plaintext(&p, "seal-2");
    assert_eq!(pt[0], 2);
    let opened = p.open(&agent(), &server_pub(), 1500).unwrap();
    assert_eq!(opened.content.profile.as_str(), "ci");
}

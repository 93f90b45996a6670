//! RSA keys: the server's signing key and the agent's decryption key.
//!
//! * Public keys are exchanged in OpenSSH `ssh-rsa` format, the format
//!   DigitalOcean's key store takes, so `ssh-keygen -lf FILE` shows the very
//!   fingerprint codext prints (`SHA256:` + unpadded base64 of the SHA-256 of
//!   the key blob).
//! * Private keys are PKCS#8 PEM files of mode 0600, created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` so an existing file or a planted symlink is
//!   never overwritten. `RsaPrivateKey` wipes itself on drop.
//! * Sizes are policy: the server key is at least 4096 bits, an agent key at
//!   least 3072; neither above 8192 (a huge key would only slow every
//!   operation on the other side).

use crate::error::{Error, Result};
use rand_core::OsRng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use ssh_key::HashAlg;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Smallest agent key accepted.
pub const MIN_AGENT_BITS: usize = 3072;
/// Smallest server key accepted (and the size `init` generates).
pub const SERVER_BITS: usize = 4096;
/// Largest key accepted on either side.
pub const MAX_BITS: usize = 8192;

/// SHA-256 fingerprint of an OpenSSH public key blob.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses `SHA256:<unpadded base64>` as `ssh-keygen -l` prints it.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let b64 = text.strip_prefix("SHA256:")?;
        let bytes = data_encoding::BASE64_NOPAD.decode(b64.as_bytes()).ok()?;
        Some(Fingerprint(bytes.try_into().ok()?))
    }

    pub(crate) fn of(key: &ssh_key::PublicKey) -> Fingerprint {
        let mut out = [0u8; 32];
        out.copy_from_slice(key.fingerprint(HashAlg::Sha256).as_bytes());
        Fingerprint(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", data_encoding::BASE64_NOPAD.encode(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An RSA public key with its OpenSSH form and fingerprint.
#[derive(Clone)]
pub struct PublicKey {
    rsa: RsaPublicKey,
    ssh: ssh_key::PublicKey,
    fingerprint: Fingerprint,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey(rsa {} bits, {})",
            self.bits(),
            self.fingerprint
        )
    }
}

impl PublicKey {
    fn from_rsa(rsa: RsaPublicKey, comment: &str) -> Result<PublicKey> {
        let data = ssh_key::public::RsaPublicKey::try_from(&rsa).map_err(|e| {
            Error::KeyFormat(format!("cannot express the key in OpenSSH form: {e}"))
        })?;
        let ssh = ssh_key::PublicKey::new(ssh_key::public::KeyData::Rsa(data), comment);
        let fingerprint = Fingerprint::of(&ssh);
        Ok(PublicKey {
            rsa,
            ssh,
            fingerprint,
        })
    }

    /// Parses one OpenSSH public key line (`ssh-rsa AAAA… [comment]`).
    pub fn from_openssh(text: &str) -> Result<PublicKey> {
        let ssh = ssh_key::PublicKey::from_openssh(text.trim())
            .map_err(|e| Error::KeyFormat(format!("not an OpenSSH public key line ({e})")))?;
        let data = ssh.key_data().rsa().ok_or_else(|| {
            Error::KeyPolicy(format!(
                "an RSA key is required, this is {}",
                ssh.algorithm()
            ))
        })?;
        let rsa = RsaPublicKey::try_from(data)
            .map_err(|e| Error::KeyFormat(format!("bad RSA public key: {e}")))?;
        let fingerprint = Fingerprint::of(&ssh);
        Ok(PublicKey {
            rsa,
            ssh,
            fingerprint,
        })
    }

    /// Reads an OpenSSH public key file.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read public key {}", path.display()), e))?;
        PublicKey::from_openssh(&text)
            .map_err(|e| Error::KeyFormat(format!("{}: {e}", path.display())))
    }

    /// The key as one OpenSSH line (with its comment, if any).
    pub fn to_openssh(&self) -> Result<String> {
        self.ssh
            .to_openssh()
            .map_err(|e| Error::KeyFormat(format!("cannot encode key: {e}")))
    }

    /// SHA-256 fingerprint of the key blob.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.rsa.n().bits()
    }

    /// Modulus size in bytes (the size of a ciphertext or signature).
    pub fn size(&self) -> usize {
        self.rsa.size()
    }

    /// Refuses keys outside `min..=MAX_BITS` bits, naming the role.
    pub fn require_bits(&self, min: usize, role: &str) -> Result<()> {
        let bits = self.bits();
        if bits < min || bits > MAX_BITS {
            return Err(Error::KeyPolicy(format!(
                "{role} key has {bits} bits; codext needs {min} to {MAX_BITS}"
            )));
        }
        Ok(())
    }

    pub(crate) fn rsa(&self) -> &RsaPublicKey {
        &self.rsa
    }
}

/// An RSA private key.
pub struct PrivateKey {
    rsa: RsaPrivateKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

impl PrivateKey {
    /// Generates a new key of `bits` bits from the OS random generator.
    pub fn generate(bits: usize) -> Result<PrivateKey> {
        let rsa = RsaPrivateKey::new(&mut OsRng, bits)
            .map_err(|e| Error::Crypto(format!("key generation: {e}")))?;
        Ok(PrivateKey { rsa })
    }

    /// Reads a PKCS#8 PEM private key. Refuses a file of another owner or
    /// that group or others can read, as ssh does.
    pub fn load(path: &Path) -> Result<PrivateKey> {
        let text =
            crate::secret_file::read_secret(path, "private key", crate::secret_file::Owner::Me)?;
        PrivateKey::from_pkcs8_pem(&text)
            .map_err(|e| Error::KeyFormat(format!("{}: {e}", path.display())))
    }

    /// Parses a PKCS#8 PEM private key held in memory.
    pub fn from_pkcs8_pem(text: &str) -> Result<PrivateKey> {
        let rsa = RsaPrivateKey::from_pkcs8_pem(text)
            .map_err(|e| Error::KeyFormat(format!("not a PKCS#8 PEM RSA private key ({e})")))?;
        Ok(PrivateKey { rsa })
    }

    /// Writes the key as PKCS#8 PEM to a *new* file of mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        let pem = self
            .rsa
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::Crypto(format!("cannot encode private key: {e}")))?;
        write_new_file(path, pem.as_bytes(), 0o600)
    }

    /// The public half, with `comment` in its OpenSSH form.
    pub fn public(&self, comment: &str) -> Result<PublicKey> {
        PublicKey::from_rsa(self.rsa.to_public_key(), comment)
    }

    pub(crate) fn rsa(&self) -> &RsaPrivateKey {
        &self.rsa
    }
}

/// Creates `path` (which must not exist, and is not followed if it is a
/// symlink) with `mode`, writes `bytes` and syncs it.
pub fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::io(
                    format!(
                        "{} already exists; codext never overwrites a key file",
                        path.display()
                    ),
                    e,
                )
            } else {
                Error::io(format!("cannot create {}", path.display()), e)
            }
        })?;
    f.write_all(bytes)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("cannot sync {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors/v1");

    #[test]
    fn given_openssh_rsa_line_then_fingerprint_matches_ssh_keygen() {
        // The expected fingerprint was printed by `ssh-keygen -lf agent.pub`.
        let text = std::fs::read_to_string(format!("{VECTORS}/agent.pub")).unwrap();
        let expected = std::fs::read_to_string(format!("{VECTORS}/agent.pub.fingerprint")).unwrap();
        let key = PublicKey::from_openssh(&text).unwrap();
        assert_eq!(key.fingerprint().to_string(), expected.trim());
        assert_eq!(key.bits(), 3072);
        assert_eq!(Fingerprint::parse(expected.trim()), Some(key.fingerprint()));
    }

    #[test]
    fn given_non_rsa_key_then_refused_by_policy() {
        let ed =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDXmPKc3U8NGQdtDWkZXBGCHQDdHtCjUpwe5ex4S6Wrb x";
        assert!(matches!(
            PublicKey::from_openssh(ed),
            Err(Error::KeyPolicy(_))
        ));
    }

    #[test]
    fn given_garbage_then_key_format_error() {
        assert!(matches!(
            PublicKey::from_openssh("ssh-rsa !!!"),
            Err(Error::KeyFormat(_))
        ));
        assert!(matches!(
            PublicKey::from_openssh(""),
            Err(Error::KeyFormat(_))
        ));
    }
}

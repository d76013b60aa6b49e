//! `mltrail audit checkpoint`, `audit prove` and `audit verify --checkpoint`: the trail's Merkle
//! root, signed, to be kept somewhere the database's owner cannot rewrite; inclusion proofs
//! against it; and the check that the trail today still holds what a checkpoint saw.
//!
//! A checkpoint is a C2SP signed note (https://c2sp.org/signed-note) whose text is a C2SP
//! tlog checkpoint (https://c2sp.org/tlog-checkpoint): the origin line, the tree size, the
//! root in base64, and one extension line with the time; then a blank line and the signature
//! line `— <key name> <base64(key hash ‖ Ed25519 signature)>`. Keys are kept in the signed-note
//! key format (`PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>`), so Go's `note` package and
//! the tools built on it read both. The format is specified in docs/audit.md.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mltrail_core::merkle::{self, Hash};
use sha2::{Digest, Sha256};

/// The origin line of every checkpoint, and the key's name.
pub const ORIGIN: &str = "mltrail-audit";
/// The signature algorithm byte of Ed25519 in signed-note keys.
const ED25519_ALG: u8 = 0x01;

/// The signing key: a name and an Ed25519 key pair.
pub struct SigningKey {
    name: String,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    fn public(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        key
    }

    /// The verifier key others use to check checkpoints: `<name>+<hash>+<base64(0x01 ‖ key)>`.
    pub fn verifier(&self) -> String {
        verifier_text(&self.name, &self.public())
    }
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519_ALG]);
    h.update(public);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn verifier_text(name: &str, public: &[u8; 32]) -> String {
    let mut key = vec![ED25519_ALG];
    key.extend_from_slice(public);
    format!(
        "{name}+{}+{}",
        hex::encode(key_hash(name, public)),
        B64.encode(key)
    )
}

/// Where the key is when the configuration names none: beside a SQLite store's file, else in
/// the working directory.
pub fn default_key_path(store_uri: &str) -> PathBuf {
    match store_uri.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => {
            let file = path.strip_prefix('/').unwrap_or(path);
            let file = file.split('?').next().unwrap_or(file);
            let db = if path.starts_with("//") {
                PathBuf::from(format!("/{}", file.trim_start_matches('/')))
            } else {
                PathBuf::from(file)
            };
            let mut name = db.file_name().unwrap_or_default().to_os_string();
            name.push(".audit-signing-key");
            db.with_file_name(name)
        }
        _ => PathBuf::from("mltrail-audit-signing-key"),
    }
}

/// Reads the key at `path`, or makes one there when there is none (`Ok((key, true))`).
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((
            parse_key(text.trim())
                .with_context(|| format!("cannot read the audit signing key {}", path.display()))?,
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            aws_lc_rs::rand::fill(&mut seed)
                .map_err(|_| anyhow::anyhow!("no randomness for a new key"))?;
            let key = from_seed(ORIGIN, &seed)?;
            let text = format!(
                "PRIVATE+KEY+{ORIGIN}+{}+{}\n",
                hex::encode(key_hash(ORIGIN, &key.public())),
                B64.encode([&[ED25519_ALG][..], &seed].concat())
            );
            write_private(path, &text)?;
            Ok((key, true))
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the audit signing key {}", path.display()))
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the audit signing key {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn from_seed(name: &str, seed: &[u8]) -> Result<SigningKey> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|e| anyhow::anyhow!("not an Ed25519 seed: {e}"))?;
    Ok(SigningKey {
        name: name.to_string(),
        pair,
    })
}

fn parse_key(text: &str) -> Result<SigningKey> {
    // The key is standard base64, which may hold `+` itself.
    let parts: Vec<&str> = text.splitn(5, '+').collect();
    let ["PRIVATE", "KEY", name, hash, key] = parts[..] else {
        bail!("expected PRIVATE+KEY+<name>+<hash>+<key>");
    };
    let raw = B64.decode(key).context("the key is not base64")?;
    let Some((&ED25519_ALG, seed)) = raw.split_first() else {
        bail!("not an Ed25519 key");
    };
    let key = from_seed(name, seed)?;
    if hex::encode(key_hash(name, &key.public())) != hash {
        bail!("the key's hash does not match its name and key");
    }
    Ok(key)
}

/// The checkpoint text: origin, size, root, and the time as an extension line.
fn body(size: u64, root: &Hash, time_ms: i64) -> String {
    format!(
        "{ORIGIN}\n{size}\n{}\nTime: {}\n",
        B64.encode(root),
        mltrail_core::time::rfc3339_millis(time_ms)
    )
}

/// A signed checkpoint of a tree of `size` leaves with `root`.
pub fn sign(key: &SigningKey, size: u64, root: &Hash, time_ms: i64) -> String {
    let text = body(size, root, time_ms);
    let signature = key.pair.sign(text.as_bytes());
    let mut sig = key_hash(&key.name, &key.public()).to_vec();
    sig.extend_from_slice(signature.as_ref());
    format!("{text}\n\u{2014} {} {}\n", key.name, B64.encode(sig))
}

/// What a checkpoint says, once its signature checks.
#[derive(Debug, PartialEq)]
pub struct Checkpoint {
    pub size: u64,
    pub root: Hash,
}

/// Reads a signed checkpoint and checks its signature against `key`'s public half.
pub fn open(text: &str, key: &SigningKey) -> Result<Checkpoint> {
    let Some((body, signatures)) = text.split_once("\n\n") else {
        bail!("not a signed note: no blank line before the signatures");
    };
    let body = format!("{body}\n");
    let public = key.public();
    let expected_hash = key_hash(&key.name, &public);
    let mut verified = false;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            bail!("not a signature line: {line:?}");
        };
        let Some((name, sig)) = rest.split_once(' ') else {
            bail!("not a signature line: {line:?}");
        };
        let Ok(sig) = B64.decode(sig) else {
            bail!("a signature is not base64");
        };
        if name != key.name || sig.len() != 68 || sig[..4] != expected_hash {
            continue;
        }
        UnparsedPublicKey::new(&ED25519, public)
            .verify(body.as_bytes(), &sig[4..])
            .map_err(|_| anyhow::anyhow!("the checkpoint's signature does not verify: it was changed, or signed with another key"))?;
        verified = true;
    }
    if !verified {
        bail!(
            "the checkpoint carries no signature by this store's key `{}`",
            key.verifier()
        );
    }
    let mut lines = body.lines();
    if lines.next() != Some(ORIGIN) {
        bail!("the checkpoint is not of an mltrail audit log (origin line)");
    }
    let size: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .context("the checkpoint's size line is not a number")?;
    let root: Hash = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|r| r.try_into().ok())
        .context("the checkpoint's root line is not a base64 SHA-256")?;
    Ok(Checkpoint { size, root })
}

/// Whether the trail whose leaves are `leaves` still holds what `checkpoint` saw: its first
/// `size` leaves have the checkpoint's root. The reason when not.
pub fn consistent(leaves: &[Hash], checkpoint: &Checkpoint) -> std::result::Result<(), String> {
    let size = checkpoint.size as usize;
    if leaves.len() < size {
        return Err(format!(
            "the trail has {} events, fewer than the {size} the checkpoint saw: it was cut short",
            leaves.len()
        ));
    }
    if merkle::root(&leaves[..size]) != checkpoint.root {
        return Err(format!(
            "the first {size} events no longer have the checkpoint's root: the trail was rewritten (re-hashing the chain does not hide it)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_signs_verifies_and_refuses_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let (key, made) = load_or_create(&path).unwrap();
        assert!(made);
        let (again, made) = load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(again.verifier(), key.verifier());
        let leaves: Vec<Hash> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
        let root = merkle::root(&leaves[..4]);
        let note = sign(&key, 4, &root, 1_796_300_000_000);
        let checkpoint = open(&note, &key).unwrap();
        assert_eq!(checkpoint, Checkpoint { size: 4, root });
        assert!(consistent(&leaves, &checkpoint).is_ok());
        assert!(consistent(&leaves[..3], &checkpoint)
            .unwrap_err()
            .contains("cut short"));
        let mut rewritten = leaves.clone();
        rewritten[1] = merkle::leaf_hash(b"rewritten");
        assert!(consistent(&rewritten, &checkpoint)
            .unwrap_err()
            .contains("rewritten"));
        // A changed size, or another key, fails the signature.
        assert!(open(&note.replacen("\n4\n", "\n3\n", 1), &key).is_err());
        let (other, _) = load_or_create(&dir.path().join("other")).unwrap();
        assert!(open(&note, &other).is_err());
        assert!(default_key_path("sqlite:////data/m.db").ends_with("m.db.audit-signing-key"));
        assert_eq!(
            default_key_path("sqlite:////data/m.db"),
            PathBuf::from("/data/m.db.audit-signing-key")
        );
        assert_eq!(
            default_key_path("sqlite:///rel/m.db"),
            PathBuf::from("rel/m.db.audit-signing-key")
        );
    }
}

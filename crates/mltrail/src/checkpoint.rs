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
//!
//! Checking needs only the public half (a [`Verifier`]): an auditor holds that, never the key.
//! A key never signs a checkpoint inconsistent with the last one it signed
//! ([`sign_consistently`]), as the tlog-checkpoint specification demands of a log.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mltrail_core::merkle::{self, Hash};
use sha2::{Digest, Sha256};

/// The origin of checkpoints (their first line, and the key's name) unless `[audit] origin`
/// names another: give each trail its own (a URL-like name such as `mltrail.example.com/ml-team`),
/// so that whoever collects checkpoints of several tells them apart.
pub const DEFAULT_ORIGIN: &str = "mltrail-audit";

/// An origin is one line a key name can also be: no spaces, no `+`.
pub fn check_origin(origin: &str) -> Result<()> {
    if origin.is_empty()
        || origin
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        bail!("[audit] origin `{origin}` must be one word without spaces or `+` (e.g. mltrail.example.com/ml-team)");
    }
    Ok(())
}
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

    /// Its public half, to check checkpoints with.
    pub fn verifying(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            public: self.public(),
        }
    }
}

/// A public key that checks checkpoints (what an auditor holds; no private part).
#[derive(Debug, Clone, PartialEq)]
pub struct Verifier {
    name: String,
    public: [u8; 32],
}

impl Verifier {
    /// Reads `<name>+<hash>+<base64(0x01 ‖ key)>`, checking the hash.
    pub fn parse(text: &str) -> Result<Verifier> {
        let parts: Vec<&str> = text.trim().splitn(3, '+').collect();
        let [name, hash, key] = parts[..] else {
            bail!(
                "a verifier key reads <name>+<hash>+<key> (`mltrail audit verifier-key` prints it)"
            );
        };
        let raw = B64.decode(key).context("the verifier key is not base64")?;
        let Some((&ED25519_ALG, public)) = raw.split_first() else {
            bail!("not an Ed25519 verifier key");
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| anyhow::anyhow!("an Ed25519 public key is 32 bytes"))?;
        if hex::encode(key_hash(name, &public)) != hash {
            bail!("the verifier key's hash does not match its name and key");
        }
        Ok(Verifier {
            name: name.to_string(),
            public,
        })
    }
}

/// `<name>+<hash>+<base64(0x01 ‖ key)>`, what others check checkpoints with.
impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![ED25519_ALG];
        key.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(key_hash(&self.name, &self.public)),
            B64.encode(key)
        )
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

/// Where the key is when the configuration names none: beside a SQLite store's file; a store
/// that is not a file (PostgreSQL, SQLite in memory) has no such place, and then the key must
/// be named.
pub fn default_key_path(store_uri: &str) -> Result<PathBuf> {
    beside_store(store_uri, ".audit-signing-key").ok_or_else(|| anyhow::anyhow!("this store is not a file, so the audit signing key has no default place: set [audit] signing_key_file (or MLTRAIL_AUDIT_SIGNING_KEY) to a file outside the reach of whoever can write the database"))
}

/// `<db><suffix>` beside a SQLite store's file; `None` for a store that is not a file.
pub fn beside_store(store_uri: &str, suffix: &str) -> Option<PathBuf> {
    let path = store_uri
        .strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p))
        .filter(|p| !p.is_empty() && !p.contains(":memory:"));
    let path = path?;
    // sqlite:///relative.db and sqlite:////absolute.db, as the store reads them.
    let db = match path.strip_prefix("//") {
        Some(absolute) => PathBuf::from(format!("/{}", absolute.trim_start_matches('/'))),
        None => PathBuf::from(path.strip_prefix('/').unwrap_or(path)),
    };
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    Some(db.with_file_name(name))
}

/// Reads the key at `path`; `None` when there is none.
pub fn load(path: &Path) -> Result<Option<SigningKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(parse_key(text.trim()).with_context(|| {
            format!("cannot read the audit signing key {}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the audit signing key {}", path.display()))
        }
    }
}

/// Reads the key at `path`, or makes one named `origin` there when there is none
/// (`Ok((key, true))`). A key keeps the name it was made with.
pub fn load_or_create(path: &Path, origin: &str) -> Result<(SigningKey, bool)> {
    if let Some(key) = load(path)? {
        return Ok((key, false));
    }
    check_origin(origin)?;
    let mut seed = [0u8; 32];
    aws_lc_rs::rand::fill(&mut seed).map_err(|_| anyhow::anyhow!("no randomness for a new key"))?;
    let key = from_seed(origin, &seed)?;
    let text = format!(
        "PRIVATE+KEY+{origin}+{}+{}\n",
        hex::encode(key_hash(origin, &key.public())),
        B64.encode([&[ED25519_ALG][..], &seed].concat())
    );
    if write_whole(path, &text, true)? {
        Ok((key, true))
    } else {
        // Another process made one first: that one is the key.
        let key = load(path)?.context("the audit signing key vanished while being made")?;
        Ok((key, false))
    }
}

/// Writes a file whole or not at all: a temporary file beside it, synced, then moved into
/// place; with `only_new`, linked instead, so an existing file stays and `false` says so (of two
/// processes making a key, the first wins). A crash leaves no half-written file.
pub(crate) fn write_whole(path: &Path, text: &str, only_new: bool) -> Result<bool> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".mltrail-audit-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(
        temp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    if !only_new {
        temp.persist(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(true);
    }
    match std::fs::hard_link(temp.path(), path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
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

/// The checkpoint text: origin (the key's name), size, root, and the time as an extension
/// line.
fn body(origin: &str, size: u64, root: &Hash, time_ms: i64) -> String {
    format!(
        "{origin}\n{size}\n{}\nTime: {}\n",
        B64.encode(root),
        mltrail_core::time::rfc3339_millis(time_ms)
    )
}

/// A signed checkpoint of a tree of `size` leaves with `root`.
fn sign(key: &SigningKey, size: u64, root: &Hash, time_ms: i64) -> String {
    let text = body(&key.name, size, root, time_ms);
    let signature = key.pair.sign(text.as_bytes());
    let mut sig = key_hash(&key.name, &key.public()).to_vec();
    sig.extend_from_slice(signature.as_ref());
    format!("{text}\n\u{2014} {} {}\n", key.name, B64.encode(sig))
}

/// Where the last checkpoint a key signed is kept: beside the key.
fn last_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.file_name().unwrap_or_default().to_os_string();
    name.push(".last-checkpoint");
    key_path.with_file_name(name)
}

/// Signs a checkpoint of `leaves` with the key at `key_path`, unless the trail no longer holds
/// what the last checkpoint this key signed saw (a log must never sign two inconsistent
/// checkpoints); keeps it as the last one.
pub fn sign_consistently(
    key: &SigningKey,
    key_path: &Path,
    leaves: &[Hash],
    time_ms: i64,
) -> Result<String> {
    let last = last_path(key_path);
    match std::fs::read_to_string(&last) {
        Ok(text) => {
            let previous = open(&text, &key.verifying()).with_context(|| {
                format!("the last checkpoint {} does not check", last.display())
            })?;
            if let Err(why) = consistent(leaves, &previous) {
                bail!(
                    "refusing to sign: {why} (the last checkpoint this key signed, {}, saw {} events)",
                    last.display(),
                    previous.size
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", last.display())),
    }
    let note = sign(key, leaves.len() as u64, &merkle::root(leaves), time_ms);
    write_whole(&last, &note, false)?;
    Ok(note)
}

/// Signs the checkpoints the tracking server's traces carry, one at a time (each signature
/// first checks the trail against the key's last checkpoint and then replaces it).
pub struct TrailSigner {
    key: SigningKey,
    path: PathBuf,
    one_at_a_time: std::sync::Mutex<()>,
}

impl TrailSigner {
    pub fn new(key: SigningKey, path: PathBuf) -> Self {
        TrailSigner {
            key,
            path,
            one_at_a_time: std::sync::Mutex::new(()),
        }
    }
}

impl mltrail_server::lineage::CheckpointSigner for TrailSigner {
    fn sign(
        &self,
        leaves: &[Hash],
    ) -> std::result::Result<
        mltrail_server::lineage::SignedTree,
        Box<dyn std::error::Error + Send + Sync>,
    > {
        let _turn = self
            .one_at_a_time
            .lock()
            .map_err(|_| "a signing thread panicked")?;
        let checkpoint =
            sign_consistently(&self.key, &self.path, leaves, mltrail_core::now_millis())?;
        Ok(mltrail_server::lineage::SignedTree {
            checkpoint,
            verifier_key: self.key.verifying().to_string(),
        })
    }
}

/// What a checkpoint says, once its signature checks.
#[derive(Debug, PartialEq)]
pub struct Checkpoint {
    pub size: u64,
    pub root: Hash,
}

/// Reads a signed checkpoint and checks its signature with `key`.
pub fn open(text: &str, key: &Verifier) -> Result<Checkpoint> {
    let Some((body, signatures)) = text.split_once("\n\n") else {
        bail!("not a signed note: no blank line before the signatures");
    };
    let body = format!("{body}\n");
    let expected_hash = key_hash(&key.name, &key.public);
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
        UnparsedPublicKey::new(&ED25519, key.public)
            .verify(body.as_bytes(), &sig[4..])
            .map_err(|_| anyhow::anyhow!("the checkpoint's signature does not verify: it was changed, or signed with another key"))?;
        verified = true;
    }
    if !verified {
        bail!("the checkpoint carries no signature by the key `{key}`");
    }
    let mut lines = body.lines();
    if lines.next() != Some(key.name.as_str()) {
        bail!(
            "the checkpoint's origin line is not `{}`, the trail its key signs for",
            key.name
        );
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
        let (key, made) = load_or_create(&path, DEFAULT_ORIGIN).unwrap();
        assert!(made);
        let (again, made) = load_or_create(&path, "ignored-once-made").unwrap();
        assert!(!made);
        assert_eq!(again.verifying(), key.verifying());
        let verifier = Verifier::parse(&key.verifying().to_string()).unwrap();
        assert_eq!(verifier, key.verifying());
        let leaves: Vec<Hash> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
        let note = sign_consistently(&key, &path, &leaves[..4], 1_796_300_000_000).unwrap();
        let checkpoint = open(&note, &verifier).unwrap();
        assert_eq!(
            checkpoint,
            Checkpoint {
                size: 4,
                root: merkle::root(&leaves[..4])
            }
        );
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
        assert!(open(&note.replacen("\n4\n", "\n3\n", 1), &verifier).is_err());
        let (other, _) = load_or_create(&dir.path().join("other"), "example.com/log").unwrap();
        assert!(other
            .verifying()
            .to_string()
            .starts_with("example.com/log+"));
        let theirs = sign_consistently(&other, &dir.path().join("other"), &leaves, 1).unwrap();
        assert!(theirs.starts_with("example.com/log\n"));
        assert_eq!(open(&theirs, &other.verifying()).unwrap().size, 5);
        assert!(load_or_create(&dir.path().join("bad"), "has space").is_err());
        assert!(open(&note, &other.verifying()).is_err());
        // The key never signs a checkpoint inconsistent with the last one it signed.
        sign_consistently(&key, &path, &leaves, 2).unwrap();
        let refused = sign_consistently(&key, &path, &rewritten, 3).unwrap_err();
        assert!(
            refused.to_string().contains("refusing to sign"),
            "{refused}"
        );
    }

    #[test]
    fn the_default_key_sits_beside_a_sqlite_file_and_nowhere_else() {
        assert_eq!(
            default_key_path("sqlite:////data/m.db").unwrap(),
            PathBuf::from("/data/m.db.audit-signing-key")
        );
        assert_eq!(
            default_key_path("sqlite:///rel/m.db").unwrap(),
            PathBuf::from("rel/m.db.audit-signing-key")
        );
        assert!(default_key_path("postgresql://u@h/db").is_err());
        assert!(default_key_path("sqlite://:memory:").is_err());
    }
}

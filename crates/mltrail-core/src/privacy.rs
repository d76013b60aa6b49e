//! Personal data in stored predictions: which columns of a model's input are personal data
//! ([`PrivacySpec`]), whom a row is about (its subject), and the cryptography that lets a
//! subject's values be destroyed without rewriting any file that holds them (crypto-shredding).
//!
//! Each subject has a random data key ([`DataKey`]). The personal data of each prediction about
//! that subject is sealed with it as one value (AES-256-GCM, a fresh nonce, the prediction id
//! as associated data, so a sealed value cannot be moved to another record). Data keys are
//! stored wrapped by the server's master key ([`MasterKey`]) under the subject's keyed hash
//! ([`SubjectHash`]): the raw subject id is stored nowhere. Erasing a subject deletes its
//! wrapped key; every sealed copy (log segments, Parquet files, backups of them) is then
//! ciphertext nobody can open.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value as Json;

/// What an erased value reads back as, where values are shown (exports, lookups).
pub const ERASED: &str = "<erased>";

/// Every sealed value starts with this, so a reader (and a person looking at a Parquet file)
/// can tell it from a value.
pub const SEALED_PREFIX: &str = "pii1:";

/// What a sealed value is bound to besides its prediction id: the record field that holds it.
const SEALED_LABEL: &[u8] = b"sealed_inputs";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivacyError {
    #[error("the privacy spec is not JSON of the form {{\"subject\": COLUMN, \"pii\": [COLUMN, ...]}}: {0}")]
    Spec(String),
    #[error("a sealed value is damaged or was sealed with another key")]
    Open,
    #[error("a key is not {0}")]
    KeyText(&'static str),
    #[error("no randomness for a new key or nonce")]
    Random,
}

/// Which input columns hold personal data, and which one names the person a row is about.
/// The subject column is personal data too: it is sealed like the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacySpec {
    subject: String,
    /// PII columns besides the subject, in the order given, without repeats.
    pii: Vec<String>,
}

impl PrivacySpec {
    pub fn new(subject: String, pii: Vec<String>) -> Result<Self, PrivacyError> {
        if subject.is_empty() {
            return Err(PrivacyError::Spec("the subject column is empty".into()));
        }
        let mut columns: Vec<String> = Vec::with_capacity(pii.len());
        for column in pii {
            if column.is_empty() {
                return Err(PrivacyError::Spec("a PII column name is empty".into()));
            }
            if column != subject && !columns.contains(&column) {
                columns.push(column);
            }
        }
        Ok(PrivacySpec {
            subject,
            pii: columns,
        })
    }

    /// Reads the tag's JSON: `{"subject": "customer_id", "pii": ["name", "email"]}`.
    pub fn parse(text: &str) -> Result<Self, PrivacyError> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| PrivacyError::Spec(e.to_string()))?;
        let subject = json
            .get("subject")
            .and_then(Json::as_str)
            .ok_or_else(|| PrivacyError::Spec("`subject` must be a column name".into()))?;
        let pii = match json.get("pii") {
            None => Vec::new(),
            Some(Json::Array(list)) => list
                .iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| PrivacyError::Spec("`pii` must list column names".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(PrivacyError::Spec("`pii` must be a list".into())),
        };
        if let Some(key) = json
            .as_object()
            .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "subject" | "pii")))
        {
            return Err(PrivacyError::Spec(format!("unknown field `{key}`")));
        }
        PrivacySpec::new(subject.to_string(), pii)
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({"subject": self.subject, "pii": self.pii}).to_string()
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The PII columns other than the subject.
    pub fn pii(&self) -> &[String] {
        &self.pii
    }

    /// Whether a column's values are sealed: the subject and every PII column.
    pub fn seals(&self, column: &str) -> bool {
        column == self.subject || self.pii.iter().any(|c| c == column)
    }
}

/// The text a subject is known by: a JSON string's content, or a whole number as written, so
/// `12345` and `"12345"` name one person. `None` for a value that names nobody or could name
/// two (null, empty text, a fraction or a number too large to be exact, a boolean, an object
/// or a list): a person's id must hash the same every time it is sent.
pub fn subject_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// A subject as stored: BLAKE3 keyed by a key derived from the master key, so the raw id is
/// nowhere on disk and nobody without the master key can test a guess against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectHash([u8; 32]);

impl SubjectHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(SubjectHash(bytes))
    }
}

impl std::fmt::Display for SubjectHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn random<const N: usize>() -> Result<[u8; N], PrivacyError> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PrivacyError::Random)?;
    Ok(bytes)
}

fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is what AES-256-GCM takes; `new` fails only on a wrong length.
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!("32-byte key")),
    )
}

/// Random bytes drawn from the OS generator once per [`NONCE_POOL`] bytes: one call of
/// aws-lc's generator costs ~390 ns whatever its length, which made the nonce 73 % of sealing a
/// cell (`cargo run --release -p mltrail-core --example seal_cost`). Nonces are public, so
/// keeping the next few hundred in memory reveals nothing.
const NONCE_POOL: usize = 4096;

thread_local! {
    static POOL: std::cell::RefCell<(Vec<u8>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

fn fresh_nonce() -> Result<[u8; NONCE_LEN], PrivacyError> {
    POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if *used + NONCE_LEN > bytes.len() {
            // Filled aside and swapped in: a failed fill must not leave zeros to be handed out.
            let mut fresh = vec![0u8; NONCE_POOL];
            aws_lc_rs::rand::fill(&mut fresh).map_err(|_| PrivacyError::Random)?;
            *bytes = fresh;
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[*used..*used + NONCE_LEN]);
        // A nonce is used once: its bytes leave the pool.
        bytes[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        Ok(nonce)
    })
}

/// Appends `nonce || ciphertext || tag` to `out`.
fn seal_into(
    key: &LessSafeKey,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PrivacyError> {
    let nonce = fresh_nonce()?;
    let start = out.len();
    out.reserve(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[start + NONCE_LEN..],
        )
        .map_err(|_| PrivacyError::Open)?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// `nonce || ciphertext || tag`.
fn seal(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, PrivacyError> {
    let mut out = Vec::new();
    seal_into(key, aad, plaintext, &mut out)?;
    Ok(out)
}

fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, PrivacyError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(PrivacyError::Open);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| PrivacyError::Open)?;
    let mut buffer = rest.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buffer)
        .map_err(|_| PrivacyError::Open)?
        .len();
    buffer.truncate(plain);
    Ok(buffer)
}

/// One subject's data key. Never printed; its bytes are zeroed when dropped (the copy inside
/// aws-lc's key schedule is aws-lc's).
pub struct DataKey {
    bytes: [u8; 32],
    aead: LessSafeKey,
}

impl DataKey {
    pub fn generate() -> Result<Self, PrivacyError> {
        Ok(DataKey::from_bytes(random::<32>()?))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey {
            aead: aead_key(&bytes),
            bytes,
        }
    }

    /// Standard base64, as the key travels to a serving process.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    pub fn from_base64(text: &str) -> Result<Self, PrivacyError> {
        let bytes = STANDARD
            .decode(text)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(PrivacyError::KeyText("32 bytes of base64"))?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Seals one record's personal data (JSON text): the result is a JSON string's content,
    /// [`SEALED_PREFIX`] and base64url. `record` is the prediction id's 16 bytes.
    pub fn seal(&self, record: &[u8; 16], json: &[u8]) -> Result<String, PrivacyError> {
        let mut out = Vec::new();
        self.seal_into(record, json, &mut Vec::new(), &mut out)?;
        // Base64url and the prefix are ASCII.
        String::from_utf8(out).map_err(|_| PrivacyError::Open)
    }

    /// [`Self::seal`] appended to `out`, with `scratch` as working space: what a request's rows
    /// use, so a row costs no allocation of its own.
    pub fn seal_into(
        &self,
        record: &[u8; 16],
        json: &[u8],
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), PrivacyError> {
        scratch.clear();
        seal_into(&self.aead, &aad(record), json, scratch)?;
        out.extend_from_slice(SEALED_PREFIX.as_bytes());
        let start = out.len();
        let encoded = base64::encoded_len(scratch.len(), false).unwrap_or(0);
        out.resize(start + encoded, 0);
        URL_SAFE_NO_PAD
            .encode_slice(&scratch[..], &mut out[start..])
            .map_err(|_| PrivacyError::Open)?;
        Ok(())
    }

    /// The JSON text a sealed value holds.
    pub fn open(&self, record: &[u8; 16], sealed: &str) -> Result<Vec<u8>, PrivacyError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(PrivacyError::Open)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| PrivacyError::Open)?;
        open(&self.aead, &aad(record), &bytes)
    }
}

/// The prediction id, then the field the value lives in.
fn aad(record: &[u8; 16]) -> [u8; 16 + SEALED_LABEL.len()] {
    let mut aad = [0u8; 16 + SEALED_LABEL.len()];
    aad[..16].copy_from_slice(record);
    aad[16..].copy_from_slice(SEALED_LABEL);
    aad
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.fill(0);
        // Keeps the zeroing from being removed as a store nobody reads.
        std::hint::black_box(&self.bytes);
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The server's master key: wraps every data key and keys the subject hash. 32 random bytes,
/// kept in a file as 64 hex digits.
pub struct MasterKey {
    wrap: LessSafeKey,
    subject_key: [u8; 32],
    fingerprint: [u8; 32],
}

impl MasterKey {
    pub fn generate_text() -> Result<String, PrivacyError> {
        Ok(hex::encode(random::<32>()?))
    }

    /// Reads the key file's text (64 hex digits, surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, PrivacyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| PrivacyError::KeyText("64 hex digits"))?;
        // Two keys from one: the hash of a subject must not be a value the wrapping key made.
        let wrap = blake3::derive_key("mltrail 2026 privacy: data-key wrapping", &bytes);
        let subject_key = blake3::derive_key("mltrail 2026 privacy: subject hash", &bytes);
        let fingerprint = blake3::derive_key("mltrail 2026 privacy: fingerprint", &bytes);
        bytes.fill(0);
        Ok(MasterKey {
            wrap: aead_key(&wrap),
            subject_key,
            fingerprint,
        })
    }

    /// Names the key without revealing it: the database records it, so a server started with
    /// another key file is refused instead of silently hashing everyone anew.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.fingerprint)
    }

    pub fn subject_hash(&self, subject: &str) -> SubjectHash {
        SubjectHash(*blake3::keyed_hash(&self.subject_key, subject.as_bytes()).as_bytes())
    }

    /// The data key sealed for storage, bound to its subject (a wrapped key copied onto
    /// another subject's row does not open).
    pub fn wrap(&self, subject: &SubjectHash, key: &DataKey) -> Result<String, PrivacyError> {
        Ok(STANDARD.encode(seal(&self.wrap, &subject.0, &key.bytes)?))
    }

    pub fn unwrap(&self, subject: &SubjectHash, wrapped: &str) -> Result<DataKey, PrivacyError> {
        let sealed = STANDARD.decode(wrapped).map_err(|_| PrivacyError::Open)?;
        let mut plain = open(&self.wrap, &subject.0, &sealed)?;
        let bytes = <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| PrivacyError::Open);
        plain.fill(0);
        Ok(DataKey::from_bytes(bytes?))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_text(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_record() {
        let key = DataKey::generate().unwrap();
        let record = [7u8; 16];
        let sealed = key.seal(&record, br#""ada@example.org""#).unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("ada"));
        assert_eq!(key.open(&record, &sealed).unwrap(), br#""ada@example.org""#);
        assert_eq!(key.open(&[8u8; 16], &sealed), Err(PrivacyError::Open));
        // Bound to its field too: the same bytes sealed under the id alone do not open.
        let mut unlabelled = Vec::new();
        seal_into(&key.aead, &record, br#""ada@example.org""#, &mut unlabelled).unwrap();
        let unlabelled = format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(&unlabelled));
        assert_eq!(key.open(&record, &unlabelled), Err(PrivacyError::Open));
        let other = DataKey::generate().unwrap();
        assert_eq!(other.open(&record, &sealed), Err(PrivacyError::Open));
        let mut damaged = sealed.clone().into_bytes();
        let last = damaged.len() - 1;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        let damaged = String::from_utf8(damaged).unwrap();
        assert_eq!(key.open(&record, &damaged), Err(PrivacyError::Open));
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(sealed, key.seal(&record, br#""ada@example.org""#).unwrap());
    }

    #[test]
    fn nonces_never_repeat_across_pool_refills() {
        let key = DataKey::generate().unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..2_000u32 {
            let sealed = key.seal(&[0; 16], &i.to_le_bytes()).unwrap();
            let bytes = URL_SAFE_NO_PAD
                .decode(&sealed[SEALED_PREFIX.len()..])
                .unwrap();
            assert!(
                seen.insert(bytes[..NONCE_LEN].to_vec()),
                "nonce repeated at {i}"
            );
            assert_eq!(key.open(&[0; 16], &sealed).unwrap(), i.to_le_bytes());
        }
    }

    #[test]
    fn a_double_comes_back_bit_for_bit() {
        let key = DataKey::generate().unwrap();
        let text = serde_json::to_vec(&0.1_f64.next_up()).unwrap();
        let sealed = key.seal(&[1; 16], &text).unwrap();
        let back: f64 = serde_json::from_slice(&key.open(&[1; 16], &sealed).unwrap()).unwrap();
        assert_eq!(back.to_bits(), 0.1_f64.next_up().to_bits());
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_subject() {
        let master = master();
        let (a, b) = (master.subject_hash("C-1"), master.subject_hash("C-2"));
        assert_ne!(a, b);
        assert_eq!(a, master.subject_hash("C-1"));
        let key = DataKey::generate().unwrap();
        let wrapped = master.wrap(&a, &key).unwrap();
        assert_eq!(master.unwrap(&a, &wrapped).unwrap().bytes, key.bytes);
        assert!(master.unwrap(&b, &wrapped).is_err());
        let other = MasterKey::from_text(&"cd".repeat(32)).unwrap();
        assert!(other.unwrap(&a, &wrapped).is_err());
        assert_ne!(other.subject_hash("C-1"), a, "the hash is keyed");
        assert_ne!(other.fingerprint(), master.fingerprint());
        assert_eq!(
            MasterKey::from_text(&"ab".repeat(32))
                .unwrap()
                .fingerprint(),
            master.fingerprint()
        );
        assert_eq!(SubjectHash::parse(&a.to_hex()), Some(a));
        assert_eq!(SubjectHash::parse(&a.to_hex().to_uppercase()), None);
    }

    #[test]
    fn keys_travel_as_base64_and_never_print() {
        let key = DataKey::generate().unwrap();
        let back = DataKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(back.bytes, key.bytes);
        assert!(DataKey::from_base64("AAAA").is_err());
        assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
        assert!(MasterKey::from_text("12").is_err());
    }

    #[test]
    fn the_spec_reads_its_tag_and_seals_the_subject() {
        let spec = PrivacySpec::parse(
            r#"{"subject":"customer_id","pii":["name","email","customer_id","name"]}"#,
        )
        .unwrap();
        assert_eq!(spec.subject(), "customer_id");
        assert_eq!(spec.pii(), ["name", "email"]);
        assert!(spec.seals("customer_id") && spec.seals("email") && !spec.seals("income"));
        assert_eq!(PrivacySpec::parse(&spec.to_json()).unwrap(), spec);
        for bad in [
            r#"{"pii":["a"]}"#,
            r#"{"subject":""}"#,
            r#"{"subject":"a","pii":"b"}"#,
            r#"{"subject":"a","columns":[]}"#,
            "[]",
        ] {
            assert!(PrivacySpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            subject_text(&serde_json::json!(12345)),
            Some("12345".into())
        );
        assert_eq!(
            subject_text(&serde_json::json!("12345")),
            Some("12345".into())
        );
        assert_eq!(subject_text(&serde_json::json!(null)), None);
        assert_eq!(subject_text(&serde_json::json!(1.5)), None);
        assert_eq!(subject_text(&serde_json::json!(true)), None);
        let huge: serde_json::Value =
            serde_json::from_str("123456789012345678901234567890").unwrap();
        assert_eq!(subject_text(&huge), None, "rounded: two ids could share it");
        assert_eq!(subject_text(&serde_json::json!("")), None);
    }
}

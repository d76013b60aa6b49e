//! Personal data in the prediction log: where a deployment gets its subjects' keys
//! ([`SubjectKeys`], cached by [`KeyCache`]), and how sealed records are opened for those who
//! may read them: a lookup, a subject's export ([`export_subject`]), a monitor's window
//! ([`Keyring`]). The sealing itself is `mltrail_core::privacy`; which rows are sealed is the
//! deployment's (`request::PrivateRows`).
//!
//! Keys live in the metadata store ([`StoreKeys`] inside the tracking server); `mltrail serve`
//! asks the tracking server for them (the CLI's REST client implements [`SubjectKeys`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mltrail_core::privacy::{DataKey, MasterKey, SubjectHash, ERASED};
use mltrail_store::privacy::MAX_SUBJECTS;
use mltrail_store::MetaStore;
use serde_json::value::RawValue;

use crate::archive::{visit_parquet, ArchiveError, ArchiveReader, RecordView};
use crate::deployment::{BoxError, BoxFuture};
use crate::record::{FeedbackRecord, LogRecord, PredictionRecord};

/// A subject's data key with the hash its records carry (and that hash in hex, written into
/// every record about them: worked out once per key, not per row).
#[derive(Debug, Clone)]
pub struct SubjectKey {
    pub subject: SubjectHash,
    pub key: Arc<DataKey>,
    hex: Arc<str>,
}

impl SubjectKey {
    pub fn new(subject: SubjectHash, key: Arc<DataKey>) -> Self {
        SubjectKey {
            hex: subject.to_hex().into(),
            subject,
            key,
        }
    }

    /// The subject's hash as records spell it (64 lowercase hex digits).
    pub fn subject_hex(&self) -> &str {
        &self.hex
    }
}

/// The subjects' keys could not be had (the tracking server or the store is unreachable, or
/// refused): a prediction that cannot be sealed is not made.
#[derive(Debug, thiserror::Error)]
#[error("the keys that seal personal data could not be had: {0}")]
pub struct KeyError(#[source] pub BoxError);

/// Where subjects' keys come from, at most [`MAX_SUBJECTS`] a call ([`subjects_in_chunks`] and
/// [`hashes_in_chunks`] split longer lists).
pub trait SubjectKeys: Send + Sync {
    /// The keys of `subjects` (raw ids, in order), made for those who have none yet.
    fn for_subjects<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<SubjectKey>, KeyError>>;

    /// The keys stored under `hashes`, in order; `None` for an erased subject.
    fn for_hashes<'a>(
        &'a self,
        hashes: &'a [SubjectHash],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<DataKey>>>, KeyError>>;
}

/// The keys in the metadata store, wrapped by the master key: the tracking server's own.
pub struct StoreKeys {
    store: MetaStore,
    master: Arc<MasterKey>,
}

impl StoreKeys {
    pub fn new(store: MetaStore, master: Arc<MasterKey>) -> Self {
        StoreKeys { store, master }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }
}

impl SubjectKeys for StoreKeys {
    fn for_subjects<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<SubjectKey>, KeyError>> {
        Box::pin(async move {
            let keys = mltrail_store::privacy::subject_keys(&self.store, &self.master, subjects)
                .await
                .map_err(|e| KeyError(e.into()))?;
            Ok(keys
                .into_iter()
                .map(|k| SubjectKey::new(k.subject, Arc::new(k.key)))
                .collect())
        })
    }

    fn for_hashes<'a>(
        &'a self,
        hashes: &'a [SubjectHash],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<DataKey>>>, KeyError>> {
        Box::pin(async move {
            let keys = mltrail_store::privacy::keys_by_hash(&self.store, &self.master, hashes)
                .await
                .map_err(|e| KeyError(e.into()))?;
            Ok(keys.into_iter().map(|k| k.map(Arc::new)).collect())
        })
    }
}

/// [`SubjectKeys::for_subjects`] in calls of at most [`MAX_SUBJECTS`] (what a source takes).
pub async fn subjects_in_chunks(
    keys: &dyn SubjectKeys,
    subjects: &[String],
) -> Result<Vec<SubjectKey>, KeyError> {
    let mut out = Vec::with_capacity(subjects.len());
    for chunk in subjects.chunks(MAX_SUBJECTS) {
        out.extend(keys.for_subjects(chunk).await?);
    }
    Ok(out)
}

/// [`SubjectKeys::for_hashes`] in calls of at most [`MAX_SUBJECTS`].
pub async fn hashes_in_chunks(
    keys: &dyn SubjectKeys,
    hashes: &[SubjectHash],
) -> Result<Vec<Option<Arc<DataKey>>>, KeyError> {
    let mut out = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(MAX_SUBJECTS) {
        out.extend(keys.for_hashes(chunk).await?);
    }
    Ok(out)
}

/// A serving process's keys, kept for [`KeyCache::TTL`]: a repeat subject costs no round trip,
/// and an erasure reaches every replica within that time (after which nothing the replica
/// writes or reads uses the destroyed key). Expired entries are dropped, so neither keys nor
/// subject ids stay in memory much longer than that.
pub struct KeyCache {
    source: Arc<dyn SubjectKeys>,
    ttl: Duration,
    by_subject: Mutex<Timed<String, SubjectKey>>,
    by_hash: Mutex<Timed<SubjectHash, Option<Arc<DataKey>>>>,
}

/// Entries with the time they were fetched; expired ones are swept out at most every
/// `ttl / 4`, so a sweep's cost is spread over many lookups.
struct Timed<K, V> {
    entries: HashMap<K, (Instant, V)>,
    swept: Instant,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Timed<K, V> {
    fn new() -> Self {
        Timed {
            entries: HashMap::new(),
            swept: Instant::now(),
        }
    }

    fn fresh(&self, key: &K, now: Instant, ttl: Duration) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < ttl)
            .map(|(_, v)| v.clone())
    }

    fn insert_all(
        &mut self,
        fetched: impl IntoIterator<Item = (K, V)>,
        now: Instant,
        ttl: Duration,
    ) {
        if now.duration_since(self.swept) >= ttl / 4 {
            self.entries
                .retain(|_, (at, _)| now.duration_since(*at) < ttl);
            self.swept = now;
        }
        for (k, v) in fetched {
            if self.entries.len() >= KeyCache::CAPACITY {
                // Keys churn faster than they repeat: caching buys little; start over.
                self.entries.clear();
            }
            self.entries.insert(k, (now, v));
        }
    }
}

impl KeyCache {
    /// How long a key is used without asking again.
    pub const TTL: Duration = Duration::from_secs(30);
    /// Entries kept at most per map.
    const CAPACITY: usize = 100_000;

    pub fn new(source: Arc<dyn SubjectKeys>) -> Self {
        KeyCache::with_ttl(source, KeyCache::TTL)
    }

    pub fn with_ttl(source: Arc<dyn SubjectKeys>, ttl: Duration) -> Self {
        KeyCache {
            source,
            ttl,
            by_subject: Mutex::new(Timed::new()),
            by_hash: Mutex::new(Timed::new()),
        }
    }

    /// The keys of `subjects`, in order.
    pub async fn for_subjects(&self, subjects: &[String]) -> Result<Vec<SubjectKey>, KeyError> {
        let now = Instant::now();
        let cached: Vec<Option<SubjectKey>> = {
            let map = self.by_subject.lock().unwrap_or_else(|p| p.into_inner());
            subjects
                .iter()
                .map(|s| map.fresh(s, now, self.ttl))
                .collect()
        };
        let missing: Vec<String> = subjects
            .iter()
            .zip(&cached)
            .filter(|(_, k)| k.is_none())
            .map(|(s, _)| s.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(cached.into_iter().flatten().collect());
        }
        let fetched = subjects_in_chunks(self.source.as_ref(), &missing).await?;
        if fetched.len() != missing.len() {
            return Err(KeyError(
                "the key source answered for other subjects than asked".into(),
            ));
        }
        let fetched: HashMap<String, SubjectKey> = missing.into_iter().zip(fetched).collect();
        self.by_subject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert_all(
                fetched.iter().map(|(s, k)| (s.clone(), k.clone())),
                now,
                self.ttl,
            );
        // The answer is built from this call's own reads, whatever the map did meanwhile.
        cached
            .into_iter()
            .zip(subjects)
            .map(|(hit, subject)| {
                hit.or_else(|| fetched.get(subject).cloned())
                    .ok_or_else(|| KeyError("a subject's key was not answered".into()))
            })
            .collect()
    }

    /// The keys stored under `hashes`, in order; `None` for an erased subject.
    pub async fn for_hashes(
        &self,
        hashes: &[SubjectHash],
    ) -> Result<Vec<Option<Arc<DataKey>>>, KeyError> {
        let now = Instant::now();
        let cached: Vec<Option<Option<Arc<DataKey>>>> = {
            let map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
            hashes.iter().map(|h| map.fresh(h, now, self.ttl)).collect()
        };
        let missing: Vec<SubjectHash> = hashes
            .iter()
            .zip(&cached)
            .filter(|(_, k)| k.is_none())
            .map(|(h, _)| *h)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let fetched: HashMap<SubjectHash, Option<Arc<DataKey>>> = if missing.is_empty() {
            HashMap::new()
        } else {
            let found = hashes_in_chunks(self.source.as_ref(), &missing).await?;
            if found.len() != missing.len() {
                return Err(KeyError(
                    "the key source answered for other subjects than asked".into(),
                ));
            }
            missing.into_iter().zip(found).collect()
        };
        if !fetched.is_empty() {
            self.by_hash
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert_all(fetched.iter().map(|(h, k)| (*h, k.clone())), now, self.ttl);
        }
        Ok(cached
            .into_iter()
            .zip(hashes)
            .map(|(hit, hash)| hit.unwrap_or_else(|| fetched.get(hash).cloned().flatten()))
            .collect())
    }
}

/// What an unreadable (erased) value becomes when a record is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// `"<erased>"`, where people read records (lookups, exports).
    Shown,
    /// `null`, where values are counted (monitors skip missing values).
    Missing,
}

/// A sealed record's inputs whole again: its open inputs, then its personal data opened with
/// `key` (`None`: the subject was erased), or each sealed column (`sealed`, asked for only
/// then) as `erased` says when it does not open. Both halves are JSON objects, so they are
/// joined as text, without parsing either. Inputs that are not a JSON object are returned as
/// they are.
pub fn open_inputs(
    inputs: &str,
    id: &uuid::Uuid,
    sealed: impl FnOnce() -> Vec<String>,
    sealed_inputs: Option<&str>,
    key: Option<&DataKey>,
    erased: Erased,
) -> String {
    let Some(open) = members(inputs) else {
        return inputs.to_string();
    };
    let opened = sealed_inputs
        .zip(key)
        .and_then(|(text, key)| key.open(id.as_bytes(), text).ok())
        .and_then(|plain| String::from_utf8(plain).ok());
    let mut out = String::with_capacity(inputs.len() + 96);
    out.push('{');
    let mut add = |members: &str| {
        if !members.is_empty() {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(members);
        }
    };
    add(open);
    match opened.as_deref().and_then(members) {
        Some(private) => add(private),
        None => {
            let shown = match erased {
                Erased::Shown => format!("\"{ERASED}\""),
                Erased::Missing => "null".to_string(),
            };
            for name in sealed() {
                add(&format!(
                    "{}:{shown}",
                    serde_json::to_string(&name).unwrap_or_default()
                ));
            }
        }
    }
    out.push('}');
    out
}

/// The members of a JSON object's text, between its braces.
fn members(object: &str) -> Option<&str> {
    let inner = object.trim().strip_prefix('{')?.strip_suffix('}')?;
    Some(inner.trim())
}

/// Opens a prediction record in place, for someone who may read it.
pub fn open_record(record: &mut PredictionRecord, key: Option<&DataKey>) {
    let Some(sealed) = &record.sealed else { return };
    let opened = open_inputs(
        record.inputs.get(),
        &record.id,
        || sealed.clone(),
        record.sealed_inputs.as_deref(),
        key,
        Erased::Shown,
    );
    if let Ok(raw) = RawValue::from_string(opened) {
        record.inputs = raw;
        // What was sealed is now in `inputs`; the ciphertext is left out of what is shown.
        record.sealed_inputs = None;
    }
}

/// The subject a sealed record names, when it names one.
pub fn subject_of(record: &PredictionRecord) -> Option<SubjectHash> {
    record.sealed.as_ref()?;
    record.subject.as_deref().and_then(SubjectHash::parse)
}

/// Keys for one archived file's sealed records, looked up once per subject: a monitor reads a
/// window file by file through this.
#[derive(Default)]
pub struct Keyring(HashMap<SubjectHash, Option<Arc<DataKey>>>);

impl Keyring {
    /// The subjects a file's sealed predictions name (CPU work, for a blocking thread; only
    /// the file's `subject` column is read).
    pub fn subjects_of(bytes: &bytes::Bytes) -> Result<Vec<SubjectHash>, ArchiveError> {
        let mut subjects = BTreeSet::new();
        crate::archive::visit_column(bytes.clone(), "subject", |subject| {
            subjects.extend(SubjectHash::parse(subject));
        })?;
        Ok(subjects.into_iter().collect())
    }

    /// The keys of `subjects` (`None` where erased).
    pub async fn fetch(
        subjects: Vec<SubjectHash>,
        keys: &dyn SubjectKeys,
    ) -> Result<Keyring, KeyError> {
        if subjects.is_empty() {
            return Ok(Keyring::default());
        }
        let found = hashes_in_chunks(keys, &subjects).await?;
        Ok(Keyring(subjects.into_iter().zip(found).collect()))
    }

    /// A sealed prediction's inputs opened (erased values as `null`); `None` for a record
    /// that seals nothing.
    pub fn open(&self, view: &RecordView<'_>) -> Option<String> {
        view.sealed?;
        let id = view.id.and_then(|i| uuid::Uuid::parse_str(i).ok())?;
        let key = view
            .subject
            .and_then(SubjectHash::parse)
            .and_then(|h| self.0.get(&h).cloned().flatten());
        Some(open_inputs(
            view.inputs.unwrap_or("{}"),
            &id,
            || view.sealed_columns().unwrap_or_default(),
            view.sealed_inputs,
            key.as_deref(),
            Erased::Missing,
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// What an export found: each prediction with the feedback on it, and the archive files that
/// could not be read as Parquet (named, so an export never silently leaves data out).
#[derive(Debug, Default)]
pub struct Export {
    pub predictions: Vec<(PredictionRecord, Vec<FeedbackRecord>)>,
    pub unreadable: Vec<String>,
}

/// Every archived prediction about `subject` (opened, or `"<erased>"` where its key is gone),
/// each with the feedback received on it (oldest first), in the archive's file order
/// (deployment, day, replica and segment).
pub async fn export_subject(
    archive: &dyn ArchiveReader,
    keys: &dyn SubjectKeys,
    subject: SubjectHash,
) -> Result<Export, ExportError> {
    let key = keys
        .for_hashes(std::slice::from_ref(&subject))
        .await?
        .pop()
        .flatten();
    let hex = subject.to_hex();
    let mut files: Vec<String> = archive
        .list("predictions")
        .await
        .map_err(ArchiveError::from)?
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    files.sort();
    let mut found: Vec<(PredictionRecord, Vec<FeedbackRecord>)> = Vec::new();
    let mut unreadable = Vec::new();
    let mut index: HashMap<uuid::Uuid, usize> = HashMap::new();
    // First the predictions, then the feedback on them: with several replicas, feedback on a
    // prediction may sit in another replica's file that sorts before the prediction's.
    let mut with_feedback = Vec::new();
    for file in &files {
        let bytes = bytes::Bytes::from(archive.get(file).await.map_err(ArchiveError::from)?);
        let mut batch = Vec::new();
        let mut feedback = false;
        let read = visit_parquet(bytes, |view| {
            feedback |= view.kind == Some("feedback");
            if view.subject == Some(hex.as_str()) && view.kind == Some("prediction") {
                batch.extend(view.to_record());
            }
        });
        if let Err(e) = read {
            tracing::warn!(file = %file, error = %e, "an archived prediction file is not readable; the export names it");
            unreadable.push(file.clone());
            continue;
        }
        if feedback {
            with_feedback.push(file);
        }
        for record in batch {
            if let LogRecord::Prediction(mut p) = record {
                open_record(&mut p, key.as_deref());
                index.insert(p.id, found.len());
                found.push((p, Vec::new()));
            }
        }
    }
    if !found.is_empty() {
        for file in with_feedback {
            let bytes = bytes::Bytes::from(archive.get(file).await.map_err(ArchiveError::from)?);
            let mut batch = Vec::new();
            visit_parquet(bytes, |view| {
                let ours = view
                    .id
                    .and_then(|i| uuid::Uuid::parse_str(i).ok())
                    .is_some_and(|id| index.contains_key(&id));
                if view.kind == Some("feedback") && ours {
                    batch.extend(view.to_record());
                }
            })?;
            for record in batch {
                if let LogRecord::Feedback(f) = record {
                    if let Some(&i) = index.get(&f.id) {
                        found[i].1.push(f);
                    }
                }
            }
        }
        for (_, feedback) in &mut found {
            feedback.sort_by_key(|f| f.time_ms);
        }
    }
    Ok(Export {
        predictions: found,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_puts_the_personal_data_back_or_shows_its_erasure() {
        let key = DataKey::generate().unwrap();
        let id = uuid::Uuid::now_v7();
        let private = br#"{"email":"ada@example.org","income":0.30000000000000004}"#;
        let sealed_inputs = key.seal(id.as_bytes(), private).unwrap();
        let inputs = r#"{"age":41}"#;
        let sealed = || vec!["email".to_string(), "income".to_string()];
        let open = |key: Option<&DataKey>, erased| {
            open_inputs(inputs, &id, sealed, Some(&sealed_inputs), key, erased)
        };
        assert_eq!(
            open(Some(&key), Erased::Shown),
            r#"{"age":41,"email":"ada@example.org","income":0.30000000000000004}"#
        );
        assert_eq!(
            open(None, Erased::Shown),
            r#"{"age":41,"email":"<erased>","income":"<erased>"}"#
        );
        let other = DataKey::generate().unwrap();
        assert_eq!(
            open(Some(&other), Erased::Missing),
            r#"{"age":41,"email":null,"income":null}"#
        );
    }

    struct Counting {
        calls: Mutex<usize>,
        keys: Mutex<HashMap<String, Arc<DataKey>>>,
    }

    impl SubjectKeys for Counting {
        fn for_subjects<'a>(
            &'a self,
            subjects: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<SubjectKey>, KeyError>> {
            *self.calls.lock().unwrap() += 1;
            let master = MasterKey::from_text(&"33".repeat(32)).unwrap();
            let mut keys = self.keys.lock().unwrap();
            let out = subjects
                .iter()
                .map(|s| {
                    SubjectKey::new(
                        master.subject_hash(s),
                        keys.entry(s.clone())
                            .or_insert_with(|| Arc::new(DataKey::generate().unwrap()))
                            .clone(),
                    )
                })
                .collect();
            Box::pin(async move { Ok(out) })
        }

        fn for_hashes<'a>(
            &'a self,
            hashes: &'a [SubjectHash],
        ) -> BoxFuture<'a, Result<Vec<Option<Arc<DataKey>>>, KeyError>> {
            *self.calls.lock().unwrap() += 1;
            Box::pin(async move { Ok(vec![None; hashes.len()]) })
        }
    }

    #[tokio::test]
    async fn the_cache_asks_once_per_subject_until_its_time_is_up() {
        let source = Arc::new(Counting {
            calls: Mutex::new(0),
            keys: Mutex::new(HashMap::new()),
        });
        let cache = KeyCache::with_ttl(source.clone(), Duration::from_millis(200));
        let subjects = ["a", "b", "a"].map(String::from);
        let first = cache.for_subjects(&subjects).await.unwrap();
        assert_eq!(first[0].subject, first[2].subject);
        cache.for_subjects(&subjects[..2]).await.unwrap();
        assert_eq!(*source.calls.lock().unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        cache.for_subjects(&subjects[..1]).await.unwrap();
        assert_eq!(*source.calls.lock().unwrap(), 2);
        // Expired entries leave memory: only `a`, just fetched again, is kept.
        let kept: Vec<String> = cache
            .by_subject
            .lock()
            .unwrap()
            .entries
            .keys()
            .cloned()
            .collect();
        assert_eq!(kept, ["a"]);
        let erased = cache.for_hashes(&[first[0].subject]).await.unwrap();
        assert!(erased[0].is_none());
    }

    /// Files in memory.
    struct Files(std::collections::BTreeMap<String, Vec<u8>>);

    impl ArchiveReader for Files {
        fn list<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Vec<String>, crate::archive::StorageError>> {
            Box::pin(async move { Ok(self.0.keys().cloned().collect()) })
        }
        fn get<'a>(
            &'a self,
            path: &'a str,
        ) -> BoxFuture<'a, Result<Vec<u8>, crate::archive::StorageError>> {
            Box::pin(async move { Ok(self.0.get(path).cloned().unwrap_or_default()) })
        }
    }

    /// One subject's key, found by any hash.
    struct OneKey(Arc<DataKey>);

    impl SubjectKeys for OneKey {
        fn for_subjects<'a>(
            &'a self,
            _: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<SubjectKey>, KeyError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn for_hashes<'a>(
            &'a self,
            hashes: &'a [SubjectHash],
        ) -> BoxFuture<'a, Result<Vec<Option<Arc<DataKey>>>, KeyError>> {
            Box::pin(async move { Ok(vec![Some(self.0.clone()); hashes.len()]) })
        }
    }

    #[tokio::test]
    async fn an_export_finds_feedback_another_replica_archived_first() {
        let master = MasterKey::from_text(&"44".repeat(32)).unwrap();
        let ada = master.subject_hash("ada");
        let key = Arc::new(DataKey::generate().unwrap());
        let id = uuid::Uuid::now_v7();
        let sealed = key
            .seal(id.as_bytes(), br#"{"email":"ada@example.org"}"#)
            .unwrap();
        let prediction = LogRecord::Prediction(PredictionRecord {
            id,
            time_ms: 10,
            deployment: "d".into(),
            model: "m".into(),
            version: "1".into(),
            digest: "x".into(),
            arm: None,
            latency_us: 1,
            trace_id: None,
            inputs: RawValue::from_string(r#"{"age":41}"#.into()).unwrap(),
            outputs: RawValue::from_string("{}".into()).unwrap(),
            subject: Some(ada.to_hex()),
            sealed: Some(vec!["email".into()]),
            sealed_inputs: Some(sealed),
            explanation: None,
            signature: None,
        });
        let feedback = LogRecord::Feedback(FeedbackRecord {
            id,
            time_ms: 20,
            deployment: "d".into(),
            label: Some(RawValue::from_string("1".into()).unwrap()),
            reward: None,
            ranking: None,
            clicked: None,
        });
        let files = Files(
            [
                // Replica `a` took the feedback; replica `b` served the prediction.
                (
                    "predictions/d/2026-12-03/a-1.parquet".to_string(),
                    crate::archive::to_parquet(&[feedback]).unwrap(),
                ),
                (
                    "predictions/d/2026-12-03/b-1.parquet".to_string(),
                    crate::archive::to_parquet(&[prediction]).unwrap(),
                ),
                (
                    "predictions/d/2026-12-03/c-1.parquet".to_string(),
                    b"not parquet".to_vec(),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let export = export_subject(&files, &OneKey(key), ada).await.unwrap();
        assert_eq!(export.predictions.len(), 1);
        let (p, fb) = &export.predictions[0];
        assert_eq!(p.inputs.get(), r#"{"age":41,"email":"ada@example.org"}"#);
        assert_eq!(fb.len(), 1, "the other replica's feedback is found");
        assert_eq!(export.unreadable, ["predictions/d/2026-12-03/c-1.parquet"]);
    }
}

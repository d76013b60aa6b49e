//! The durable prediction log: every served row (and every feedback) is appended to local segment
//! files, one length-prefixed, CRC-checked record at a time.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload (JSON)`. With [`Durability::Default`]
//! the request's own task writes its records with one `write` under a short lock and is answered
//! once they are in the file (a killed process loses nothing acknowledged); a syncer thread
//! `fdatasync`s every few milliseconds. With [`Durability::Fsync`] a writer thread batches the
//! records of every waiting request into one `write` and one `fdatasync` before any of them is
//! answered (group commit: power loss loses nothing acknowledged). On open, a torn tail is cut at
//! the last valid record.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::record::{ExplanationRecord, FeedbackRecord, LogRecord, PredictionRecord};
use crate::spilled_index::{self, SpilledIndex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answer after the records are written to the segment; fdatasync every `sync_interval`.
    Default,
    /// Answer after the batch holding the records is fdatasync'ed.
    Fsync,
}

/// A segment rolls after this many bytes unless configured otherwise.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// The most a segment may hold: offsets in the index are u32, so segments stay below 4 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 3 << 30;
/// A segment rolls after this long unless configured otherwise.
pub const DEFAULT_SEGMENT_AGE: Duration = Duration::from_secs(300);
/// Ids the log keeps in memory (16 bytes each, about 64 MiB) unless configured otherwise; the
/// oldest sealed segments' ids beyond it move to index files on disk.
pub const DEFAULT_INDEX_ENTRIES: usize = 4_000_000;

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    pub sync_interval: Duration,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    /// Ids kept in memory; beyond it, sealed segments' ids go to disk (at least 1).
    pub index_entries: usize,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>, durability: Durability) -> Self {
        Self {
            dir: dir.into(),
            durability,
            sync_interval: Duration::from_millis(5),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_age: DEFAULT_SEGMENT_AGE,
            index_entries: DEFAULT_INDEX_ENTRIES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("prediction log I/O: {0}")]
    Io(#[from] io::Error),
    #[error("the prediction log writer has stopped")]
    Stopped,
    /// A frame whose CRC held but whose payload is not a log record.
    #[error("a prediction log record is not readable: {0}")]
    Record(#[source] serde_json::Error),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
}

#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    /// Where the record's frame starts; its length is in the frame header.
    offset: u64,
}

/// Prediction ids are UUIDv7: 74 random bits, so folding the halves is a good enough hash and
/// much cheaper than SipHash on the write path.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(b))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Keyed by the id's low 64 bits (62 of them random in a UUIDv7): 16 bytes per entry instead of
/// 48, which matters at hundreds of thousands of rows a second. A read checks the full id.
type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

fn short_id(id: u128) -> u64 {
    id as u64
}

#[derive(Default)]
struct SegmentIndex {
    /// Frame offset of each prediction within the segment (segments stay below 4 GiB).
    predictions: IdMap<u32>,
    feedback: IdMap<Vec<u32>>,
    /// Set once this sealed segment's ids moved to disk (the maps are then empty).
    spilled: Option<Arc<SpilledIndex>>,
}

impl SegmentIndex {
    fn entries(&self) -> usize {
        self.predictions.len() + self.feedback.values().map(Vec::len).sum::<usize>()
    }

    fn spill_entries(&self) -> Vec<(u64, u8, u32)> {
        let predictions = self
            .predictions
            .iter()
            .map(|(id, o)| (*id, spilled_index::PREDICTION, *o));
        let feedback = self.feedback.iter().flat_map(|(id, offsets)| {
            offsets
                .iter()
                .map(move |o| (*id, spilled_index::FEEDBACK, *o))
        });
        predictions.chain(feedback).collect()
    }
}

/// Where each id's records are, per local segment: dropping an archived segment is one map
/// removal, never a scan of every id under the lock the writers need. At most `budget` entries
/// are held in memory (see [`PredictionLog::spill_index`]).
struct Index {
    segments: std::collections::BTreeMap<u64, SegmentIndex>,
    budget: usize,
    in_memory: usize,
}

impl Index {
    fn new(budget: usize) -> Self {
        Index {
            segments: Default::default(),
            budget: budget.max(1),
            in_memory: 0,
        }
    }

    fn remove(&mut self, seq: u64) -> Option<SegmentIndex> {
        let removed = self.segments.remove(&seq)?;
        self.in_memory = self.in_memory.saturating_sub(removed.entries());
        Some(removed)
    }

    /// The spilled segments' indexes, newest first, to search outside the lock.
    fn spilled(&self) -> Vec<(u64, Arc<SpilledIndex>)> {
        self.segments
            .iter()
            .rev()
            .filter_map(|(seq, s)| s.spilled.clone().map(|f| (*seq, f)))
            .collect()
    }

    fn insert(&mut self, id: u128, kind: EntryKind, loc: Location) {
        let segment = self.segments.entry(loc.segment).or_default();
        let offset = loc.offset as u32;
        match kind {
            EntryKind::Prediction => {
                // A repeated id replaces its entry: the count follows what is held.
                if segment.predictions.insert(short_id(id), offset).is_none() {
                    self.in_memory += 1;
                }
            }
            EntryKind::Annotation => {
                segment
                    .feedback
                    .entry(short_id(id))
                    .or_default()
                    .push(offset);
                self.in_memory += 1;
            }
        }
    }

    fn prediction(&self, id: u128) -> Option<Location> {
        self.segments.iter().rev().find_map(|(seq, s)| {
            s.predictions.get(&short_id(id)).map(|o| Location {
                segment: *seq,
                offset: u64::from(*o),
            })
        })
    }

    fn feedback(&self, id: u128) -> Vec<Location> {
        self.segments
            .iter()
            .flat_map(|(seq, s)| {
                s.feedback
                    .get(&short_id(id))
                    .into_iter()
                    .flatten()
                    .map(|o| Location {
                        segment: *seq,
                        offset: u64::from(*o),
                    })
            })
            .collect()
    }
}

/// A record to append: its JSON payload, and the prediction id it is about.
pub struct Entry {
    pub id: u128,
    pub kind: EntryKind,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Prediction,
    /// A record about an earlier prediction: feedback, or an explanation computed on request.
    Annotation,
}

struct Job {
    entries: Vec<Entry>,
    ack: tokio::sync::oneshot::Sender<Result<(), String>>,
}

pub struct PredictionLog {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    state: Arc<Mutex<Writer>>,
    durability: Durability,
    current_seq: Arc<AtomicU64>,
    replica: String,
    index: Arc<Mutex<Index>>,
    dir: PathBuf,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    recovered: RecoveryReport,
}

#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: usize,
    pub truncated_bytes: u64,
}

/// Nice 19 for the calling thread only (Linux schedules threads individually).
fn lower_thread_priority() {
    // SAFETY: setpriority with PRIO_PROCESS and the caller's own thread id touches nothing else.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

impl PredictionLog {
    /// This log directory's replica id (in archive file names and metrics reports).
    pub fn replica(&self) -> &str {
        &self.replica
    }
}

/// A stable id for this log directory, so archives from several serving replicas never collide.
fn replica_id(dir: &Path) -> io::Result<String> {
    let path = dir.join("replica-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:012}.log"))
}

/// A spilled segment's id index (see `spilled_index.rs`).
fn index_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:012}.idx"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("segment-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Frames one payload.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A frame's 8-byte header: the payload's length, then its CRC-32, little-endian.
fn frame_header(head: &[u8]) -> (u64, u32) {
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    (u64::from(word(0)), word(4))
}

/// Calls `each` with the payload of every intact frame of the segment file at `path`, in
/// order, reading one frame at a time; returns how many there were. Stops at the first torn
/// or corrupt frame, as [`scan`] does.
fn for_each_frame(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), LogError>,
) -> Result<usize, LogError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let (mut pos, mut frames) = (0u64, 0usize);
    let (mut head, mut payload) = ([0u8; 8], Vec::new());
    while pos + 8 <= len {
        if reader.read_exact(&mut head).is_err() {
            break;
        }
        let (size, crc) = frame_header(&head);
        // A length past the file's end is a torn frame, never an allocation.
        if pos + 8 + size > len {
            break;
        }
        payload.resize(size as usize, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        each(&payload)?;
        frames += 1;
        pos += 8 + size;
    }
    Ok(frames)
}

/// Reads valid frames from the start of `bytes`: (offset, payload) pairs and where validity ends.
fn scan(bytes: &[u8]) -> (Vec<(u64, &[u8])>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let (len, crc) = frame_header(head);
        let len = len as usize;
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push((pos as u64, payload));
        pos += 8 + len;
    }
    (out, pos as u64)
}

fn entry_id_kind(payload: &[u8]) -> Option<(u128, EntryKind)> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(alias = "prediction_id")]
        id: uuid::Uuid,
    }
    let head: Head = serde_json::from_slice(payload).ok()?;
    let kind = match head.kind {
        "prediction" => EntryKind::Prediction,
        "feedback" | "explanation" => EntryKind::Annotation,
        _ => return None,
    };
    Some((head.id.as_u128(), kind))
}

impl PredictionLog {
    /// Opens (and recovers) the log in `config.dir`, and starts the writer and syncer threads.
    pub fn open(config: LogConfig) -> Result<Self, LogError> {
        std::fs::create_dir_all(&config.dir)?;
        // Index files are rebuilt from the segments: a stale one must not answer for them.
        for entry in std::fs::read_dir(&config.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("segment-")
                && (name.ends_with(".idx") || name.ends_with(".idx.tmp"))
            {
                std::fs::remove_file(entry.path())?;
            }
        }
        let mut index = Index::new(config.index_entries);
        let mut report = RecoveryReport::default();
        let segments = list_segments(&config.dir)?;
        for seq in &segments {
            let path = segment_path(&config.dir, *seq);
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let (frames, valid) = scan(&bytes);
            if valid < bytes.len() as u64 {
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid)?;
                f.sync_all()?;
                report.truncated_bytes += bytes.len() as u64 - valid;
                tracing::warn!(segment = %path.display(), kept = valid, dropped = bytes.len() as u64 - valid, "prediction log: cut a torn tail");
            }
            for (offset, payload) in frames {
                let loc = Location {
                    segment: *seq,
                    offset,
                };
                if let Some((id, kind)) = entry_id_kind(payload) {
                    index.insert(id, kind, loc);
                }
                report.records += 1;
            }
            report.segments += 1;
        }
        let next_seq = segments.last().map_or(1, |s| s + 1);
        let index = Arc::new(Mutex::new(index));
        let (tx, rx) = mpsc::channel::<Job>();
        let current_seq = Arc::new(AtomicU64::new(next_seq));
        let writer = Writer::start(config.clone(), next_seq, index.clone(), current_seq.clone())?;
        let state = Arc::new(Mutex::new(writer));
        let group = state.clone();
        let handle = std::thread::Builder::new()
            .name("mltrail-predlog".into())
            .spawn(move || group_commit(group, rx))?;
        let replica = replica_id(&config.dir)?;
        let log = Self {
            tx: Mutex::new(Some(tx)),
            state,
            durability: config.durability,
            current_seq,
            replica,
            index,
            dir: config.dir,
            writer: Mutex::new(Some(handle)),
            recovered: report,
        };
        log.spill_index()?;
        Ok(log)
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovered
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends entries; resolves once they are as durable as the configured level promises.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<(), LogError> {
        if self.durability == Durability::Default {
            // Written by the request's own task: one short critical section and one write(2) into
            // the page cache, no hand-off to another thread.
            let mut writer = self.state.lock().map_err(|_| LogError::Stopped)?;
            if writer.closed {
                return Err(LogError::Stopped);
            }
            return writer.write_entries(entries.iter()).map_err(LogError::Io);
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        {
            let tx = self.tx.lock().map_err(|_| LogError::Stopped)?;
            tx.as_ref()
                .ok_or(LogError::Stopped)?
                .send(Job { entries, ack })
                .map_err(|_| LogError::Stopped)?;
        }
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LogError::Io(io::Error::other(e))),
            Err(_) => Err(LogError::Stopped),
        }
    }

    fn read(&self, loc: Location) -> Result<LogRecord, LogError> {
        let file = File::open(segment_path(&self.dir, loc.segment))?;
        let mut head = [0u8; 4];
        file.read_exact_at(&mut head, loc.offset)?;
        let mut buf = vec![0u8; u32::from_le_bytes(head) as usize];
        file.read_exact_at(&mut buf, loc.offset + 8)?;
        serde_json::from_slice(&buf).map_err(LogError::Record)
    }

    /// Reads the records at `locs` that really are about `id` (the index keys on 64 bits).
    fn read_matching(&self, id: u128, locs: Vec<Location>) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        for loc in locs {
            let record = self.read(loc)?;
            if record.id().as_u128() == id {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Where `id`'s prediction and feedback are: the in-memory index under its lock, then the
    /// spilled segments' files outside it.
    fn locate(&self, id: u128) -> Result<(Option<Location>, Vec<Location>), LogError> {
        let (mut prediction, mut feedback, spilled) = {
            let index = self.index.lock().map_err(|_| LogError::Stopped)?;
            (index.prediction(id), index.feedback(id), index.spilled())
        };
        for (seq, file) in spilled {
            let at = |offset: u32| Location {
                segment: seq,
                offset: u64::from(offset),
            };
            if prediction.is_none() {
                prediction = file
                    .find(short_id(id), spilled_index::PREDICTION)?
                    .first()
                    .map(|o| at(*o));
            }
            feedback.extend(
                file.find(short_id(id), spilled_index::FEEDBACK)?
                    .into_iter()
                    .map(at),
            );
        }
        Ok((prediction, feedback))
    }

    pub fn contains(&self, id: u128) -> bool {
        self.locate(id).is_ok_and(|(p, _)| p.is_some())
    }

    /// The prediction record and its feedback records, if the id was served here.
    pub fn get(
        &self,
        id: u128,
    ) -> Result<Option<(PredictionRecord, Vec<FeedbackRecord>)>, LogError> {
        Ok(self.get_annotated(id)?.map(|(r, a)| (r, a.feedback)))
    }

    /// The prediction record and every record appended about it, if the id was served here.
    pub fn get_annotated(
        &self,
        id: u128,
    ) -> Result<Option<(PredictionRecord, Annotations)>, LogError> {
        let (Some(loc), later) = self.locate(id)? else {
            return Ok(None);
        };
        let Some(LogRecord::Prediction(record)) = self.read_matching(id, vec![loc])?.pop() else {
            return Ok(None);
        };
        Ok(Some((
            record,
            Annotations::of(self.read_matching(id, later)?),
        )))
    }

    /// What local segments hold about `id` (the prediction itself may be archived).
    pub fn local_annotations(&self, id: u128) -> Result<Annotations, LogError> {
        let (_, locs) = self.locate(id)?;
        Ok(Annotations::of(self.read_matching(id, locs)?))
    }

    /// Ids the in-memory index holds now (at most `LogConfig::index_entries` once
    /// [`Self::spill_index`] has run, plus what the current segment took since).
    pub fn indexed_in_memory(&self) -> usize {
        self.index.lock().map(|i| i.in_memory).unwrap_or(0)
    }

    /// Moves the oldest sealed segments' ids to index files on disk until the in-memory index
    /// is within its budget. The current segment stays in memory. Returns how many segments
    /// moved. Runs with the archiver, outside the writers' path: each segment's entries are
    /// copied under the lock, written without it, and only then dropped from memory.
    pub fn spill_index(&self) -> Result<usize, LogError> {
        let mut moved = 0;
        loop {
            let current = self.current_seq.load(Ordering::Acquire);
            let (seq, entries) = {
                let index = self.index.lock().map_err(|_| LogError::Stopped)?;
                if index.in_memory <= index.budget {
                    break;
                }
                let Some((seq, segment)) = index
                    .segments
                    .iter()
                    .find(|(seq, s)| **seq < current && s.spilled.is_none() && s.entries() > 0)
                else {
                    break;
                };
                (*seq, segment.spill_entries())
            };
            let path = index_path(&self.dir, seq);
            let count = entries.len();
            let file = Arc::new(spilled_index::write(&path, entries)?);
            let dropped = {
                let mut index = self.index.lock().map_err(|_| LogError::Stopped)?;
                match index.segments.get_mut(&seq) {
                    Some(segment) => {
                        let maps = (
                            std::mem::take(&mut segment.predictions),
                            std::mem::take(&mut segment.feedback),
                        );
                        segment.spilled = Some(file);
                        index.in_memory = index.in_memory.saturating_sub(count);
                        Some(maps)
                    }
                    None => None,
                }
            };
            if dropped.is_none() {
                // Archived meanwhile: its index file answers for nothing.
                std::fs::remove_file(&path)?;
            }
            drop(dropped); // freed outside the lock
            moved += 1;
        }
        Ok(moved)
    }

    /// Every record in every segment, oldest first (for export). Frames that are not log
    /// records are skipped.
    pub fn records(dir: &Path) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        for seq in list_segments(dir)? {
            let mut bytes = Vec::new();
            File::open(segment_path(dir, seq))?.read_to_end(&mut bytes)?;
            out.extend(
                scan(&bytes)
                    .0
                    .into_iter()
                    .filter_map(|(_, payload)| serde_json::from_slice(payload).ok()),
            );
        }
        Ok(out)
    }

    /// Rolls the current segment when it holds records and is older than the segment age, so
    /// an idle deployment's last records still get archived (and seen by monitors) on time.
    /// Returns whether it rolled.
    pub fn seal_if_due(&self) -> Result<bool, LogError> {
        let mut writer = self.state.lock().map_err(|_| LogError::Stopped)?;
        if writer.closed
            || writer.written == 0
            || writer.opened.elapsed() < writer.config.segment_age
        {
            return Ok(false);
        }
        writer.roll()?;
        Ok(true)
    }

    /// Segments no longer written to (older than the writer's current one), oldest first.
    pub fn sealed_segments(&self) -> Result<Vec<u64>, LogError> {
        let current = self.current_seq.load(Ordering::Acquire);
        Ok(list_segments(&self.dir)?
            .into_iter()
            .filter(|s| *s < current)
            .collect())
    }

    /// Converts a sealed segment to Parquet, uploads it under
    /// `predictions/<deployment>/<date>/`, then forgets and removes it locally. Returns the
    /// artifact path, or `None` for an empty segment (removed without upload).
    pub async fn archive_segment(
        &self,
        seq: u64,
        deployment: &str,
        store: &dyn crate::archive::ArchiveStore,
    ) -> Result<Option<String>, LogError> {
        let path = segment_path(&self.dir, seq);
        // Reading, parsing and converting a segment is background work: a low-priority thread,
        // never a runtime worker, so serving keeps the CPU.
        let (done, result) = tokio::sync::oneshot::channel();
        let source = path.clone();
        let (deployment_name, replica) = (deployment.to_string(), self.replica.clone());
        std::thread::Builder::new()
            .name("mltrail-archive".into())
            .spawn(move || {
                lower_thread_priority();
                let converted = (|| -> Result<_, LogError> {
                    let mut file = crate::archive::ParquetFile::new().map_err(LogError::Archive)?;
                    let mut group: Vec<LogRecord> = Vec::with_capacity(crate::archive::ROWS_PER_GROUP);
                    let (mut kept, mut first_time) = (0usize, None::<i64>);
                    let mut leaves = crate::segment_tree::SegmentLeaves::default();
                    // A frame and a row group at a time: memory follows the group, not the
                    // segment (reading a 64 MiB segment whole swung the soak's RSS by as much).
                    let frames = for_each_frame(&source, |payload| {
                        if let Ok(record) = serde_json::from_slice::<LogRecord>(payload) {
                            first_time = Some(first_time.map_or(record.time_ms(), |t: i64| t.min(record.time_ms())));
                            leaves.push(&record).map_err(|e| LogError::Archive(e.into()))?;
                            group.push(record);
                            kept += 1;
                            if group.len() == crate::archive::ROWS_PER_GROUP {
                                file.write(&group).map_err(LogError::Archive)?;
                                group.clear();
                            }
                        }
                        Ok(())
                    })?;
                    file.write(&group).map_err(LogError::Archive)?;
                    // A frame whose CRC holds but which is no log record was not written by
                    // this log; it cannot go into the archive's columns. Say so.
                    if kept < frames {
                        tracing::warn!(segment = seq, skipped = frames - kept, "prediction log: frames that are not log records are left out of the archive");
                    }
                    // The file's name follows from its records' root, worked out here too.
                    let Some(summary) = first_time.and_then(|t| {
                        let day = mltrail_core::time::utc_date(t);
                        leaves.archive_summary(&deployment_name, &day, &replica, seq)
                    }) else {
                        return Ok(None);
                    };
                    let parquet = file.finish().map_err(LogError::Archive)?;
                    Ok(Some((parquet, summary)))
                })();
                let _ = done.send(converted);
            })?;
        let converted = result.await.map_err(|_| LogError::Stopped)??;
        let mut artifact = None;
        if let Some((parquet, summary)) = converted {
            store
                .put(&summary.artifact, parquet)
                .await
                .map_err(|e| LogError::Archive(e.into()))?;
            // The segment is forgotten locally only once the trail holds its summary; a
            // failure here leaves it for the next round, which uploads and records it again.
            let recorded = store
                .record_segment(&summary)
                .await
                .map_err(|e| LogError::Archive(e.into()))?;
            // Retrying would never succeed, and would hold every later segment back: the
            // file is archived, and the trail's other summary makes each of its records'
            // traces fail, which is the alarm an auditor needs.
            if let crate::archive::Recorded::Conflict(why) = recorded {
                tracing::error!(artifact = %summary.artifact, reason = %why, "the audit trail holds another summary for this archived file; its predictions' proofs will fail");
            }
            artifact = Some(summary.artifact);
        }
        let dropped = self
            .index
            .lock()
            .ok()
            .and_then(|mut index| index.remove(seq));
        if dropped.as_ref().is_some_and(|d| d.spilled.is_some()) {
            std::fs::remove_file(index_path(&self.dir, seq))?;
        }
        drop(dropped); // freed outside the lock
        std::fs::remove_file(&path)?;
        Ok(artifact)
    }

    /// Stops accepting records, waits for the writer to finish and sync.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(handle) = self.writer.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
        if let Ok(mut writer) = self.state.lock() {
            writer.close();
        }
    }
}

impl Drop for PredictionLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the syncer thread fdatasyncs: the current segment, segments rolled since its last pass,
/// and whether the directory gained a segment.
struct SyncTargets {
    current: Arc<File>,
    retired: Vec<Arc<File>>,
    dir_dirty: bool,
}

struct Writer {
    config: LogConfig,
    seq: u64,
    file: Arc<File>,
    written: u64,
    opened: Instant,
    index: Arc<Mutex<Index>>,
    dirty: Arc<AtomicBool>,
    sync_target: Arc<Mutex<SyncTargets>>,
    syncs: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    current_seq: Arc<AtomicU64>,
    buffer: Vec<u8>,
    closed: bool,
    /// A failed write could not be cut off: the next batch goes to a new segment.
    must_roll: bool,
    /// Fsync durability: a segment was created and the directory not yet synced.
    dir_unsynced: bool,
    /// Default durability's syncer thread, joined on close so nothing touches the files after.
    syncer: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(
        config: LogConfig,
        seq: u64,
        index: Arc<Mutex<Index>>,
        current_seq: Arc<AtomicU64>,
    ) -> io::Result<Self> {
        let file = Arc::new(
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(segment_path(&config.dir, seq))?,
        );
        // The directory entry of a new segment must survive a crash too.
        File::open(&config.dir)?.sync_all()?;
        let sync_target = Arc::new(Mutex::new(SyncTargets {
            current: file.clone(),
            retired: Vec::new(),
            dir_dirty: false,
        }));
        let dirty = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let syncs = Arc::new(AtomicU64::new(0));
        let mut syncer = None;
        if config.durability == Durability::Default {
            let (dirty, targets, stop, syncs, every, dir) = (
                dirty.clone(),
                sync_target.clone(),
                stop.clone(),
                syncs.clone(),
                config.sync_interval,
                config.dir.clone(),
            );
            syncer = Some(std::thread::Builder::new().name("mltrail-predlog-sync".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    let was_dirty = dirty.swap(false, Ordering::AcqRel);
                    // Take what to sync under the lock, then fsync outside it: a slow disk must
                    // never hold up the writers (who only swap files in on a roll).
                    let (current, retired, dir_dirty) = match targets.lock() {
                        Ok(mut t) => (t.current.clone(), std::mem::take(&mut t.retired), std::mem::take(&mut t.dir_dirty)),
                        Err(_) => break,
                    };
                    for f in retired.iter().chain(was_dirty.then_some(&current)) {
                        if let Err(e) = f.sync_data() {
                            tracing::error!(error = %e, "prediction log: fdatasync failed");
                        }
                        syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    if dir_dirty {
                        if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
                            tracing::error!(error = %e, "prediction log: directory fsync failed");
                        }
                    }
                }
            })?);
        }
        Ok(Self {
            config,
            seq,
            file,
            written: 0,
            opened: Instant::now(),
            index,
            dirty,
            sync_target,
            syncs,
            stop,
            current_seq,
            buffer: Vec::new(),
            closed: false,
            must_roll: false,
            dir_unsynced: false,
            syncer,
        })
    }

    fn roll(&mut self) -> io::Result<()> {
        let next = Arc::new(
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(segment_path(&self.config.dir, self.seq + 1))?,
        );
        match self.config.durability {
            // Every batch of the old segment is already fdatasync'ed; only the new name needs
            // it, and the first batch's sync does it (a failure there must not leave the
            // writer pointing at the old segment while the new file already exists).
            Durability::Fsync => self.dir_unsynced = true,
            // The syncer finishes the old segment and the directory within a sync interval.
            Durability::Default => {
                if let Ok(mut targets) = self.sync_target.lock() {
                    let old = std::mem::replace(&mut targets.current, next.clone());
                    targets.retired.push(old);
                    targets.dir_dirty = true;
                }
            }
        }
        self.file = next;
        self.seq += 1;
        self.current_seq.store(self.seq, Ordering::Release);
        self.written = 0;
        self.opened = Instant::now();
        self.must_roll = false;
        Ok(())
    }

    /// Fsync durability: the batch's data, then the directory if a segment was created since.
    fn sync_batch(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        if self.dir_unsynced {
            File::open(&self.config.dir)?.sync_all()?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Frames and writes entries with one write(2); fdatasyncs first-hand in fsync mode.
    fn write_entries<'e>(&mut self, entries: impl Iterator<Item = &'e Entry>) -> io::Result<()> {
        if self.must_roll
            || self.written >= self.config.segment_bytes
            || self.opened.elapsed() >= self.config.segment_age
        {
            self.roll()?;
        }
        let mut buf = std::mem::take(&mut self.buffer);
        buf.clear();
        let mut located = Vec::new();
        for entry in entries {
            let loc = Location {
                segment: self.seq,
                offset: self.written + buf.len() as u64,
            };
            frame(&entry.payload, &mut buf);
            located.push((entry.id, entry.kind, loc));
        }
        let stored = (&*self.file)
            .write_all(&buf)
            .and_then(|()| match self.config.durability {
                Durability::Fsync => self.sync_batch(),
                Durability::Default => Ok(()),
            });
        let len = buf.len() as u64;
        self.buffer = buf;
        if let Err(e) = stored {
            // A full disk can take part of the batch. Cut it off, so the next batch starts on a
            // frame boundary at the offset the index expects; left in place, it would read as a
            // torn tail at recovery and cut every later (acknowledged) record with it.
            let partial = self
                .file
                .metadata()
                .map_or(0, |m| m.len())
                .saturating_sub(self.written);
            if partial > 0 {
                tracing::warn!(error = %e, bytes = partial, "prediction log: cut a write that failed part-way");
            }
            if let Err(cut) = self.file.set_len(self.written) {
                // Whole frames of the failed batch may then stay in the old segment: they are
                // recovered and archived although their requests were answered with an error.
                tracing::error!(error = %cut, "prediction log: cannot cut a failed write; the next batch starts a new segment");
                self.must_roll = true;
            }
            return Err(e);
        }
        self.written += len;
        if self.config.durability == Durability::Default {
            self.dirty.store(true, Ordering::Release);
        }
        if let Ok(mut index) = self.index.lock() {
            for (id, kind, loc) in located {
                index.insert(id, kind, loc);
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(syncer) = self.syncer.take() {
            let _ = syncer.join();
        }
        let retired = self
            .sync_target
            .lock()
            .map(|mut t| std::mem::take(&mut t.retired))
            .unwrap_or_default();
        for f in retired.iter().chain(std::iter::once(&self.file)) {
            if let Err(e) = f.sync_data() {
                tracing::error!(error = %e, "prediction log: final fdatasync failed");
            }
        }
        if let Err(e) = File::open(&self.config.dir).and_then(|d| d.sync_all()) {
            tracing::error!(error = %e, "prediction log: final directory fsync failed");
        }
        tracing::debug!(
            syncs = self.syncs.load(Ordering::Relaxed),
            "prediction log closed"
        );
    }
}

/// Fsync durability: batches every queued request into one write and one fdatasync, then
/// answers them all (group commit).
fn group_commit(state: Arc<Mutex<Writer>>, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let result = match state.lock() {
            Ok(mut writer) if !writer.closed => writer
                .write_entries(jobs.iter().flat_map(|j| &j.entries))
                .map_err(|e| e.to_string()),
            _ => Err("the prediction log is closed".to_string()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "prediction log: write failed; requests in this batch get an error");
        }
        for job in jobs {
            let _ = job.ack.send(result.clone());
        }
    }
}

/// The records appended about a prediction: its feedback, and the newest explanation computed
/// on request.
#[derive(Debug, Default)]
pub struct Annotations {
    pub feedback: Vec<FeedbackRecord>,
    pub explanation: Option<ExplanationRecord>,
}

impl Annotations {
    fn of(records: Vec<LogRecord>) -> Self {
        let mut out = Annotations::default();
        for record in records {
            match record {
                LogRecord::Feedback(f) => out.feedback.push(f),
                LogRecord::Explanation(e) => {
                    if out
                        .explanation
                        .as_ref()
                        .is_none_or(|k| k.time_ms <= e.time_ms)
                    {
                        out.explanation = Some(e);
                    }
                }
                LogRecord::Prediction(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_from_the_file_are_the_frames_scanned_in_memory() {
        let frame = |payload: &[u8]| {
            let mut f = Vec::new();
            super::frame(payload, &mut f);
            f
        };
        let mut bytes = Vec::new();
        for p in [&b"{\"a\":1}"[..], b"", b"third frame"] {
            bytes.extend(frame(p));
        }
        let good = bytes.len();
        // A torn tail: a header claiming more than the file holds, then a corrupt frame.
        bytes.extend(frame(b"torn at the end"));
        bytes.truncate(good + 12);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        for tail in [
            &bytes[..],
            &[bytes[..good].to_vec(), {
                let mut bad = frame(b"corrupt");
                bad[9] ^= 1;
                bad
            }]
            .concat()[..],
        ] {
            std::fs::write(&path, tail).unwrap();
            let mut read = Vec::new();
            let n = for_each_frame(&path, |p| {
                read.push(p.to_vec());
                Ok(())
            })
            .unwrap();
            let scanned: Vec<Vec<u8>> = scan(tail).0.iter().map(|(_, p)| p.to_vec()).collect();
            assert_eq!((n, &read), (3, &scanned));
        }
    }

    /// A prediction record whose latency field carries `n`, to tell records apart.
    fn prediction(id: u128, n: u32) -> Entry {
        let payload = serde_json::to_vec(&serde_json::json!({"type": "prediction",
            "id": uuid::Uuid::from_u128(id), "time_ms": 1, "latency_us": n, "inputs": {}, "outputs": {}}))
        .unwrap();
        Entry {
            id,
            kind: EntryKind::Prediction,
            payload,
        }
    }

    #[tokio::test]
    async fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(LogConfig::new(dir.path(), Durability::Fsync)).unwrap();
        for i in 1..=10u128 {
            log.append(vec![prediction(i, i as u32)]).await.unwrap();
        }
        log.close();
        // Simulate a crash mid-write: half a frame at the end of the segment.
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let log = PredictionLog::open(LogConfig::new(dir.path(), Durability::Default)).unwrap();
        assert_eq!(log.recovery().records, 10);
        assert_eq!(log.recovery().truncated_bytes, 7);
        let (record, feedback) = log.get(7).unwrap().expect("prediction 7");
        assert_eq!(record.latency_us, 7);
        assert!(feedback.is_empty());
        assert!(log.get(99).unwrap().is_none());
    }

    #[tokio::test]
    async fn an_idle_segment_is_sealed_once_it_outlives_its_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LogConfig::new(dir.path(), Durability::Default);
        config.segment_age = std::time::Duration::from_millis(50);
        let log = PredictionLog::open(config).unwrap();
        assert!(!log.seal_if_due().unwrap(), "an empty segment stays open");
        log.append(vec![prediction(1, 1)]).await.unwrap();
        assert!(!log.seal_if_due().unwrap(), "too young");
        assert!(log.sealed_segments().unwrap().is_empty());
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert!(log.seal_if_due().unwrap());
        assert_eq!(log.sealed_segments().unwrap(), [1]);
        assert!(!log.seal_if_due().unwrap(), "the new segment is empty");
        assert_eq!(log.get(1).unwrap().unwrap().0.latency_us, 1);
    }

    /// An archive whose trail already holds another summary for every file.
    #[derive(Default)]
    struct Conflicting(std::sync::Mutex<Vec<String>>);

    impl crate::archive::ArchiveReader for Conflicting {
        fn list<'a>(
            &'a self,
            _: &'a str,
        ) -> crate::deployment::BoxFuture<'a, Result<Vec<String>, crate::archive::StorageError>>
        {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn get<'a>(
            &'a self,
            _: &'a str,
        ) -> crate::deployment::BoxFuture<'a, Result<Vec<u8>, crate::archive::StorageError>>
        {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    impl crate::archive::ArchiveStore for Conflicting {
        fn put<'a>(
            &'a self,
            path: &'a str,
            _: Vec<u8>,
        ) -> crate::deployment::BoxFuture<'a, Result<(), crate::archive::StorageError>> {
            self.0.lock().unwrap().push(path.to_string());
            Box::pin(async { Ok(()) })
        }
        fn record_segment<'a>(
            &'a self,
            _: &'a crate::segment_tree::ArchivedSegment,
        ) -> crate::deployment::BoxFuture<
            'a,
            Result<crate::archive::Recorded, crate::archive::StorageError>,
        > {
            Box::pin(async { Ok(crate::archive::Recorded::Conflict("taken".into())) })
        }
    }

    #[tokio::test]
    async fn a_summary_the_trail_refuses_for_good_does_not_hold_later_segments_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LogConfig::new(dir.path(), Durability::Default);
        config.segment_age = std::time::Duration::from_millis(20);
        let log = PredictionLog::open(config).unwrap();
        for i in 1..=2u128 {
            log.append(vec![prediction(i, 1)]).await.unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            assert!(log.seal_if_due().unwrap());
        }
        let store = Conflicting::default();
        for seq in log.sealed_segments().unwrap() {
            let artifact = log.archive_segment(seq, "d", &store).await.unwrap();
            assert!(artifact.is_some_and(|a| a.starts_with("predictions/d/")));
        }
        assert!(log.sealed_segments().unwrap().is_empty());
        assert_eq!(store.0.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn feedback_attaches_to_its_prediction() {
        let dir = tempfile::tempdir().unwrap();
        let log = PredictionLog::open(LogConfig::new(dir.path(), Durability::Default)).unwrap();
        log.append(vec![prediction(5, 1)]).await.unwrap();
        let payload = serde_json::to_vec(
            &serde_json::json!({"type": "feedback", "id": uuid::Uuid::from_u128(5), "time_ms": 2, "label": 1}),
        )
        .unwrap();
        log.append(vec![Entry {
            id: 5,
            kind: EntryKind::Annotation,
            payload,
        }])
        .await
        .unwrap();
        let (_, feedback) = log.get(5).unwrap().unwrap();
        assert_eq!(feedback.len(), 1);
        assert_eq!(feedback[0].label.as_ref().map(|l| l.get()), Some("1"));
    }

    fn feedback(id: u128, label: u32) -> Entry {
        let payload = serde_json::to_vec(&serde_json::json!({"type": "feedback",
            "id": uuid::Uuid::from_u128(id), "time_ms": 2, "label": label}))
        .unwrap();
        Entry {
            id,
            kind: EntryKind::Annotation,
            payload,
        }
    }

    #[tokio::test]
    async fn the_in_memory_index_stays_within_its_budget_and_old_ids_are_found_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let config = || {
            let mut c = LogConfig::new(dir.path(), Durability::Default);
            c.segment_bytes = 1; // a segment per append
            c.index_entries = 5;
            c
        };
        let log = PredictionLog::open(config()).unwrap();
        for id in 1..=30u128 {
            log.append(vec![prediction(id, id as u32)]).await.unwrap();
        }
        log.append(vec![feedback(1, 7), feedback(1, 8)])
            .await
            .unwrap();
        assert!(log.indexed_in_memory() > 5);
        assert!(log.spill_index().unwrap() > 0);
        assert!(log.indexed_in_memory() <= 5, "{}", log.indexed_in_memory());
        let check = |log: &PredictionLog| {
            for id in 1..=30u128 {
                let (record, _) = log.get(id).unwrap().unwrap_or_else(|| panic!("id {id}"));
                assert_eq!(record.latency_us, id as i64);
            }
            let (_, labels) = log.get(1).unwrap().unwrap();
            let mut labels: Vec<&str> = labels
                .iter()
                .filter_map(|f| f.label.as_ref().map(|l| l.get()))
                .collect();
            labels.sort_unstable();
            assert_eq!(labels, ["7", "8"]);
            assert!(log.get(31).unwrap().is_none());
            assert!(log.contains(2));
        };
        check(&log);
        log.close();
        drop(log);
        // Reopened, the index is rebuilt from the segments and spilled again.
        let log = PredictionLog::open(config()).unwrap();
        assert!(log.indexed_in_memory() <= 5, "{}", log.indexed_in_memory());
        check(&log);
    }

    #[test]
    fn a_flipped_byte_ends_the_valid_prefix() {
        let mut bytes = Vec::new();
        frame(b"{\"a\":1}", &mut bytes);
        frame(b"{\"a\":2}", &mut bytes);
        let first_len = bytes.len() / 2;
        bytes[first_len + 9] ^= 1;
        let (frames, valid) = scan(&bytes);
        assert_eq!(frames.len(), 1);
        assert_eq!(valid as usize, first_len);
    }
}

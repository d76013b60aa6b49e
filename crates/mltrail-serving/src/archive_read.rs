//! Reading only what a time range needs of the archive: the day folders that can hold it (a
//! file is named by its first record's day, and a segment rolls within a day, so a file of day
//! D holds nothing after the start of D+2, give or take a moment), then in each file the footer,
//! and of its row groups only those
//! whose `time_ms` statistics overlap the range. `predictions export --since/--until` and
//! `monitor check` read a 10M-row archive this way (docs/benchmarks.md).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;

use crate::archive::{visit_batches, ArchiveError, ArchiveReader};
use crate::record::LogRecord;

/// Milliseconds since the epoch, both ends included; `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl TimeRange {
    pub fn contains(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }

    /// Whether a record with this time (or none) belongs: one without a time only to an open
    /// range, as a whole export includes it.
    fn admits(&self, time: Option<i64>) -> bool {
        match time {
            Some(t) => self.contains(t),
            None => *self == TimeRange::default(),
        }
    }

    fn overlaps(&self, min: i64, max: i64) -> bool {
        self.since.is_none_or(|s| max >= s) && self.until.is_none_or(|u| min <= u)
    }

    /// Whether the day folder `day` (`yyyy-mm-dd`) can hold records of the range: its files
    /// start on that day and a segment rolls within a day of opening (`--segment-seconds` is
    /// at most 86400), so they end before D+2; D+2 itself is allowed for, as a record's time is
    /// taken a moment before it reaches its segment.
    pub fn may_hold_day(&self, day: &str) -> bool {
        let first = self
            .since
            .map(|s| mltrail_core::time::utc_date(s.saturating_sub(2 * 86_400_000)));
        let last = self.until.map(mltrail_core::time::utc_date);
        first.is_none_or(|f| day >= f.as_str()) && last.is_none_or(|l| day <= l.as_str())
    }
}

/// What a read fetched and what it left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub files_read: usize,
    pub row_groups_read: usize,
    pub row_groups_skipped: usize,
    pub bytes_fetched: u64,
}

/// Footer bytes fetched first: most archive footers fit (27 columns, a dozen row groups).
const FIRST_TAIL: u64 = 64 << 10;

/// The records of `range` in the archived file `path` of `size` bytes, fetching its footer and
/// only the row groups whose `time_ms` statistics overlap the range (a row group without
/// statistics is read). Records outside the range are left out.
pub async fn read_between(
    archive: &dyn ArchiveReader,
    path: &str,
    size: u64,
    range: TimeRange,
    stats: &mut ReadStats,
) -> Result<Vec<LogRecord>, ArchiveError> {
    stats.files_read += 1;
    if size == 0 {
        // A listing that gave no size: the file is read whole.
        let bytes = archive.get(path).await?;
        stats.bytes_fetched += bytes.len() as u64;
        return tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            crate::archive::visit_parquet(Bytes::from(bytes), |view| {
                if range.admits(view.time_ms) {
                    out.extend(view.to_record());
                }
            })?;
            Ok(out)
        })
        .await?;
    }
    let metadata = footer(archive, path, size, stats).await?;
    let (wanted, skipped) = row_groups(&metadata, range);
    stats.row_groups_skipped += skipped;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    stats.row_groups_read += wanted.len();
    let mut parts = Vec::new();
    for span in spans(&metadata, &wanted) {
        stats.bytes_fetched += span.end - span.start;
        let bytes = archive.get_range(path, span.clone()).await?;
        parts.push((span.start, bytes));
    }
    let sparse = Sparse { size, parts };
    tokio::task::spawn_blocking(move || {
        let metadata =
            ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::default())?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(sparse, metadata)
            .with_row_groups(wanted);
        let mut out = Vec::new();
        visit_batches(builder.build()?, |view| {
            if range.admits(view.time_ms) {
                out.extend(view.to_record());
            }
        })?;
        Ok(out)
    })
    .await?
}

async fn footer(
    archive: &dyn ArchiveReader,
    path: &str,
    size: u64,
    stats: &mut ReadStats,
) -> Result<ParquetMetaData, ArchiveError> {
    let mut want = FIRST_TAIL.min(size);
    loop {
        let tail = archive.get_range(path, size - want..size).await?;
        stats.bytes_fetched += want;
        let mut reader = ParquetMetaDataReader::new();
        match reader.try_parse_sized(&tail, size) {
            Ok(()) => return Ok(reader.finish()?),
            // A footer larger than the first guess: fetch exactly what it says (once).
            Err(parquet::errors::ParquetError::NeedMoreData(needed))
                if (needed as u64) > want && (needed as u64) <= size =>
            {
                want = needed as u64;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The row groups to read, and how many were left out.
fn row_groups(metadata: &ParquetMetaData, range: TimeRange) -> (Vec<usize>, usize) {
    let column = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "time_ms");
    let mut wanted = Vec::new();
    for (i, group) in metadata.row_groups().iter().enumerate() {
        let bounds = column
            .and_then(|c| group.column(c).statistics())
            .and_then(|s| match s {
                Statistics::Int64(v) => Some((*v.min_opt()?, *v.max_opt()?)),
                _ => None,
            });
        if bounds.is_none_or(|(min, max)| range.overlaps(min, max)) {
            wanted.push(i);
        }
    }
    let skipped = metadata.num_row_groups() - wanted.len();
    (wanted, skipped)
}

/// The byte spans of `groups`' column chunks, adjacent ones merged (a row group's chunks are
/// contiguous, and so are consecutive row groups).
fn spans(metadata: &ParquetMetaData, groups: &[usize]) -> Vec<Range<u64>> {
    let mut spans: Vec<Range<u64>> = Vec::new();
    for &g in groups {
        for chunk in metadata.row_group(g).columns() {
            let (start, len) = chunk.byte_range();
            // A footer's offsets are the file's word: one past u64 is refused when fetched.
            let span = start..start.saturating_add(len);
            match spans.last_mut() {
                Some(last) if last.end == span.start => last.end = span.end,
                _ => spans.push(span),
            }
        }
    }
    spans
}

/// A file of which only some spans were fetched: the reader asks only for the chunks of the
/// row groups it was given.
struct Sparse {
    size: u64,
    parts: Vec<(u64, Bytes)>,
}

impl Length for Sparse {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Sparse {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let (offset, bytes) = self.part(start, 0)?;
        Ok(bytes::Buf::reader(bytes.slice(offset..)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let (offset, bytes) = self.part(start, length)?;
        Ok(bytes.slice(offset..offset + length))
    }
}

impl Sparse {
    fn part(&self, start: u64, length: usize) -> parquet::errors::Result<(usize, &Bytes)> {
        self.parts
            .iter()
            .find_map(|(at, bytes)| {
                let offset = usize::try_from(start.checked_sub(*at)?).ok()?;
                (offset.checked_add(length)? <= bytes.len()).then_some((offset, bytes))
            })
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!(
                    "bytes {start}..{} of the file were not fetched",
                    start.saturating_add(length as u64)
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ParquetFile, StorageError};
    use crate::deployment::BoxFuture;
    use std::sync::Mutex;

    /// An archive of one file that records which byte ranges were asked for.
    struct OneFile {
        bytes: Bytes,
        asked: Mutex<Vec<Range<u64>>>,
    }

    impl ArchiveReader for OneFile {
        fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, StorageError>> {
            Box::pin(async { Ok(vec!["f.parquet".to_string()]) })
        }
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>> {
            Box::pin(async { Ok(self.bytes.to_vec()) })
        }
        fn get_range<'a>(
            &'a self,
            _: &'a str,
            range: Range<u64>,
        ) -> BoxFuture<'a, Result<Bytes, StorageError>> {
            self.asked.lock().unwrap().push(range.clone());
            Box::pin(async move { Ok(self.bytes.slice(range.start as usize..range.end as usize)) })
        }
    }

    fn record(t: i64) -> LogRecord {
        let id = uuid::Uuid::now_v7();
        serde_json::from_str(&format!(
            r#"{{"type":"prediction","id":"{id}","time_ms":{t},"deployment":"d","model":"m","version":"1","inputs":{{"x":{t}}},"outputs":{{"y":1}}}}"#
        ))
        .unwrap()
    }

    /// Ten row groups of 100 records each, a second apart: a range inside the fourth group reads
    /// that group alone (and the footer), and returns exactly the records in the range.
    #[tokio::test]
    async fn only_the_row_groups_a_range_overlaps_are_fetched() {
        let mut file = ParquetFile::new().unwrap();
        let mut all = Vec::new();
        for g in 0..10 {
            let group: Vec<LogRecord> = (0..100).map(|r| record(g * 100_000 + r * 1000)).collect();
            file.write(&group).unwrap();
            all.extend(group);
        }
        let bytes = Bytes::from(file.finish().unwrap());
        let size = bytes.len() as u64;
        let archive = OneFile {
            bytes,
            asked: Mutex::new(Vec::new()),
        };
        let range = TimeRange {
            since: Some(310_000),
            until: Some(320_000),
        };
        let mut stats = ReadStats::default();
        let got = read_between(&archive, "f.parquet", size, range, &mut stats)
            .await
            .unwrap();
        let key = |r: &LogRecord| (r.id(), r.time_ms());
        let want: Vec<_> = all
            .iter()
            .filter(|r| range.contains(r.time_ms()))
            .map(key)
            .collect();
        assert_eq!(got.len(), 11);
        assert_eq!(got.iter().map(key).collect::<Vec<_>>(), want);
        assert_eq!((stats.row_groups_read, stats.row_groups_skipped), (1, 9));
        let fetched: u64 = archive
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.end - r.start)
            .sum();
        assert_eq!(fetched, stats.bytes_fetched);
        // The footer (the whole file here, as it is under 64 KiB) and one group's chunks.
        assert_eq!(archive.asked.lock().unwrap().len(), 2);

        // An open range reads every group; one after the last record reads none.
        let mut stats = ReadStats::default();
        let every = read_between(
            &archive,
            "f.parquet",
            size,
            TimeRange::default(),
            &mut stats,
        )
        .await
        .unwrap();
        assert_eq!((every.len(), stats.row_groups_read), (1000, 10));
        let mut stats = ReadStats::default();
        let later = TimeRange {
            since: Some(10_000_000),
            until: None,
        };
        let none = read_between(&archive, "f.parquet", size, later, &mut stats)
            .await
            .unwrap();
        assert_eq!((none.len(), stats.row_groups_read), (0, 0));
    }

    #[test]
    fn a_day_folder_is_read_from_two_days_before_since_to_the_day_of_until() {
        let day = 86_400_000;
        let range = TimeRange {
            since: Some(10 * day + 5),
            until: Some(12 * day + 5),
        };
        let date = |d: i64| mltrail_core::time::utc_date(d * day);
        assert!(!range.may_hold_day(&date(7)));
        assert!(range.may_hold_day(&date(8)));
        assert!(range.may_hold_day(&date(12)));
        assert!(!range.may_hold_day(&date(13)));
        assert!(TimeRange::default().may_hold_day("1970-01-01"));
    }
}

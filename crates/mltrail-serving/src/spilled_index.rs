//! A sealed segment's id index on disk. The prediction log keeps at most
//! `LogConfig::index_entries` ids in memory (16 bytes each): a deployment that cannot archive
//! for a while would otherwise grow without end. Beyond that, the oldest sealed segments' ids
//! move to a file beside the segment: its (id, kind, offset) entries sorted by id, 13 bytes
//! each, searched by bisection with positioned reads. Lookups of old predictions cost a few
//! reads; the writers never touch these files.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const ENTRY: u64 = 13;

/// What an entry is about, as stored in the file.
pub(crate) const PREDICTION: u8 = 0;
pub(crate) const FEEDBACK: u8 = 1;

pub(crate) struct SpilledIndex {
    file: File,
    entries: u64,
}

/// Writes `entries` (short id, kind, offset) to `path`, sorted, through a temporary file and a
/// rename, so a crash leaves either no file or a whole one.
pub(crate) fn write(path: &Path, mut entries: Vec<(u64, u8, u32)>) -> io::Result<SpilledIndex> {
    entries.sort_unstable();
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY as usize);
    for (id, kind, offset) in &entries {
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.push(*kind);
        bytes.extend_from_slice(&offset.to_le_bytes());
    }
    let tmp = path.with_extension("idx.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)?;
    Ok(SpilledIndex {
        file: File::open(path)?,
        entries: entries.len() as u64,
    })
}

impl SpilledIndex {
    fn entry(&self, i: u64) -> io::Result<(u64, u8, u32)> {
        let mut buf = [0u8; ENTRY as usize];
        self.file.read_exact_at(&mut buf, i * ENTRY)?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&buf[..8]);
        let mut offset = [0u8; 4];
        offset.copy_from_slice(&buf[9..]);
        Ok((u64::from_le_bytes(id), buf[8], u32::from_le_bytes(offset)))
    }

    /// The offsets of the `kind` entries about `id`, in offset order.
    pub(crate) fn find(&self, id: u64, kind: u8) -> io::Result<Vec<u32>> {
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.0 < id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        for i in lo..self.entries {
            let (found, k, offset) = self.entry(i)?;
            if found != id {
                break;
            }
            if k == kind {
                out.push(offset);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_entry_of_an_id_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment-1.idx");
        let entries = vec![
            (9, PREDICTION, 100),
            (3, PREDICTION, 0),
            (9, FEEDBACK, 300),
            (9, FEEDBACK, 200),
            (u64::MAX, PREDICTION, 7),
            (0, FEEDBACK, 1),
        ];
        let index = write(&path, entries).unwrap();
        assert_eq!(index.find(9, PREDICTION).unwrap(), [100]);
        assert_eq!(index.find(9, FEEDBACK).unwrap(), [200, 300]);
        assert_eq!(index.find(3, PREDICTION).unwrap(), [0]);
        assert_eq!(index.find(u64::MAX, PREDICTION).unwrap(), [7]);
        assert_eq!(index.find(0, FEEDBACK).unwrap(), [1]);
        assert!(index.find(4, PREDICTION).unwrap().is_empty());
        assert!(index.find(10, PREDICTION).unwrap().is_empty());
        let empty = write(&dir.path().join("e.idx"), Vec::new()).unwrap();
        assert!(empty.find(1, PREDICTION).unwrap().is_empty());
    }
}

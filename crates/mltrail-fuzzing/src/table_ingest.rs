//! CSV and Parquet ingest (`mltrail data add`, monitors' references): any file is read into a
//! table or refused with a `DataError`, never a panic. The first byte picks the format.

use mltrail_data::table::{Values, MISSING};
use std::io::Write;

/// mltrail-data catches the parquet crate's panics on malformed files and refuses the file;
/// libFuzzer's panic hook would still end the run at the panic, so the hook skips those.
fn tolerate_caught_parquet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The reader's own crates; a panic they raise outside the guarded Parquet read is
            // not caught and still fails the input when it unwinds.
            let in_parquet = info
                .location()
                .is_some_and(|l| l.file().contains("/parquet-") || l.file().contains("/arrow-"));
            if !in_parquet {
                previous(info);
            }
        }));
    });
}

pub fn run(data: &[u8]) {
    tolerate_caught_parquet_panics();
    let Some((&format, bytes)) = data.split_first() else {
        return;
    };
    let suffix = if format & 1 == 0 { ".csv" } else { ".parquet" };
    let Ok(mut file) = tempfile::Builder::new().suffix(suffix).tempfile() else {
        return;
    };
    if file.write_all(bytes).is_err() {
        return;
    }
    if let Ok(table) = mltrail_data::table::read(file.path()) {
        // Every column holds one value per row, and every text code names a label.
        for column in &table.columns {
            match &column.values {
                Values::Numeric { values, .. } => assert_eq!(values.len(), table.rows),
                Values::Text { labels, codes } => {
                    assert_eq!(codes.len(), table.rows);
                    assert!(codes
                        .iter()
                        .all(|&c| c == MISSING || (c as usize) < labels.len()));
                }
            }
        }
    }
}

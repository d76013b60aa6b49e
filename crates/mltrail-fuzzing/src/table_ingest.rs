//! CSV and Parquet ingest (`mltrail data add`, monitors' references): any file is read into a
//! table or refused with a `DataError`, never a panic. The first byte picks the format.

use mltrail_data::table::{Values, MISSING};
use std::io::Write;

pub fn run(data: &[u8]) {
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

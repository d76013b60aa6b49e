//! MLflow's search-filter grammar and `order_by` terms: any text is parsed or refused with an
//! error, never a panic.

use mltrail_core::filter::{parse_filter, parse_order_by};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(clauses) = parse_filter(text) {
        for clause in &clauses {
            // Formatting the AST must not panic either (errors and logs print it).
            let _ = format!("{clause:?}");
        }
    }
    let _ = parse_order_by(text);
}

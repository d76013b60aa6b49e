//! The drift report as a self-contained HTML page: the dataset verdict first, then one card per
//! column with the test, value, threshold, verdict and a reference-vs-current histogram in SVG.

use crate::drift::binning::{bin, value_counts};
use crate::drift::{ColumnDrift, DatasetDrift, Sample};

/// A histogram for the report: bin labels and the share of each sample in each bin.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
    /// The outer edges of numeric bins, printed under the axis.
    pub range: Option<(f64, f64)>,
}

fn short(v: f64) -> String {
    if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Evidently's bins for numeric columns (Sturges over both samples), else the 20 most frequent
/// reference values (the rest as "other").
pub fn histogram(reference: &Sample, current: &Sample) -> Histogram {
    let b = bin(reference, current, false);
    if let Some(edges) = b.edges {
        let labels = edges
            .windows(2)
            .map(|w| format!("{}–{}", short(w[0]), short(w[1])))
            .collect();
        let range = Some((edges[0], edges[edges.len() - 1]));
        return Histogram {
            labels,
            reference: b.reference,
            current: b.current,
            range,
        };
    }
    let (keys, rc, cc) = value_counts(reference, current);
    let (rn, cn) = (reference.len() as f64, current.len() as f64);
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|a, b| rc[*b].total_cmp(&rc[*a]).then(a.cmp(b)));
    let mut h = Histogram {
        labels: Vec::new(),
        reference: Vec::new(),
        current: Vec::new(),
        range: None,
    };
    for (rank, i) in order.iter().enumerate() {
        if rank < 20 {
            h.labels.push(keys[*i].clone());
            h.reference.push(rc[*i] / rn);
            h.current.push(cc[*i] / cn);
        } else if rank == 20 {
            h.labels.push("other".into());
            h.reference.push(rc[*i] / rn);
            h.current.push(cc[*i] / cn);
        } else {
            let last = h.labels.len() - 1;
            h.reference[last] += rc[*i] / rn;
            h.current[last] += cc[*i] / cn;
        }
    }
    h
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn svg(h: &Histogram) -> String {
    let (w, ht, pad) = (420.0, 150.0, 24.0);
    let n = h.labels.len().max(1) as f64;
    let max = h
        .reference
        .iter()
        .chain(&h.current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let slot = (w - 2.0 * pad) / n;
    let bar = (slot * 0.42).max(1.0);
    let mut out = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\" role=\"img\">", ht + 40.0, ht + 40.0);
    out.push_str(&format!(
        "<line x1=\"{pad}\" y1=\"{ht}\" x2=\"{}\" y2=\"{ht}\" stroke=\"#999\"/>",
        w - pad
    ));
    for (i, label) in h.labels.iter().enumerate() {
        let x = pad + i as f64 * slot;
        for (k, (share, color)) in [(h.reference[i], "#4c78a8"), (h.current[i], "#f58518")]
            .into_iter()
            .enumerate()
        {
            let bh = share / max * (ht - 10.0);
            out.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}: {} {:.2}%</title></rect>",
                x + k as f64 * bar,
                ht - bh,
                escape(label),
                if k == 0 { "reference" } else { "current" },
                share * 100.0
            ));
        }
        if h.range.is_none() && (h.labels.len() <= 12 || i == 0 || i + 1 == h.labels.len()) {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\" transform=\"rotate(-35 {:.1} {:.1})\">{}</text>",
                x + bar,
                ht + 12.0,
                x + bar,
                ht + 12.0,
                escape(label)
            ));
        }
    }
    if let Some((lo, hi)) = h.range {
        out.push_str(&format!(
            "<text x=\"{pad}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
            ht + 14.0,
            short(lo)
        ));
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            w - pad,
            ht + 14.0,
            short(hi)
        ));
    }
    out.push_str("</svg>");
    out
}

fn number(v: f64) -> String {
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// The whole page. `title` names the two samples (file names or dataset versions).
pub fn html(
    title: &str,
    columns: &[(ColumnDrift, Histogram)],
    dataset: &DatasetDrift,
    drift_share: f64,
) -> String {
    let verdict = if dataset.drift {
        "Dataset drift detected"
    } else {
        "No dataset drift"
    };
    let verdict_class = if dataset.drift { "bad" } else { "good" };
    let mut page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drift report — {t}</title><style>\
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}}\
h1{{font-size:20px;margin:0 0 4px}} .sub{{color:#666;margin-bottom:16px}}\
.verdict{{padding:14px 18px;border-radius:8px;font-size:18px;margin-bottom:20px}}\
.good{{background:#e6f4ea;border:1px solid #34a853}} .bad{{background:#fce8e6;border:1px solid #d93025}}\
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:16px}}\
.card{{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 14px}}\
.card.drift{{border-left:6px solid #d93025}} .card.stable{{border-left:6px solid #34a853}}\
.card h2{{font-size:16px;margin:0 0 6px}} table{{border-collapse:collapse;font-size:13px;margin-bottom:6px}}\
td{{padding:1px 10px 1px 0}} .legend span{{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}}\
</style></head><body><h1>Drift report</h1><div class=\"sub\">{t}</div>\
<div class=\"verdict {verdict_class}\"><b>{verdict}</b>: {d} of {n} columns drifted ({share:.1}%; the dataset drifts at {ds:.0}% or more).</div>\
<div class=\"legend\"><span style=\"background:#4c78a8\"></span>reference<span style=\"background:#f58518\"></span>current</div><div class=\"grid\">",
        t = escape(title),
        d = dataset.drifted_columns,
        n = columns.len(),
        share = dataset.share * 100.0,
        ds = drift_share * 100.0,
    );
    for (c, h) in columns {
        let value = match c.p_value {
            Some(p) => format!("p-value {} (statistic {})", number(p), number(c.statistic)),
            None => format!("distance {}", number(c.statistic)),
        };
        let rule = if c.p_value.is_some() {
            "drift if p below"
        } else {
            "drift if at least"
        };
        page.push_str(&format!(
            "<div class=\"card {cls}\"><h2>{name} — {state}</h2><table><tr><td>test</td><td><b>{method}</b></td></tr>\
<tr><td>value</td><td>{value}</td></tr><tr><td>threshold</td><td>{rule} {thr}</td></tr></table>{svg}</div>",
            cls = if c.drifted { "drift" } else { "stable" },
            name = escape(&c.column),
            state = if c.drifted { "drift" } else { "no drift" },
            method = c.method.name(),
            thr = c.threshold,
            svg = svg(h),
        ));
    }
    page.push_str("</div></body></html>\n");
    page
}

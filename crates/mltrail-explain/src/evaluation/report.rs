//! An evaluation as one self-contained HTML page (inline SVG, no scripts, no network): the
//! metrics, the ROC and calibration curves, the confusion matrix, per-group rates and the
//! global importance of each column.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::metrics::{Calibration, Classification, RocCurve};
use super::Evaluation;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn show(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "—".into(),
    }
}

/// A square plot of [0, 1]² with a diagonal and one polyline; `points` in data coordinates.
fn unit_plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    dots: bool,
) -> String {
    let (size, pad) = (260.0, 36.0);
    let px = |x: f64| pad + x.clamp(0.0, 1.0) * size;
    let py = |y: f64| pad + (1.0 - y.clamp(0.0, 1.0)) * size;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{w}\" role=\"img\" aria-label=\"{t}\">\
<rect x=\"{pad}\" y=\"{pad}\" width=\"{size}\" height=\"{size}\" fill=\"none\" stroke=\"#bbb\"/>\
<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y1}\" stroke=\"#ccc\" stroke-dasharray=\"4 3\"/>\
<text x=\"{cx}\" y=\"{by}\" font-size=\"11\" text-anchor=\"middle\">{xl}</text>\
<text x=\"12\" y=\"{cy}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12 {cy})\">{yl}</text>",
        w = size + 2.0 * pad,
        t = escape(title),
        x0 = px(0.0),
        y0 = py(0.0),
        x1 = px(1.0),
        y1 = py(1.0),
        cx = pad + size / 2.0,
        by = size + 2.0 * pad - 8.0,
        cy = pad + size / 2.0,
        xl = escape(x_label),
        yl = escape(y_label),
    );
    for t in [0.0, 0.5, 1.0] {
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"10\" text-anchor=\"middle\">{t}</text>\
<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\" text-anchor=\"end\">{t}</text>",
            x = px(t),
            y = py(0.0) + 12.0,
            lx = px(0.0) - 4.0,
            ly = py(t) + 3.0,
        );
    }
    let line: Vec<String> = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#4c78a8\" stroke-width=\"2\"/>",
        line.join(" ")
    );
    if dots {
        for (x, y) in points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
        {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#4c78a8\"/>",
                px(*x),
                py(*y)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars of `(label, value)`, scaled to the largest value.
fn bars(rows: &[(String, f64)], color: &str, percent: bool) -> String {
    let (row_h, label_w, bar_w) = (18.0, 170.0, 320.0);
    let max = rows
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let scale = if percent {
        1.0
    } else {
        max.max(f64::MIN_POSITIVE)
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\">",
        w = label_w + bar_w + 70.0,
        h = rows.len() as f64 * row_h + 6.0
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 3.0 + i as f64 * row_h;
        let w = if v.is_finite() {
            v / scale * bar_w
        } else {
            0.0
        };
        let text = if !v.is_finite() {
            "—".to_string()
        } else if percent {
            format!("{:.1}%", v * 100.0)
        } else {
            format!("{v:.4}")
        };
        let _ = write!(
            svg,
            "<text x=\"{lx}\" y=\"{ty}\" font-size=\"12\" text-anchor=\"end\">{l}</text>\
<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bh}\" fill=\"{color}\"/>\
<text x=\"{vx:.1}\" y=\"{ty}\" font-size=\"11\">{text}</text>",
            lx = label_w - 6.0,
            ty = y + row_h - 6.0,
            l = escape(label),
            bh = row_h - 4.0,
            vx = label_w + w + 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn roc_svg(roc: &RocCurve, auc: Option<f64>) -> String {
    let points: Vec<(f64, f64)> = roc
        .fpr
        .iter()
        .copied()
        .zip(roc.tpr.iter().copied())
        .collect();
    unit_plot(
        &format!("ROC curve, AUC {}", show(auc)),
        "false positive rate",
        "true positive rate",
        &points,
        false,
    )
}

fn calibration_svg(c: &Calibration) -> String {
    let points: Vec<(f64, f64)> = c
        .prob_pred
        .iter()
        .copied()
        .zip(c.prob_true.iter().copied())
        .collect();
    unit_plot(
        "calibration",
        "mean predicted probability",
        "fraction of positives",
        &points,
        true,
    )
}

fn confusion_table(m: &Classification) -> String {
    let mut t = String::from("<table class=\"grid\"><tr><th>label ↓ predicted →</th>");
    for c in &m.classes {
        let _ = write!(t, "<th>{}</th>", escape(c));
    }
    t.push_str("</tr>");
    for (c, row) in m.classes.iter().zip(&m.confusion_matrix) {
        let _ = write!(t, "<tr><th>{}</th>", escape(c));
        for v in row {
            let _ = write!(t, "<td>{v}</td>");
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

fn metrics_table(rows: &[(&str, Option<f64>)]) -> String {
    let mut t = String::from("<table>");
    for (name, v) in rows {
        let _ = write!(t, "<tr><td>{name}</td><td>{}</td></tr>", show(*v));
    }
    t.push_str("</table>");
    t
}

/// Per sensitive column: each group's selection rate and true positive rate.
fn fairness_cards(fairness: &Json) -> String {
    let mut out = String::new();
    for (column, frame) in fairness["metric_frames"].as_object().into_iter().flatten() {
        let groups = frame["by_group"].as_object().cloned().unwrap_or_default();
        let rate = |metric: &str| -> Vec<(String, f64)> {
            groups
                .iter()
                .map(|(g, m)| (g.clone(), m[metric].as_f64().unwrap_or(f64::NAN)))
                .collect()
        };
        let scalars = &fairness["scalar"][column];
        let _ = write!(
            out,
            "<div class=\"card\"><h2>By {c}</h2><h3>selection rate</h3>{s}<h3>true positive rate</h3>{t}{m}</div>",
            c = escape(column),
            s = bars(&rate("selection_rate"), "#4c78a8", true),
            t = bars(&rate("true_positive_rate"), "#54a24b", true),
            m = metrics_table(&[
                (
                    "demographic parity difference",
                    scalars["between_groups"]["demographic_parity_difference"].as_f64()
                ),
                (
                    "equalized odds difference",
                    scalars["between_groups"]["equalized_odds_difference"].as_f64()
                ),
                (
                    "equal opportunity difference",
                    scalars["between_groups"]["equal_opportunity_difference"].as_f64()
                ),
            ]),
        );
    }
    out
}

/// The page. `title` names the model version and the data (escaped here).
pub fn html(title: &str, e: &Evaluation) -> String {
    let mut page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evaluation — {t}</title><style>\
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}}\
h1{{font-size:20px;margin:0 0 4px}} .sub{{color:#666;margin-bottom:16px}} h3{{font-size:13px;margin:8px 0 2px;color:#555}}\
.card{{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 14px;margin-bottom:16px;display:inline-block;vertical-align:top;margin-right:16px}}\
.card h2{{font-size:16px;margin:0 0 8px}} table{{border-collapse:collapse;font-size:13px;margin:8px 0}}\
td,th{{padding:2px 12px 2px 0;text-align:left}} .grid td,.grid th{{border:1px solid #ddd;padding:2px 8px}}\
</style></head><body><h1>Evaluation</h1><div class=\"sub\">{t} · {rows} rows · label <code>{label}</code> · {task}</div>",
        t = escape(title),
        rows = e.rows,
        label = escape(&e.label),
        task = e.task,
    );
    if let Some(m) = &e.classification {
        let _ = write!(
            page,
            "<div class=\"card\"><h2>Metrics</h2>{}{}</div>",
            metrics_table(&[
                ("accuracy", Some(m.accuracy)),
                ("precision", Some(m.precision)),
                ("recall", Some(m.recall)),
                ("F1", Some(m.f1)),
                ("ROC AUC", m.roc_auc),
                ("log loss", m.log_loss),
                ("Brier score", m.brier),
            ]),
            confusion_table(m)
        );
        if let Some(roc) = &m.roc_curve {
            let _ = write!(
                page,
                "<div class=\"card\"><h2>ROC curve</h2>{}</div>",
                roc_svg(roc, m.roc_auc)
            );
        }
        if let Some(c) = &m.calibration {
            let _ = write!(
                page,
                "<div class=\"card\"><h2>Calibration</h2>{}</div>",
                calibration_svg(c)
            );
        }
    }
    if let Some(r) = &e.regression {
        let _ = write!(
            page,
            "<div class=\"card\"><h2>Metrics</h2>{}</div>",
            metrics_table(&[
                ("RMSE", Some(r.rmse)),
                ("MAE", Some(r.mae)),
                ("R²", Some(r.r2))
            ])
        );
    }
    if let Some(f) = &e.fairness {
        page.push_str(&fairness_cards(f));
    }
    if let Some(i) = &e.importance {
        let _ = write!(
            page,
            "<div class=\"card\"><h2>Global importance (mean |SHAP|, {} rows, {})</h2>{}</div>",
            i.rows,
            escape(&i.method),
            bars(&i.columns, "#f58518", false)
        );
    }
    page.push_str("</body></html>\n");
    page
}

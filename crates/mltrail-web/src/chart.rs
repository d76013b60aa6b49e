//! Charts as SVG, drawn on the server: a page shows them without JavaScript, and a long metric
//! history is cut down here, so the browser receives a few hundred points per curve whatever
//! the run logged.

use maud::{html, Markup, PreEscaped};
use std::fmt::Write;

/// The colours series take in turn (Okabe–Ito: told apart with the common colour-vision
/// deficiencies).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

/// One curve: `(x, y)` points in x order.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// At most `2 * buckets + 2` points of `points`, which are in x order: the first and the last,
/// and the lowest and the highest y of each of `buckets` runs of equal length, in x order, so a
/// spike or a dip survives the cut (a plain stride would drop it) and the curve spans its whole
/// range. Points whose y is not finite are dropped first.
pub fn downsample(points: &[(f64, f64)], buckets: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if buckets == 0 || finite.len() <= 2 * buckets {
        return finite;
    }
    let mut out = Vec::with_capacity(2 * buckets + 2);
    out.push(finite[0]);
    for b in 0..buckets {
        let start = b * finite.len() / buckets;
        let end = (b + 1) * finite.len() / buckets;
        let run = &finite[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (i, (_, y)) in run.iter().enumerate() {
            if *y < run[lo].1 {
                lo = i;
            }
            if *y > run[hi].1 {
                hi = i;
            }
        }
        let (first, second) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        for i in [first, second] {
            // Once each: the first bucket may start, and the last end, with its extreme.
            if out.last().map(|p| p.0) != Some(run[i].0) {
                out.push(run[i]);
            }
        }
    }
    let last = finite[finite.len() - 1];
    if out.last().map(|p| p.0) != Some(last.0) {
        out.push(last);
    }
    out
}

/// Round tick positions covering `[lo, hi]` (steps of 1, 2 or 5 times a power of ten).
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let mut out = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 && out.len() < 50 {
        // -0 prints as "-0"; a tick at zero is plain 0.
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A number short enough for an axis or a table cell: up to 5 significant digits, exponent
/// form for very large or small magnitudes.
pub fn short_number(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs();
    if !(1e-3..1e6).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    let decimals = (4 - magnitude.log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The range of `values`, widened when it is a single value so the curve sits mid-chart.
fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return None;
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - pad, hi + pad));
    }
    Some((lo, hi))
}

/// What the x axis measures: plain numbers (steps, a parameter) or times in epoch milliseconds
/// (ticks fall on round minutes, hours or days, labelled in UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Number,
    Time,
}

/// Tick positions for a time range in epoch milliseconds: the smallest round step (1 s … 7 d)
/// giving at most `target` ticks, and how to label them.
pub fn time_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, fn(i64) -> String) {
    const STEPS: [i64; 19] = [
        1_000,
        2_000,
        5_000,
        10_000,
        15_000,
        30_000,
        60_000,
        120_000,
        300_000,
        600_000,
        900_000,
        1_800_000,
        3_600_000,
        7_200_000,
        10_800_000,
        21_600_000,
        43_200_000,
        86_400_000,
        604_800_000,
    ];
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (vec![lo], clock_seconds);
    }
    let span = hi - lo;
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / *s as f64 <= target.max(1) as f64)
        .unwrap_or(604_800_000);
    let first = ((lo as i64 + step - 1).div_euclid(step)) * step;
    let ticks = (0..50)
        .map(|i| (first + i * step) as f64)
        .take_while(|t| *t <= hi)
        .collect();
    let label: fn(i64) -> String = if step >= 86_400_000 {
        day
    } else if step >= 60_000 {
        clock_minutes
    } else {
        clock_seconds
    };
    (ticks, label)
}

fn clock_seconds(ms: i64) -> String {
    mltrail_core::time::rfc3339_seconds(ms)[11..19].to_string()
}

fn clock_minutes(ms: i64) -> String {
    mltrail_core::time::rfc3339_seconds(ms)[11..16].to_string()
}

fn day(ms: i64) -> String {
    mltrail_core::time::utc_date(ms)
}

struct Frame {
    axis: XAxis,
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * (self.width - self.left - self.right)
    }

    fn py(&self, y: f64) -> f64 {
        self.height
            - self.bottom
            - (y - self.y.0) / (self.y.1 - self.y.0) * (self.height - self.top - self.bottom)
    }

    /// Grid lines and labelled ticks on both axes.
    fn axes(&self, out: &mut String, x_label: &str, y_label: &str) {
        let (x0, x1) = (self.left, self.width - self.right);
        let (y0, y1) = (self.height - self.bottom, self.top);
        for t in ticks(self.y.0, self.y.1, 5) {
            let y = self.py(t);
            let _ = write!(
                out,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                x0 - 4.0,
                y + 4.0,
                escape(&short_number(t))
            );
        }
        let x_ticks: Vec<(f64, String)> = match self.axis {
            XAxis::Number => ticks(self.x.0, self.x.1, 6)
                .into_iter()
                .map(|t| (t, short_number(t)))
                .collect(),
            XAxis::Time => {
                let (at, label) = time_ticks(self.x.0, self.x.1, 6);
                at.into_iter().map(|t| (t, label(t as i64))).collect()
            }
        };
        for (t, text) in x_ticks {
            let x = self.px(t);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" class="axis"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
                y0 + 4.0,
                y0 + 16.0,
                escape(&text)
            );
        }
        let _ = write!(
            out,
            r##"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y0:.1}" class="axis"/><line x1="{x0:.1}" y1="{y0:.1}" x2="{x0:.1}" y2="{y1:.1}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">{}</text><text x="12" y="{:.1}" class="label" text-anchor="middle" transform="rotate(-90 12 {:.1})">{}</text>"##,
            (x0 + x1) / 2.0,
            self.height - 4.0,
            escape(x_label),
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            escape(y_label)
        );
    }
}

/// Whether an SVG takes the page's width (scaled) or keeps its own size in pixels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Size {
    Scaled,
    Fixed,
}

/// The opening of a chart's SVG: its box, its CSS class, and its title for screen readers.
fn svg_open(width: f64, height: f64, class: &str, title: &str, size: Size) -> String {
    let fixed = match size {
        Size::Fixed => format!(r#" width="{width:.0}" height="{height:.0}""#),
        Size::Scaled => String::new(),
    };
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0} {height:.0}"{fixed} class="{class}" role="img" aria-label="{t}"><title>{t}</title>"##,
        t = escape(title)
    )
}

/// Text for SVG written by hand (the rest of the page escapes through maud).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A horizontal line across a chart at `value` (a threshold, a reference value), labelled.
pub struct Guide {
    pub value: f64,
    pub label: String,
}

/// A line chart of `series` against a shared x axis, with a legend when there is more than one.
/// `title` names the chart for screen readers. Points are drawn as given: cut them down with
/// [`downsample`] first.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Markup {
    chart_with(title, XAxis::Number, x_label, y_label, series, &[])
}

/// [`line_chart`] over time (x in epoch milliseconds), with `guides` drawn as dashed lines.
pub fn time_chart(title: &str, y_label: &str, series: &[Series], guides: &[Guide]) -> Markup {
    chart_with(title, XAxis::Time, "time (UTC)", y_label, series, guides)
}

fn chart_with(
    title: &str,
    axis: XAxis,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    guides: &[Guide],
) -> Markup {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(guides.iter().map(|g| g.value));
    let (Some(x), Some(y)) = (extent(xs), extent(ys)) else {
        return html! { p.empty { "No finite values to draw for " (title) "." } };
    };
    let frame = Frame {
        axis,
        width: 560.0,
        height: 240.0,
        left: 58.0,
        // Room for the last x tick's label.
        right: 26.0,
        top: 10.0,
        bottom: 34.0,
        x,
        y,
    };
    let mut svg = svg_open(frame.width, frame.height, "chart", title, Size::Scaled);
    frame.axes(&mut svg, x_label, y_label);
    for g in guides {
        let y = frame.py(g.value);
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#b3261e" stroke-dasharray="5 4"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            frame.left,
            frame.width - frame.right,
            frame.width - frame.right - 2.0,
            // Above the line, or below it when the line runs along the top.
            if y - frame.top < 14.0 {
                y + 12.0
            } else {
                y - 4.0
            },
            escape(&g.label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        if s.points.len() == 1 {
            let (px, py) = (frame.px(s.points[0].0), frame.py(s.points[0].1));
            let _ = write!(
                svg,
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{colour}"><title>{}: {}</title></circle>"##,
                escape(&s.label),
                escape(&short_number(s.points[0].1))
            );
            continue;
        }
        let mut path = String::with_capacity(s.points.len() * 14);
        for (j, (px, py)) in s
            .points
            .iter()
            .map(|(x, y)| (frame.px(*x), frame.py(*y)))
            .enumerate()
        {
            let _ = write!(path, "{}{px:.1},{py:.1}", if j == 0 { "M" } else { "L" });
        }
        let _ = write!(
            svg,
            r##"<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"><title>{}</title></path>"##,
            escape(&s.label)
        );
    }
    svg.push_str("</svg>");
    html! {
        figure.chart {
            (PreEscaped(svg))
            @if series.len() > 1 {
                figcaption.legend {
                    @for (i, s) in series.iter().enumerate() {
                        span.key { span.swatch style={ "background:" (PALETTE[i % PALETTE.len()]) } {} (s.label) }
                    }
                }
            }
        }
    }
}

/// One point of a scatter plot: its label (shown on hover and to screen readers), its colour
/// (an index into [`PALETTE`], so a run keeps the colour it has elsewhere on the page) and place.
pub struct Dot {
    pub label: String,
    pub colour: usize,
    pub x: f64,
    pub y: f64,
}

/// A scatter plot of `dots`; those whose x or y is not finite are left out and counted below.
pub fn scatter(title: &str, x_label: &str, y_label: &str, dots: &[Dot]) -> Markup {
    let drawn: Vec<&Dot> = dots
        .iter()
        .filter(|d| d.x.is_finite() && d.y.is_finite())
        .collect();
    // A margin of 5 % keeps the dots at the extremes whole.
    let padded = |(lo, hi): (f64, f64)| {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    };
    let (Some(x), Some(y)) = (
        extent(drawn.iter().map(|d| d.x)).map(padded),
        extent(drawn.iter().map(|d| d.y)).map(padded),
    ) else {
        return html! { p.empty { "None of the selected runs has both " (x_label) " and " (y_label) " as numbers." } };
    };
    let frame = Frame {
        axis: XAxis::Number,
        width: 560.0,
        height: 300.0,
        left: 58.0,
        right: 16.0,
        top: 12.0,
        bottom: 34.0,
        x,
        y,
    };
    let mut svg = svg_open(frame.width, frame.height, "chart", title, Size::Scaled);
    frame.axes(&mut svg, x_label, y_label);
    for d in &drawn {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}" fill-opacity="0.8"><title>{}: {}, {}</title></circle>"##,
            frame.px(d.x),
            frame.py(d.y),
            PALETTE[d.colour % PALETTE.len()],
            escape(&d.label),
            escape(&short_number(d.x)),
            escape(&short_number(d.y))
        );
    }
    svg.push_str("</svg>");
    let missing = dots.len() - drawn.len();
    html! {
        figure.chart {
            (PreEscaped(svg))
            @if missing > 0 { figcaption { (missing) " run(s) without both values are not drawn." } }
        }
    }
}

/// A small bar chart of counts (a column's histogram or its top categories), one bar per
/// label; for a sparkline-sized picture beside a profile's numbers.
pub fn bars(title: &str, labels: &[String], counts: &[u64]) -> Markup {
    let max = counts.iter().copied().max().unwrap_or(0);
    if counts.is_empty() || max == 0 {
        return html! { span.muted { "no values" } };
    }
    let (width, height, gap) = (240.0, 64.0, 2.0);
    let w = (width - gap * counts.len() as f64) / counts.len() as f64;
    let mut svg = svg_open(width, height, "bars", title, Size::Fixed);
    for (i, (label, n)) in labels.iter().zip(counts).enumerate() {
        let h = (*n as f64 / max as f64 * (height - 2.0)).max(if *n > 0 { 1.0 } else { 0.0 });
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" fill="#0072B2"><title>{}: {n}</title></rect>"##,
            i as f64 * (w + gap),
            height - h,
            escape(label)
        );
    }
    svg.push_str("</svg>");
    html! { (PreEscaped(svg)) }
}

/// One labelled estimate with its interval, for [`intervals`].
pub struct Interval {
    pub label: String,
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// Estimates with their intervals, one row each (a dot on a line from low to high) on one
/// shared axis: which arm earns more, and whether the intervals still overlap.
pub fn intervals(title: &str, axis: &str, rows: &[Interval]) -> Markup {
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.value, r.low, r.high])
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return html! { p.empty { "No estimates yet." } };
    }
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let (label_w, plot_w, row_h, axis_h) = (180.0, 420.0, 26.0, 28.0);
    let width = label_w + plot_w + 20.0;
    let height = rows.len() as f64 * row_h + axis_h;
    let x = |v: f64| label_w + (v - lo) / (hi - lo) * plot_w;
    let mut svg = svg_open(width, height, "chart", title, Size::Scaled);
    for (i, r) in rows.iter().enumerate() {
        let y = i as f64 * row_h + row_h / 2.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12">{}</text>"##,
            label_w - 8.0,
            y + 4.0,
            escape(&r.label)
        );
        if let (Some(a), Some(b)) = (r.low, r.high) {
            let _ = write!(
                svg,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#0072B2" stroke-width="2"/>"##,
                x(a),
                x(b)
            );
        }
        if let Some(v) = r.value {
            let tip = match (r.low, r.high) {
                (Some(a), Some(b)) => format!(
                    "{}: {} [{}, {}]",
                    r.label,
                    short_number(v),
                    short_number(a),
                    short_number(b)
                ),
                _ => format!("{}: {}", r.label, short_number(v)),
            };
            let _ = write!(
                svg,
                r##"<circle cx="{:.1}" cy="{y:.1}" r="4" fill="#D55E00"><title>{}</title></circle>"##,
                x(v),
                escape(&tip)
            );
        }
    }
    let base = rows.len() as f64 * row_h + 4.0;
    for t in ticks(lo, hi, 5) {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="0" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle" font-size="11">{3}</text>"##,
            x(t),
            base,
            base + 14.0,
            short_number(t)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"##,
        label_w + plot_w / 2.0,
        height - 1.0,
        escape(axis)
    );
    svg.push_str("</svg>");
    html! { figure.chart { (PreEscaped(svg)) } }
}

/// Contributions shown one by one in a waterfall; the rest are summed into one bar.
const WATERFALL_BARS: usize = 12;

/// How an explanation adds up: from `base` (the model's average answer), each feature's
/// contribution as a bar from the running total (red pushes up, blue down), largest first, to
/// `output`. Features past the twelfth are summed into one bar.
pub fn waterfall(title: &str, base: f64, contributions: &[(String, f64)], output: f64) -> Markup {
    let mut sorted: Vec<(String, f64)> = contributions
        .iter()
        .filter(|(_, v)| v.is_finite())
        .cloned()
        .collect();
    sorted.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    if sorted.len() > WATERFALL_BARS {
        let rest: f64 = sorted[WATERFALL_BARS - 1..].iter().map(|(_, v)| v).sum();
        let n = sorted.len() - (WATERFALL_BARS - 1);
        sorted.truncate(WATERFALL_BARS - 1);
        sorted.push((format!("{n} other features"), rest));
    }
    let mut running = base;
    let mut spans = Vec::with_capacity(sorted.len());
    for (name, v) in &sorted {
        spans.push((name.as_str(), running, running + v, *v));
        running += v;
    }
    let all = spans
        .iter()
        .flat_map(|(_, a, b, _)| [*a, *b])
        .chain([base, output]);
    let Some((lo, hi)) = extent(all) else {
        return html! { p.empty { "Nothing to draw for " (title) "." } };
    };
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let row = 22.0;
    let (left, right, width) = (150.0, 70.0, 620.0);
    let height = row * (spans.len() + 2) as f64 + 30.0;
    let px = |x: f64| left + (x - lo) / (hi - lo) * (width - left - right);
    let mut svg = svg_open(width, height, "chart waterfall", title, Size::Scaled);
    for t in ticks(lo, hi, 6) {
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="0" x2="{x:.1}" y2="{:.1}" class="grid"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
            height - 24.0,
            height - 10.0,
            escape(&short_number(t)),
            x = px(t)
        );
    }
    let label = |svg: &mut String, y: f64, text: &str| {
        let short: String = text.chars().take(22).collect();
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" class="label" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + row * 0.65,
            escape(&short)
        );
    };
    let marker = |svg: &mut String, y: f64, text: &str, at: f64| {
        label(svg, y, text);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#1d232b" stroke-width="2"/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"##,
            y + 3.0,
            y + row - 3.0,
            px(at) + 4.0,
            y + row * 0.65,
            escape(&short_number(at)),
            x = px(at)
        );
    };
    marker(&mut svg, 0.0, "base value", base);
    for (i, (name, from, to, v)) in spans.iter().enumerate() {
        let y = row * (i + 1) as f64;
        label(&mut svg, y, name);
        let (a, b) = (px(from.min(*to)), px(from.max(*to)));
        let colour = if *v >= 0.0 { "#D55E00" } else { "#0072B2" };
        let _ = write!(
            svg,
            r##"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}: {}{}</title></rect><text x="{:.1}" y="{:.1}" class="tick">{}{}</text>"##,
            y + 3.0,
            (b - a).max(1.0),
            row - 6.0,
            escape(name),
            if *v >= 0.0 { "+" } else { "" },
            escape(&short_number(*v)),
            b + 4.0,
            y + row * 0.65,
            if *v >= 0.0 { "+" } else { "" },
            escape(&short_number(*v))
        );
    }
    marker(&mut svg, row * (spans.len() + 1) as f64, "output", output);
    svg.push_str("</svg>");
    html! {
        figure.chart.wide {
            (PreEscaped(svg))
            figcaption { "From the base value, each feature's contribution in turn (red raises the output, blue lowers it), largest first." }
        }
    }
}

/// One cell of a heat map: `level` is 0 for nothing, 1 at the threshold, more beyond it (drawn
/// with the same colour from 3 on); `label` says what it is to a pointer or screen reader.
pub struct Cell {
    pub level: f64,
    pub label: String,
}

/// The colour of a heat-map level: white through amber (just under the threshold) to dark red.
fn heat(level: f64) -> String {
    let t = (level / 3.0).clamp(0.0, 1.0);
    let (r, g, b) = if level < 1.0 {
        let u = level.clamp(0.0, 1.0);
        (255.0, 255.0 - 55.0 * u, 255.0 - 175.0 * u)
    } else {
        (255.0 - 120.0 * t, 200.0 - 190.0 * t, 80.0 - 60.0 * t)
    };
    format!("rgb({:.0},{:.0},{:.0})", r, g, b)
}

/// A grid of `rows` (named down the left) × `columns` (labelled along the bottom), each cell
/// coloured by its level; a missing cell is left grey. Cells beyond the threshold carry a dot,
/// so the reading does not rest on colour alone.
pub fn heat_map(
    title: &str,
    rows: &[String],
    columns: &[String],
    cells: &[Vec<Option<Cell>>],
) -> Markup {
    if rows.is_empty() || columns.is_empty() {
        return html! { p.empty { "Nothing to draw for " (title) " yet." } };
    }
    let left = 12.0
        + 7.0
            * rows
                .iter()
                .map(|r| r.chars().count())
                .max()
                .unwrap_or(4)
                .min(24) as f64;
    let cell_w = (900.0 / columns.len() as f64).clamp(8.0, 56.0);
    let cell_h = 22.0;
    let width = left + cell_w * columns.len() as f64 + 10.0;
    let height = cell_h * rows.len() as f64 + 22.0;
    let mut svg = svg_open(width, height, "chart heat", title, Size::Fixed);
    for (r, name) in rows.iter().enumerate() {
        let y = r as f64 * cell_h;
        let short: String = name.chars().take(24).collect();
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            left - 4.0,
            y + cell_h * 0.7,
            escape(&short)
        );
        for (c, cell) in cells
            .get(r)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let x = left + c as f64 * cell_w;
            match cell {
                Some(cell) => {
                    let _ = write!(
                        svg,
                        r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}" stroke="#fff"><title>{}</title></rect>"##,
                        cell_w,
                        cell_h,
                        heat(cell.level),
                        escape(&cell.label)
                    );
                    if cell.level >= 1.0 {
                        let _ = write!(
                            svg,
                            r##"<circle cx="{:.1}" cy="{:.1}" r="2" fill="#fff"/>"##,
                            x + cell_w / 2.0,
                            y + cell_h / 2.0
                        );
                    }
                }
                None => {
                    let _ = write!(
                        svg,
                        r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#eceff3" stroke="#fff"/>"##,
                        cell_w, cell_h
                    );
                }
            }
        }
    }
    // A label every ~70 pixels, so none runs into the next.
    let every = (70.0 / cell_w).ceil().max(1.0) as usize;
    for (c, label) in columns.iter().enumerate().step_by(every) {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="start">{}</text>"##,
            left + c as f64 * cell_w,
            rows.len() as f64 * cell_h + 14.0,
            escape(label)
        );
    }
    svg.push_str("</svg>");
    html! {
        figure.chart.wide {
            (PreEscaped(svg))
            figcaption { "Colour: how far each statistic is from its threshold (white: far below; red: beyond it, marked with a dot; grey: not measured)." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_each_buckets_extremes_in_order() {
        let mut points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 0.0)).collect();
        points[5_123].1 = 9.0;
        points[7_777].1 = -4.0;
        points[42].1 = f64::NAN;
        let cut = downsample(&points, 100);
        assert!(cut.len() <= 202, "{}", cut.len());
        assert_eq!(cut.first(), Some(&(0.0, 0.0)));
        assert_eq!(
            cut.last(),
            Some(&(9_999.0, 0.0)),
            "the curve reaches its last step"
        );
        assert!(cut.contains(&(5_123.0, 9.0)) && cut.contains(&(7_777.0, -4.0)));
        assert!(cut.windows(2).all(|w| w[0].0 < w[1].0), "x order kept");
        assert!(cut.iter().all(|p| p.1.is_finite()));
        let few = [(0.0, 1.0), (1.0, 2.0)];
        assert_eq!(downsample(&few, 100), few.to_vec());
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks(3.0, 97.0, 5), vec![20.0, 40.0, 60.0, 80.0]);
        assert_eq!(ticks(-1.0, 1.0, 4), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(ticks(2.0, 2.0, 4), vec![2.0]);
    }

    #[test]
    fn time_ticks_fall_on_round_times() {
        // 10:00:07 to 10:30:00 UTC on 2026-12-04: ticks every 5 minutes, labelled HH:MM.
        let lo = 1_796_378_407_000.0;
        let (ticks, label) = time_ticks(lo, lo + 1_793_000.0, 6);
        assert_eq!(ticks.len(), 6);
        assert!(ticks.iter().all(|t| *t as i64 % 300_000 == 0));
        assert_eq!(label(ticks[0] as i64), "10:05");
    }

    #[test]
    fn heat_levels_grow_redder_and_mark_the_threshold() {
        assert_eq!(heat(0.0), "rgb(255,255,255)");
        assert_eq!(heat(1.0), "rgb(215,137,60)", "amber at the threshold");
        assert_eq!(heat(3.0), "rgb(135,10,20)", "dark red from three times on");
        let map = heat_map(
            "drift",
            &["<b>age</b>".into()],
            &["10:00".into(), "10:01".into()],
            &[vec![
                Some(Cell {
                    level: 2.0,
                    label: "age: p=0.001".into(),
                }),
                None,
            ]],
        )
        .into_string();
        assert_eq!(
            map.matches("<circle").count(),
            1,
            "one cell beyond its threshold"
        );
        assert!(map.contains("&lt;b&gt;age") && !map.contains("<b>"));
    }

    #[test]
    fn a_waterfall_adds_up_and_sums_the_tail() {
        let contributions: Vec<(String, f64)> = (0..15)
            .map(|i| {
                (
                    format!("f{i}"),
                    if i % 2 == 0 { 0.1 } else { -0.05 } * (i + 1) as f64,
                )
            })
            .collect();
        let total: f64 = contributions.iter().map(|c| c.1).sum();
        let svg = waterfall("why", 0.5, &contributions, 0.5 + total).into_string();
        assert_eq!(
            svg.matches("<rect").count(),
            12,
            "eleven features and the rest"
        );
        assert!(svg.contains("4 other features"));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(0.912345678), "0.91235");
        assert_eq!(short_number(1234.5), "1234.5");
        assert_eq!(short_number(250000.0), "250000");
        assert_eq!(short_number(1e-7), "1.00e-7");
        assert_eq!(short_number(-3.0), "-3");
    }

    #[test]
    fn labels_are_escaped_inside_the_svg() {
        let chart = line_chart(
            "<script>alert(1)</script>",
            "step",
            "\"onerror=x",
            &[Series {
                label: "<img src=x onerror=alert(1)>".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
        )
        .into_string();
        assert!(!chart.contains("<script>") && !chart.contains("<img"));
        assert!(chart.contains("&lt;script&gt;") && chart.contains("&quot;onerror=x"));
    }

    #[test]
    fn a_chart_without_finite_values_says_so() {
        let chart = line_chart(
            "loss",
            "step",
            "loss",
            &[Series {
                label: "a".into(),
                points: vec![],
            }],
        )
        .into_string();
        assert!(chart.contains("No finite values"));
    }
}

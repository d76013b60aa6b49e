//! Experiments and runs: the experiments list, an experiment's runs table, a run's page and the
//! comparison of selected runs.

use crate::chart::{self, Dot, Series};
use crate::layout::{
    self, experiment_href, query, run_href, value_of, version_href, Section, Viewer,
};
use maud::{html, Markup};
use mltrail_store::records::{Experiment, KeyValue, ModelVersion, Run};
use std::collections::{BTreeMap, BTreeSet};

/// What a runs-table column shows of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColumnKind {
    Metric,
    Param,
    Tag,
}

/// A chosen column: a metric, param or tag key (`metrics.acc` in a URL).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    pub kind: ColumnKind,
    pub key: String,
}

impl Column {
    /// `metrics.<key>`, `params.<key>` or `tags.<key>`; anything else is no column.
    pub fn parse(text: &str) -> Option<Column> {
        let (prefix, key) = text.split_once('.')?;
        let kind = match prefix {
            "metrics" => ColumnKind::Metric,
            "params" => ColumnKind::Param,
            "tags" => ColumnKind::Tag,
            _ => return None,
        };
        (!key.is_empty()).then(|| Column {
            kind,
            key: key.to_string(),
        })
    }

    fn prefix(&self) -> &'static str {
        match self.kind {
            ColumnKind::Metric => "metrics",
            ColumnKind::Param => "params",
            ColumnKind::Tag => "tags",
        }
    }

    /// The form a URL carries.
    pub fn id(&self) -> String {
        format!("{}.{}", self.prefix(), self.key)
    }

    /// The key as MLflow's `order_by` grammar takes it (backquoted, so any key works).
    fn order_term(&self) -> String {
        format!("{}.`{}`", self.prefix(), self.key.replace('`', ""))
    }

    fn value(&self, run: &Run) -> Option<String> {
        match self.kind {
            ColumnKind::Metric => run
                .data
                .metrics
                .iter()
                .find(|m| m.key == self.key)
                .map(|m| chart::short_number(m.value.0)),
            ColumnKind::Param => value_of(&run.data.params, &self.key).map(str::to_string),
            ColumnKind::Tag => value_of(&run.data.tags, &self.key).map(str::to_string),
        }
    }
}

/// The experiments list.
pub fn experiments_page(viewer: &Viewer<'_>, experiments: &[Experiment]) -> Markup {
    let body = html! {
        @if experiments.is_empty() {
            p.empty { "No experiments yet. Log a run with the mlflow client (" code { "mlflow.set_tracking_uri(…)" } ") and it appears here." }
        } @else {
            table.wide {
                caption { (experiments.len()) " experiments" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "ID" } th scope="col" { "Created" } th scope="col" { "Last update" } th scope="col" { "Tags" } } }
                tbody {
                    @for e in experiments {
                        tr {
                            td { a href=(experiment_href(&e.experiment_id)) { (e.name) } }
                            td { (e.experiment_id) }
                            td { (layout::time(e.creation_time)) }
                            td { (layout::time(e.last_update_time)) }
                            td { @for t in e.tags.iter().filter(|t| !t.key.starts_with("mlflow.")) { span.badge { (t.key) "=" (t.value) } } }
                        }
                    }
                }
            }
        }
    };
    layout::page(Section::Experiments, viewer, &[], "Experiments", body)
}

/// What the runs table was asked for (its URL's query).
#[derive(Debug, Clone, Default)]
pub struct RunsQuery {
    pub filter: String,
    pub order_by: String,
    /// Chosen columns; empty: the keys the page's runs have.
    pub columns: Vec<Column>,
    pub page_token: String,
}

impl RunsQuery {
    fn href(&self, experiment: &str, order_by: &str, page_token: &str) -> String {
        let columns: Vec<String> = self.columns.iter().map(Column::id).collect();
        let mut pairs = vec![
            ("filter", self.filter.as_str()),
            ("order_by", order_by),
            ("page_token", page_token),
        ];
        pairs.extend(columns.iter().map(|c| ("col", c.as_str())));
        format!("{}{}", experiment_href(experiment), query(pairs))
    }
}

/// Up to `limit` keys of each kind that the runs have, in key order.
fn keys_of(runs: &[Run], limit: usize) -> Vec<Column> {
    let mut keys: BTreeSet<Column> = BTreeSet::new();
    let mut counts: BTreeMap<ColumnKind, usize> = BTreeMap::new();
    let all = runs.iter().flat_map(|r| {
        r.data
            .metrics
            .iter()
            .map(|m| (ColumnKind::Metric, &m.key))
            .chain(r.data.params.iter().map(|p| (ColumnKind::Param, &p.key)))
            .chain(r.data.tags.iter().map(|t| (ColumnKind::Tag, &t.key)))
    });
    for (kind, key) in all {
        keys.insert(Column {
            kind,
            key: key.clone(),
        });
    }
    keys.into_iter()
        .filter(|c| {
            let n = counts.entry(c.kind).or_default();
            *n += 1;
            *n <= limit
        })
        .collect()
}

/// An experiment's runs: a search box taking MLflow's filter syntax, sortable columns, a
/// column chooser, pages, and checkboxes that send the selected runs to the comparison.
pub struct RunsTable<'a> {
    pub experiment: &'a Experiment,
    pub runs: &'a [Run],
    pub query: &'a RunsQuery,
    pub next_page_token: Option<&'a str>,
    /// Why the search was refused (a filter that does not parse), shown above the table.
    pub error: Option<&'a str>,
}

pub fn runs_page(viewer: &Viewer<'_>, table: &RunsTable<'_>) -> Markup {
    let e = table.experiment;
    let q = table.query;
    let offered = keys_of(table.runs, 200);
    let shown: Vec<Column> = if q.columns.is_empty() {
        keys_of(table.runs, 8)
            .into_iter()
            .filter(|c| c.kind != ColumnKind::Tag)
            .collect()
    } else {
        q.columns.clone()
    };
    let sort_link = |term: String, label: &str| {
        let (next, mark) = if q.order_by == format!("{term} DESC") {
            (format!("{term} ASC"), " ▼")
        } else if q.order_by == format!("{term} ASC") {
            (format!("{term} DESC"), " ▲")
        } else {
            (format!("{term} DESC"), "")
        };
        html! { a href=(q.href(&e.experiment_id, &next, "")) title={ "Order by " (label) } { (label) (mark) } }
    };
    let body = html! {
        form.inline method="get" action=(experiment_href(&e.experiment_id)) role="search" {
            label for="filter" { "Filter" }
            input type="search" id="filter" name="filter" value=(q.filter)
                placeholder="metrics.rmse < 1 and params.model = 'tree'" aria-describedby="filter-help";
            @if !q.order_by.is_empty() { input type="hidden" name="order_by" value=(q.order_by); }
            @for c in &q.columns { input type="hidden" name="col" value=(c.id()); }
            button type="submit" { "Search" }
            span.muted id="filter-help" { "MLflow's search syntax: " code { "metrics.acc > 0.9 and tags.team = 'risk'" } }
        }
        @if let Some(error) = table.error { p.error role="alert" { (error) } }
        details.columns {
            summary { "Columns" }
            form method="get" action=(experiment_href(&e.experiment_id)) {
                input type="hidden" name="filter" value=(q.filter);
                input type="hidden" name="order_by" value=(q.order_by);
                fieldset {
                    legend { "Metrics, parameters and tags to show" }
                    @for c in &offered {
                        label { input type="checkbox" name="col" value=(c.id()) checked[shown.contains(c)]; " " (c.id()) }
                    }
                }
                button.quiet type="submit" { "Show these columns" }
            }
        }
        form method="get" action="/ui/compare" {
            div.runs {
                table.wide {
                    caption { (table.runs.len()) " runs on this page" }
                    thead {
                        tr {
                            th scope="col" { input type="checkbox" id="select-all" aria-label="Select every run on this page"; }
                            th scope="col" { (sort_link("attributes.run_name".into(), "Run")) }
                            th scope="col" { (sort_link("attributes.start_time".into(), "Created")) }
                            th scope="col" { "Duration" }
                            th scope="col" { (sort_link("attributes.user_id".into(), "User")) }
                            th scope="col" { (sort_link("attributes.status".into(), "Status")) }
                            @for c in &shown { th.num[c.kind == ColumnKind::Metric] scope="col" { (sort_link(c.order_term(), &c.id())) } }
                        }
                    }
                    tbody {
                        @for r in table.runs {
                            tr {
                                td { input type="checkbox" name="run" value=(r.info.run_id) aria-label={ "Select " (r.info.run_name) }; }
                                td { a href=(run_href(&r.info.run_id)) { (display_name(r)) } }
                                td { (r.info.start_time.map(layout::time).unwrap_or_default()) }
                                td { (layout::duration(r.info.start_time, r.info.end_time)) }
                                td { (r.info.user_id) }
                                td class={ "status-" (r.info.status) } { (r.info.status) }
                                @for c in &shown { td.num[c.kind == ColumnKind::Metric] { (c.value(r).unwrap_or_default()) } }
                            }
                        }
                    }
                }
            }
            @if table.runs.is_empty() { p.empty { "No runs match." } }
            button type="submit" { "Compare selected runs" }
        }
        p.muted { a href=(crate::audit::trail_href(&format!("experiment:{}", e.experiment_id))) { "Audit trail of this experiment" } }
        nav.pager aria-label="Pages" {
            @if !q.page_token.is_empty() { a href=(q.href(&e.experiment_id, &q.order_by, "")) { "First page" } }
            @if let Some(next) = table.next_page_token { a href=(q.href(&e.experiment_id, &q.order_by, next)) rel="next" { "Next page" } }
        }
    };
    layout::page(
        Section::Experiments,
        viewer,
        &[("Experiments".into(), "/ui/experiments".into())],
        &e.name,
        body,
    )
}

fn display_name(run: &Run) -> &str {
    if run.info.run_name.is_empty() {
        &run.info.run_id
    } else {
        &run.info.run_name
    }
}

/// A file in a run's artifacts, as the browser lists it.
pub struct ArtifactEntry {
    pub path: String,
    pub is_dir: bool,
    pub size: Option<u64>,
}

/// What the artifacts browser shows below its listing.
pub enum Preview {
    None,
    Text {
        path: String,
        text: String,
        truncated: bool,
    },
    Table {
        path: String,
        header: Vec<String>,
        rows: Vec<Vec<String>>,
        truncated: bool,
    },
    Image {
        path: String,
        src: String,
    },
    /// A file that is neither text nor an image: offered for download.
    Binary {
        path: String,
        src: String,
        size: u64,
    },
}

/// A run's page: overview, parameters, metrics with their history charts, tags, datasets,
/// models, registered versions and artifacts.
pub struct RunPage<'a> {
    pub run: &'a Run,
    pub experiment: &'a Experiment,
    /// Each metric logged at more than one step: its history cut down for drawing (step, value).
    pub histories: Vec<(String, Vec<(f64, f64)>)>,
    pub versions: &'a [ModelVersion],
    /// The artifact folder listed, relative to the run's artifact root ("" for the root).
    pub folder: &'a str,
    pub artifacts: Result<Vec<ArtifactEntry>, String>,
    pub preview: Preview,
}

pub fn run_page(viewer: &Viewer<'_>, page: &RunPage<'_>) -> Markup {
    let run = page.run;
    let info = &run.info;
    let (user_tags, system_tags): (Vec<&KeyValue>, Vec<&KeyValue>) = run
        .data
        .tags
        .iter()
        .partition(|t| !t.key.starts_with("mlflow."));
    let artifacts_href =
        |path: &str| format!("{}{}", run_href(&info.run_id), query([("path", path)]));
    let body = html! {
        table {
            tbody {
                tr { th scope="row" { "Run ID" } td { code { (info.run_id) } } }
                tr { th scope="row" { "Experiment" } td { a href=(experiment_href(&page.experiment.experiment_id)) { (page.experiment.name) } } }
                tr { th scope="row" { "Status" } td class={ "status-" (info.status) } { (info.status) } }
                tr { th scope="row" { "User" } td { (info.user_id) } }
                tr { th scope="row" { "Started" } td { (info.start_time.map(layout::time).unwrap_or_default()) } }
                tr { th scope="row" { "Duration" } td { (layout::duration(info.start_time, info.end_time)) } }
                tr { th scope="row" { "Lifecycle" } td { (info.lifecycle_stage) } }
                tr { th scope="row" { "Artifacts" } td { code { (info.artifact_uri) } } }
                @if let Some(source) = value_of(&run.data.tags, "mlflow.source.name") { tr { th scope="row" { "Source" } td { code { (source) } } } }
                tr { th scope="row" { "History" } td { a href=(crate::audit::trail_href(&format!("run:{}", info.run_id))) { "audit trail of this run" } } }
            }
        }
        h2 { "Parameters (" (run.data.params.len()) ")" }
        @if run.data.params.is_empty() { p.empty { "No parameters." } } @else {
            table { thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                tbody { @for p in &run.data.params { tr { td { (p.key) } td { (p.value) } } } } }
        }
        h2 { "Metrics (" (run.data.metrics.len()) ")" }
        @if run.data.metrics.is_empty() { p.empty { "No metrics." } } @else {
            table { thead { tr { th scope="col" { "Name" } th.num scope="col" { "Latest" } th.num scope="col" { "Step" } th scope="col" { "Logged" } } }
                tbody { @for m in &run.data.metrics { tr { td { (m.key) } td.num title=(m.value.0) { (chart::short_number(m.value.0)) } td.num { (m.step) } td { (layout::time(m.timestamp)) } } } } }
            div.charts {
                @for (key, points) in &page.histories {
                    figure.chart {
                        h3 { (key) }
                        (chart::line_chart(&format!("{key} by step"), "step", key, &[Series { label: key.clone(), points: points.clone() }]))
                    }
                }
            }
        }
        h2 { "Tags" }
        @if user_tags.is_empty() { p.empty { "No tags." } } @else {
            table { tbody { @for t in &user_tags { tr { td { (t.key) } td { (t.value) } } } } }
        }
        @if !system_tags.is_empty() {
            details { summary { "System tags (" (system_tags.len()) ")" }
                table { tbody { @for t in &system_tags { tr { td { (t.key) } td { (t.value) } } } } } }
        }
        h2 { "Datasets used" }
        @if run.inputs.dataset_inputs.is_empty() { p.empty { "No datasets logged." } } @else {
            table { thead { tr { th scope="col" { "Name" } th scope="col" { "Digest" } th scope="col" { "Context" } th scope="col" { "Source" } } }
                tbody { @for d in &run.inputs.dataset_inputs {
                    tr {
                        td { (d.dataset.get("name").and_then(|v| v.as_str()).unwrap_or("")) }
                        td { code { (d.dataset.get("digest").and_then(|v| v.as_str()).unwrap_or("")) } }
                        td { (value_of(&d.tags, "mlflow.data.context").unwrap_or("")) }
                        td { (d.dataset.get("source_type").and_then(|v| v.as_str()).unwrap_or("")) }
                    }
                } } }
        }
        h2 { "Models" }
        @if run.outputs.model_outputs.is_empty() && page.versions.is_empty() { p.empty { "No models logged or registered from this run." } }
        @if !run.outputs.model_outputs.is_empty() {
            p { "Logged models: " @for m in &run.outputs.model_outputs { code.badge { (m.model_id) } } }
        }
        @if !page.versions.is_empty() {
            table { thead { tr { th scope="col" { "Registered version" } th scope="col" { "Stage" } th scope="col" { "Aliases" } } }
                tbody { @for v in page.versions { tr {
                    td { a href=(version_href(&v.name, &v.version)) { (v.name) " v" (v.version) } }
                    td { (v.current_stage) }
                    td { @for a in &v.aliases { span.badge { "@" (a) } } }
                } } } }
        }
        h2 id="artifacts" { "Artifacts" }
        @if !page.folder.is_empty() {
            p { a href=(artifacts_href("")) { "All artifacts" } " / " code { (page.folder) } }
        }
        @match &page.artifacts {
            Err(why) => p.error { "The artifacts could not be listed: " (why) },
            Ok(entries) if entries.is_empty() => p.empty { "No artifacts in this folder." },
            Ok(entries) => table {
                thead { tr { th scope="col" { "Name" } th.num scope="col" { "Size" } } }
                tbody { @for a in entries { tr {
                    td { a href={ (artifacts_href(&a.path)) "#artifacts" } { (a.path) @if a.is_dir { "/" } } }
                    td.num { (a.size.map(mltrail_core::units::bytes_text).unwrap_or_default()) }
                } } }
            },
        }
        (preview(&page.preview))
    };
    layout::page(
        Section::Experiments,
        viewer,
        &[
            ("Experiments".into(), "/ui/experiments".into()),
            (
                page.experiment.name.clone(),
                experiment_href(&page.experiment.experiment_id),
            ),
        ],
        display_name(run),
        body,
    )
}

fn preview(preview: &Preview) -> Markup {
    html! {
        @match preview {
            Preview::None => {},
            Preview::Text { path, text, truncated } => section aria-label={ "Preview of " (path) } {
                h3 { (path) }
                pre.preview { (text) }
                @if *truncated { p.muted { "Only the beginning of the file is shown." } }
            },
            Preview::Table { path, header, rows, truncated } => section aria-label={ "Preview of " (path) } {
                h3 { (path) }
                div.runs { table {
                    thead { tr { @for h in header { th scope="col" { (h) } } } }
                    tbody { @for row in rows { tr { @for cell in row { td { (cell) } } } } }
                } }
                @if *truncated { p.muted { "Only the first rows are shown." } }
            },
            Preview::Image { path, src } => section aria-label={ "Preview of " (path) } {
                h3 { (path) }
                img.preview src=(src) alt={ "The artifact " (path) };
            },
            Preview::Binary { path, src, size } => section aria-label={ "Preview of " (path) } {
                h3 { (path) }
                p { "A binary file of " (mltrail_core::units::bytes_text(*size)) ". " a href=(src) download { "Download it" } "." }
            },
        }
    }
}

/// Selected runs side by side: their parameters (differences marked), each metric's curves
/// overlaid, and a scatter of one value against another.
pub struct Comparison<'a> {
    pub runs: &'a [Run],
    /// Per metric key logged at more than one step, each run's history cut down for drawing
    /// (runs without it left out).
    pub histories: Vec<(String, Vec<Series>)>,
    pub x: Option<Column>,
    pub y: Option<Column>,
}

pub fn compare_page(viewer: &Viewer<'_>, cmp: &Comparison<'_>) -> Markup {
    let runs = cmp.runs;
    let params: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.data.params.iter().map(|p| p.key.as_str()))
        .collect();
    let numeric: Vec<Column> = keys_of(runs, 500)
        .into_iter()
        .filter(|c| c.kind != ColumnKind::Tag)
        .collect();
    let x = cmp.x.clone().or_else(|| numeric.first().cloned());
    let y = cmp
        .y
        .clone()
        .or_else(|| numeric.iter().find(|c| Some(*c) != x.as_ref()).cloned());
    let number = |run: &Run, c: &Column| -> f64 {
        match c.kind {
            ColumnKind::Metric => run
                .data
                .metrics
                .iter()
                .find(|m| m.key == c.key)
                .map_or(f64::NAN, |m| m.value.0),
            _ => c
                .value(run)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(f64::NAN),
        }
    };
    let run_ids: Vec<&str> = runs.iter().map(|r| r.info.run_id.as_str()).collect();
    let metric_keys: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.data.metrics.iter().map(|m| m.key.as_str()))
        .collect();
    let body = html! {
        @if runs.len() < 2 {
            p.error role="alert" { "Select at least two runs in an experiment's runs table to compare them." }
        }
        h2 { "Runs" }
        table {
            thead { tr { th scope="col" { "Colour" } th scope="col" { "Run" } th scope="col" { "Experiment" } th scope="col" { "Status" } } }
            tbody { @for (i, r) in runs.iter().enumerate() { tr {
                td { span.legend { span.swatch style={ "background:" (chart::PALETTE[i % chart::PALETTE.len()]) } {} } }
                td { a href=(run_href(&r.info.run_id)) { (display_name(r)) } }
                td { a href=(experiment_href(&r.info.experiment_id)) { (r.info.experiment_id) } }
                td { (r.info.status) }
            } } }
        }
        h2 { "Parameters" }
        @if params.is_empty() { p.empty { "None of these runs has parameters." } } @else {
            p.muted { "Rows whose values differ are marked." }
            div.runs { table.wide {
                thead { tr { th scope="col" { "Parameter" } @for r in runs { th scope="col" { (display_name(r)) } } } }
                tbody { @for key in &params {
                    @let values: Vec<Option<&str>> = runs.iter().map(|r| value_of(&r.data.params, key)).collect();
                    @let differs = values.iter().any(|v| *v != values[0]);
                    tr.diff[differs] {
                        th scope="row" { (key) @if differs { span.muted { " (differs)" } } }
                        @for v in &values { td { (v.unwrap_or("—")) } }
                    }
                } }
            } }
        }
        h2 { "Metrics" }
        @if metric_keys.is_empty() { p.empty { "None of these runs has metrics." } } @else {
            div.runs { table.wide {
                caption { "Latest values" }
                thead { tr { th scope="col" { "Metric" } @for r in runs { th.num scope="col" { (display_name(r)) } } } }
                tbody { @for key in &metric_keys { tr {
                    th scope="row" { (key) }
                    @for r in runs { td.num { (r.data.metrics.iter().find(|m| m.key == **key).map(|m| chart::short_number(m.value.0)).unwrap_or_else(|| "—".into())) } }
                } } }
            } }
        }
        div.charts {
            @for (key, series) in &cmp.histories {
                figure.chart {
                    h3 { (key) }
                    (chart::line_chart(&format!("{key} by step, one curve per run"), "step", key, series))
                }
            }
        }
        h2 { "Scatter" }
        form.inline method="get" action="/ui/compare" {
            @for id in &run_ids { input type="hidden" name="run" value=(id); }
            label for="x" { "x" }
            select id="x" name="x" { @for c in &numeric { option value=(c.id()) selected[Some(c) == x.as_ref()] { (c.id()) } } }
            label for="y" { "y" }
            select id="y" name="y" { @for c in &numeric { option value=(c.id()) selected[Some(c) == y.as_ref()] { (c.id()) } } }
            button.quiet type="submit" { "Plot" }
        }
        @if let (Some(x), Some(y)) = (&x, &y) {
            @let dots: Vec<Dot> = runs.iter().enumerate().map(|(i, r)| Dot { label: display_name(r).to_string(), colour: i, x: number(r, x), y: number(r, y) }).collect();
            (chart::scatter(&format!("{} against {}", y.id(), x.id()), &x.id(), &y.id(), &dots))
        }
    };
    layout::page(
        Section::Experiments,
        viewer,
        &[("Experiments".into(), "/ui/experiments".into())],
        &format!("Comparing {} runs", runs.len()),
        body,
    )
}

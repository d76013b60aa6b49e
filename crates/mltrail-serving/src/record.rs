//! What the prediction log holds, as types: a [`PredictionRecord`] per served row, a
//! [`FeedbackRecord`] per label, reward or displayed ranking, an [`ExplanationRecord`] per
//! explanation computed after the fact, and the one list of archive columns ([`COLUMNS`]) that
//! all are stored in.
//!
//! A log segment holds each record as JSON (`{"type": "prediction", …}`); the archive holds the
//! same records as Parquet columns. Inputs, outputs, labels and rankings keep the shape the model
//! or the caller gave them, so they stay JSON text in both ([`serde_json::value::RawValue`]): a
//! record is read and re-stored without rebuilding them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Number;

/// One log record.
// Predictions are most of the records read and written; boxing them to even out the variants
// would cost an allocation each for the rarer feedback and explanations' sake.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogRecord {
    Prediction(PredictionRecord),
    Feedback(FeedbackRecord),
    Explanation(ExplanationRecord),
}

/// Every field either record has, read in one pass. serde's internally tagged enums buffer a
/// record before choosing its variant, and a buffered record cannot keep its JSON fields as
/// raw text; this reads the fields straight from the input instead.
#[derive(Deserialize)]
struct WireRecord {
    #[serde(rename = "type")]
    kind: String,
    id: uuid::Uuid,
    #[serde(default)]
    time_ms: i64,
    #[serde(default)]
    deployment: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    arm: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    propensity: Option<f64>,
    #[serde(default)]
    latency_us: i64,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    inputs: Option<Box<RawValue>>,
    #[serde(default)]
    outputs: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    label: Option<Box<RawValue>>,
    #[serde(default)]
    reward: Option<Number>,
    #[serde(default, deserialize_with = "present")]
    ranking: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    clicked: Option<Box<RawValue>>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    sealed: Option<Vec<String>>,
    #[serde(default)]
    sealed_inputs: Option<String>,
    #[serde(default)]
    explanation: Option<Box<RawValue>>,
    #[serde(default)]
    experiment: Option<String>,
    #[serde(default)]
    policy_version: Option<String>,
    #[serde(default)]
    returned: Option<bool>,
    #[serde(default)]
    request_key: Option<String>,
    #[serde(default)]
    shadow_of: Option<uuid::Uuid>,
}

/// A field that is there, `null` included: feedback whose label is `null` is still feedback
/// with a label, as the caller sent it. (An absent field is `None` through `default`.)
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for LogRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = WireRecord::deserialize(deserializer)?;
        let empty = || RawValue::from_string("{}".to_string()).map_err(serde::de::Error::custom);
        match RecordKind::parse(&w.kind) {
            Some(RecordKind::Prediction) => Ok(LogRecord::Prediction(PredictionRecord {
                id: w.id,
                time_ms: w.time_ms,
                deployment: w.deployment,
                model: w.model,
                version: w.version,
                digest: w.digest,
                arm: w.arm,
                latency_us: w.latency_us,
                trace_id: w.trace_id,
                inputs: w.inputs.map_or_else(empty, Ok)?,
                outputs: w.outputs.map_or_else(empty, Ok)?,
                subject: w.subject,
                sealed: w.sealed,
                sealed_inputs: w.sealed_inputs,
                explanation: w.explanation,
                signature: w.policy.map(|policy| Signature {
                    // Left out of the log when it is the policy's name (`group_json`).
                    experiment: w.experiment.unwrap_or_else(|| policy.clone()),
                    policy,
                    policy_version: w.policy_version.unwrap_or_default(),
                    returned: w.returned.unwrap_or(true),
                    propensity: w.propensity,
                    request_key: w.request_key,
                    shadow_of: w.shadow_of,
                }),
            })),
            Some(RecordKind::Feedback) => Ok(LogRecord::Feedback(FeedbackRecord {
                id: w.id,
                time_ms: w.time_ms,
                deployment: w.deployment,
                label: w.label,
                reward: w.reward,
                ranking: w.ranking,
                clicked: w.clicked,
            })),
            Some(RecordKind::Explanation) => Ok(LogRecord::Explanation(ExplanationRecord {
                id: w.id,
                time_ms: w.time_ms,
                deployment: w.deployment,
                explanation: w
                    .explanation
                    .ok_or_else(|| serde::de::Error::missing_field("explanation"))?,
            })),
            None => Err(serde::de::Error::unknown_variant(
                &w.kind,
                &["prediction", "feedback", "explanation"],
            )),
        }
    }
}

/// One served row: which model version answered, what it was given, what it said.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PredictionRecord {
    #[schema(value_type = String, format = "uuid")]
    pub id: uuid::Uuid,
    pub time_ms: i64,
    pub deployment: String,
    pub model: String,
    pub version: String,
    /// BLAKE3 of the model file that answered.
    pub digest: String,
    /// The routing arm that answered, as its policy names it (`credit@challenger`); always
    /// written, `null` for a deployment without a policy.
    pub arm: Option<String>,
    pub latency_us: i64,
    /// The W3C trace id (32 lowercase hex digits) the request carried in `traceparent`, so a
    /// log line, a trace and the stored prediction join on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The row's inputs as a JSON object (column → value); on a sealed record, those that are
    /// not personal data.
    #[schema(value_type = Object)]
    pub inputs: Box<RawValue>,
    /// The row's outputs as a JSON object (output name → value).
    #[schema(value_type = Object)]
    pub outputs: Box<RawValue>,
    /// Whom the row is about, as the subject's keyed hash (`mltrail_core::privacy`), when the
    /// deployment stores personal data sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The input columns that are personal data, whose values are in `sealed_inputs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Vec<String>>,
    /// Those columns' values as one JSON object sealed with the subject's key
    /// (`mltrail_core::privacy::SEALED_PREFIX` and base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_inputs: Option<String>,
    /// Why the model answered as it did (`mltrail serve --explain always`): the explanation
    /// computed while serving, as a JSON object (`crate::explanation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub explanation: Option<Box<RawValue>>,
    /// The log signature of a routed prediction: which policy chose the arm, with what
    /// probability, and whether its answer was returned.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = RoutedFields)]
    pub signature: Option<Signature>,
}

/// What a routing policy adds to each prediction record: enough to tell the records one
/// policy caused from another's, and to weight them by how likely the choice was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signature {
    pub experiment: String,
    /// The policy's name.
    pub policy: String,
    /// The first 16 hex digits of the digest of the policy's canonical JSON.
    pub policy_version: String,
    /// `false` for a shadow arm's prediction: logged, never returned to the caller.
    pub returned: bool,
    /// The probability that the policy chose this arm for this request at that moment
    /// (absent for a shadow's prediction, which no choice made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propensity: Option<f64>,
    /// The request key's value (the policy's `key` column), when the policy names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_key: Option<String>,
    /// A shadow's prediction: the id of the prediction returned for the same row (its
    /// feedback is the shadow's too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_of: Option<uuid::Uuid>,
}

/// The schema of a record's flattened `Option<Signature>`: the log signature's fields, each
/// present only on a routed prediction.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only.
struct RoutedFields {
    experiment: Option<String>,
    /// The policy's name.
    policy: Option<String>,
    /// The first 16 hex digits of the digest of the policy's canonical JSON.
    policy_version: Option<String>,
    /// `false` for a shadow arm's prediction: logged, never returned to the caller.
    returned: Option<bool>,
    /// The probability that the policy chose this arm for this request.
    propensity: Option<f64>,
    request_key: Option<String>,
    /// A shadow's prediction: the id of the prediction returned for the same row.
    shadow_of: Option<String>,
}

/// An explanation of an earlier prediction, computed when first asked for and kept.
#[derive(Debug, Clone, Serialize)]
pub struct ExplanationRecord {
    /// The prediction it explains.
    pub id: uuid::Uuid,
    pub time_ms: i64,
    pub deployment: String,
    pub explanation: Box<RawValue>,
}

/// What came back about a prediction: its label, a reward, or the ranking the user was shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeedbackRecord {
    /// The prediction it is about.
    #[schema(value_type = String, format = "uuid")]
    pub id: uuid::Uuid,
    pub time_ms: i64,
    pub deployment: String,
    /// Any JSON value, as the caller sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub label: Option<Box<RawValue>>,
    /// Kept as the caller wrote it (`1` stays `1`); the archive stores it as a double.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub reward: Option<Number>,
    /// The items displayed, in display order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    pub ranking: Option<Box<RawValue>>,
    /// The items clicked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    pub clicked: Option<Box<RawValue>>,
}

impl LogRecord {
    pub fn id(&self) -> uuid::Uuid {
        match self {
            LogRecord::Prediction(p) => p.id,
            LogRecord::Feedback(f) => f.id,
            LogRecord::Explanation(e) => e.id,
        }
    }

    pub fn time_ms(&self) -> i64 {
        match self {
            LogRecord::Prediction(p) => p.time_ms,
            LogRecord::Feedback(f) => f.time_ms,
            LogRecord::Explanation(e) => e.time_ms,
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            LogRecord::Prediction(_) => RecordKind::Prediction,
            LogRecord::Feedback(_) => RecordKind::Feedback,
            LogRecord::Explanation(_) => RecordKind::Explanation,
        }
    }

    /// The record's value in one archive column; `Cell::Null` where it has none.
    pub fn cell(&self, column: &str) -> Cell<'_> {
        match (self, column) {
            (_, "type") => Cell::Text(self.kind().as_str()),
            (_, "time_ms") => Cell::Int(self.time_ms()),
            (LogRecord::Prediction(p), _) => p.cell(column),
            (LogRecord::Feedback(f), _) => f.cell(column),
            (LogRecord::Explanation(e), _) => e.cell(column),
        }
    }

    /// Equality of what the records say, for de-duplicating an export.
    pub fn same_as(&self, other: &LogRecord) -> bool {
        self.id() == other.id()
            && self.time_ms() == other.time_ms()
            && self.kind() == other.kind()
            && serde_json::to_string(self).ok() == serde_json::to_string(other).ok()
    }
}

impl PredictionRecord {
    fn cell(&self, column: &str) -> Cell<'_> {
        match column {
            "id" => Cell::Id(self.id),
            "deployment" => Cell::Text(&self.deployment),
            "model" => Cell::Text(&self.model),
            "version" => Cell::Text(&self.version),
            "digest" => Cell::Text(&self.digest),
            "arm" => self.arm.as_deref().map_or(Cell::Null, Cell::Text),
            "experiment" => self
                .signature
                .as_ref()
                .map_or(Cell::Null, |s| Cell::Text(&s.experiment)),
            "policy" => self
                .signature
                .as_ref()
                .map_or(Cell::Null, |s| Cell::Text(&s.policy)),
            "policy_version" => self
                .signature
                .as_ref()
                .map_or(Cell::Null, |s| Cell::Text(&s.policy_version)),
            "returned" => self
                .signature
                .as_ref()
                .map_or(Cell::Null, |s| Cell::Bool(s.returned)),
            "propensity" => self
                .signature
                .as_ref()
                .and_then(|s| s.propensity)
                .map_or(Cell::Null, Cell::Float),
            "request_key" => self
                .signature
                .as_ref()
                .and_then(|s| s.request_key.as_deref())
                .map_or(Cell::Null, Cell::Text),
            "shadow_of" => self
                .signature
                .as_ref()
                .and_then(|s| s.shadow_of)
                .map_or(Cell::Null, Cell::Id),
            "latency_us" => Cell::Int(self.latency_us),
            "trace_id" => self.trace_id.as_deref().map_or(Cell::Null, Cell::Text),
            "inputs" => Cell::Json(self.inputs.get()),
            "outputs" => Cell::Json(self.outputs.get()),
            "subject" => self.subject.as_deref().map_or(Cell::Null, Cell::Text),
            "sealed" => self.sealed.as_deref().map_or(Cell::Null, Cell::Names),
            "sealed_inputs" => self.sealed_inputs.as_deref().map_or(Cell::Null, Cell::Text),
            "explanation" => json_cell(self.explanation.as_deref()),
            _ => Cell::Null,
        }
    }
}

impl ExplanationRecord {
    fn cell(&self, column: &str) -> Cell<'_> {
        match column {
            "id" => Cell::Id(self.id),
            "deployment" => Cell::Text(&self.deployment),
            "explanation" => Cell::Json(self.explanation.get()),
            _ => Cell::Null,
        }
    }
}

impl FeedbackRecord {
    fn cell(&self, column: &str) -> Cell<'_> {
        match column {
            "id" => Cell::Id(self.id),
            "deployment" => Cell::Text(&self.deployment),
            "label" => json_cell(self.label.as_deref()),
            "ranking" => json_cell(self.ranking.as_deref()),
            "clicked" => json_cell(self.clicked.as_deref()),
            "reward" => self
                .reward
                .as_ref()
                .and_then(Number::as_f64)
                .map_or(Cell::Null, Cell::Float),
            _ => Cell::Null,
        }
    }
}

/// A JSON field's cell: a JSON `null` is a missing cell, as Parquet readers expect.
fn json_cell(value: Option<&RawValue>) -> Cell<'_> {
    match value.map(RawValue::get) {
        None | Some("null") => Cell::Null,
        Some(text) => Cell::Json(text),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Prediction,
    Feedback,
    Explanation,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Prediction => "prediction",
            RecordKind::Feedback => "feedback",
            RecordKind::Explanation => "explanation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "prediction" => Some(RecordKind::Prediction),
            "feedback" => Some(RecordKind::Feedback),
            "explanation" => Some(RecordKind::Explanation),
            _ => None,
        }
    }
}

/// How an archive column stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// A 64-bit integer.
    Int,
    /// JSON text, parsed back when read (inputs, outputs, labels, rankings).
    JsonText,
    /// A double.
    Float,
    /// A boolean.
    Bool,
}

/// One archive column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
}

const fn column(name: &'static str, kind: ColumnType) -> Column {
    Column { name, kind }
}

/// The archive's columns, in file order: every field of [`PredictionRecord`],
/// [`FeedbackRecord`] and [`ExplanationRecord`], plus `type`. (A test holds every serialized
/// field to a column.)
pub const COLUMNS: [Column; 27] = [
    column("type", ColumnType::Text),
    column("id", ColumnType::Text),
    column("deployment", ColumnType::Text),
    column("model", ColumnType::Text),
    column("version", ColumnType::Text),
    column("digest", ColumnType::Text),
    column("arm", ColumnType::Text),
    column("policy", ColumnType::Text),
    column("time_ms", ColumnType::Int),
    column("latency_us", ColumnType::Int),
    column("inputs", ColumnType::JsonText),
    column("outputs", ColumnType::JsonText),
    column("label", ColumnType::JsonText),
    column("ranking", ColumnType::JsonText),
    column("reward", ColumnType::Float),
    column("propensity", ColumnType::Float),
    column("subject", ColumnType::Text),
    column("sealed", ColumnType::JsonText),
    column("sealed_inputs", ColumnType::Text),
    column("explanation", ColumnType::JsonText),
    column("experiment", ColumnType::Text),
    column("policy_version", ColumnType::Text),
    column("returned", ColumnType::Bool),
    column("request_key", ColumnType::Text),
    column("shadow_of", ColumnType::Text),
    column("trace_id", ColumnType::Text),
    column("clicked", ColumnType::JsonText),
];

/// One record's value in one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Id(uuid::Uuid),
    Int(i64),
    /// JSON text, stored as text.
    Json(&'a str),
    /// Names, stored as a JSON list of strings.
    Names(&'a [String]),
    Float(f64),
    Bool(bool),
}

/// What every row of one request shares in its prediction record.
pub struct RequestRecord<'a> {
    pub time_ms: i64,
    pub deployment: &'a str,
    pub model: &'a str,
    pub version: &'a str,
    pub digest: &'a str,
    /// The routing arm, for a deployment with a policy.
    pub arm: Option<&'a str>,
    pub latency_us: i64,
    /// The request's W3C trace id ([`trace_id_of`]).
    pub trace_id: Option<&'a str>,
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), lowercase;
/// `None` for a header the W3C rules say to ignore (another layout, version `ff`, an all-zero
/// trace or parent id, upper-case hex).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let [version, trace, parent, flags, rest @ ..] = parts.as_slice() else {
        return None;
    };
    let valid = hex(version, 2)
        && *version != "ff"
        && (rest.is_empty() || *version != "00")
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(*trace)
}

impl RequestRecord<'_> {
    /// The record fields between `id` and `inputs`, written once per request: every row then
    /// costs only its id, inputs and outputs ([`write_prediction`]).
    pub fn shared_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b",\"time_ms\":");
        out.extend_from_slice(self.time_ms.to_string().as_bytes());
        for (key, value) in [
            ("deployment", self.deployment),
            ("model", self.model),
            ("version", self.version),
            ("digest", self.digest),
        ] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            let _ = serde_json::to_writer(&mut out, value);
        }
        out.extend_from_slice(b",\"arm\":");
        let _ = serde_json::to_writer(&mut out, &self.arm);
        out.extend_from_slice(b",\"latency_us\":");
        out.extend_from_slice(self.latency_us.to_string().as_bytes());
        if let Some(trace) = self.trace_id {
            // Hex digits only (trace_id_of): nothing to escape.
            out.extend_from_slice(b",\"trace_id\":\"");
            out.extend_from_slice(trace.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"inputs\":");
        out
    }
}

/// Whom a sealed row is about, which of its columns are personal data and their sealed values,
/// as a prediction record writes them.
pub struct SealedRow<'a> {
    /// The subject's keyed hash in hex.
    pub subject: &'a str,
    /// The sealed columns' names as a JSON list.
    pub sealed_json: &'a [u8],
    /// Their values, sealed: `pii1:` and base64url (no character JSON would escape).
    pub sealed_inputs: &'a [u8],
}

/// A prediction record as the log stores it, written without building one: byte for byte
/// what serializing the [`PredictionRecord`] gives, but for a routed record's signature,
/// which leaves out what reading it fills in ([`Signature::group_json`]); a test holds the
/// two together. `inputs` and `outputs` are JSON objects; `shared` comes from
/// [`RequestRecord::shared_json`].
pub fn write_prediction(
    id: &uuid::Uuid,
    shared: &[u8],
    inputs: &[u8],
    outputs: &[u8],
    sealed: Option<SealedRow<'_>>,
    explanation: Option<&[u8]>,
    signature: Option<RowSignature<'_>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(shared.len() + inputs.len() + outputs.len() + 64);
    out.extend_from_slice(b"{\"type\":\"prediction\",\"id\":");
    push_quoted_id(&mut out, id);
    out.extend_from_slice(shared);
    out.extend_from_slice(inputs);
    out.extend_from_slice(b",\"outputs\":");
    out.extend_from_slice(outputs);
    if let Some(row) = sealed {
        // A keyed hash is hex: it needs no escaping.
        out.extend_from_slice(b",\"subject\":\"");
        out.extend_from_slice(row.subject.as_bytes());
        out.extend_from_slice(b"\",\"sealed\":");
        out.extend_from_slice(row.sealed_json);
        out.extend_from_slice(b",\"sealed_inputs\":\"");
        out.extend_from_slice(row.sealed_inputs);
        out.push(b'"');
    }
    if let Some(explanation) = explanation {
        out.extend_from_slice(b",\"explanation\":");
        out.extend_from_slice(explanation);
    }
    if let Some(signature) = signature {
        out.extend_from_slice(signature.group);
        if let Some(p) = signature.propensity {
            out.extend_from_slice(b",\"propensity\":");
            let _ = serde_json::to_writer(&mut out, &p);
        }
        if let Some(key) = signature.request_key {
            out.extend_from_slice(b",\"request_key\":");
            let _ = serde_json::to_writer(&mut out, key);
        }
        if let Some(primary) = signature.shadow_of {
            out.extend_from_slice(b",\"shadow_of\":");
            push_quoted_id(&mut out, primary);
        }
    }
    out.push(b'}');
    out
}

/// A routed row's log signature as [`write_prediction`] writes it.
pub struct RowSignature<'a> {
    /// What every row of one arm shares ([`Signature::group_json`]).
    pub group: &'a [u8],
    pub propensity: Option<f64>,
    pub request_key: Option<&'a str>,
    pub shadow_of: Option<&'a uuid::Uuid>,
}

impl Signature {
    /// `,"experiment":…,"policy":…,"policy_version":…,"returned":false`: the signature's
    /// fields every row routed to one arm of one request shares, as the log stores them:
    /// `experiment` only when it is not the policy's name and `returned` only when false,
    /// which is what reading a record assumes when they are absent. Every row of a routed
    /// request carries its signature, and at 100 rows a request the log's bytes are most of
    /// its cost: the two defaults were 37 of a split's ~114 bytes a row.
    pub fn group_json(experiment: &str, policy: &str, version: &str, returned: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let fields = [
            ("experiment", experiment),
            ("policy", policy),
            ("policy_version", version),
        ];
        let skip = usize::from(experiment == policy);
        for (key, value) in &fields[skip..] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            let _ = serde_json::to_writer(&mut out, value);
        }
        if !returned {
            out.extend_from_slice(b",\"returned\":false");
        }
        out
    }
}

/// `"<hyphenated lowercase uuid>"`.
pub fn push_quoted_id(out: &mut Vec<u8>, id: &uuid::Uuid) {
    out.push(b'"');
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.push(b'"');
}

/// A UUIDv7 for a prediction: the millisecond timestamp plus 74 bits from a per-thread
/// generator seeded from the OS once (no syscall and no shared state per id).
pub fn prediction_id(time_ms: u64) -> uuid::Uuid {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1);
    }
    let next = || {
        STATE.with(|s| {
            // splitmix64
            let mut z = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&next().to_le_bytes());
    random[8..].copy_from_slice(&next().to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(time_ms, &random).into_uuid()
}

/// The millisecond timestamp inside a UUIDv7 (a prediction id says when it was made).
pub fn uuid_v7_time_ms(id: u128) -> u64 {
    (id >> 80) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn trace_ids_are_taken_as_w3c_says() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        // A later version may add fields; version 00 may not.
        assert_eq!(
            trace_id_of(&format!("01-{id}-00f067aa0ba902b7-01-extra")),
            Some(id)
        );
        for bad in [
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string(),
            format!("00-{id}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00f067aa0ba902b7"),
            "not a traceparent".to_string(),
        ] {
            assert_eq!(trace_id_of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_fast_writer_writes_what_serde_writes() {
        let id = prediction_id(1_795_745_151_565);
        let shared = RequestRecord {
            time_ms: 1_795_745_151_565,
            deployment: "credit \"prod\"",
            model: "credit",
            version: "3",
            digest: "ab12",
            arm: None,
            latency_us: 250,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        }
        .shared_json();
        let fast = write_prediction(
            &id,
            &shared,
            br#"{"income":5.5}"#,
            br#"{"label":1}"#,
            None,
            None,
            None,
        );
        let typed = LogRecord::Prediction(PredictionRecord {
            id,
            time_ms: 1_795_745_151_565,
            deployment: "credit \"prod\"".into(),
            model: "credit".into(),
            version: "3".into(),
            digest: "ab12".into(),
            arm: None,
            latency_us: 250,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            inputs: raw(r#"{"income":5.5}"#),
            outputs: raw(r#"{"label":1}"#),
            subject: None,
            sealed: None,
            sealed_inputs: None,
            explanation: None,
            signature: None,
        });
        assert_eq!(
            String::from_utf8(fast.clone()).unwrap(),
            serde_json::to_string(&typed).unwrap()
        );
        let back: LogRecord = serde_json::from_slice(&fast).unwrap();
        assert!(back.same_as(&typed));

        let hash = mltrail_core::privacy::MasterKey::from_text(&"ab".repeat(32))
            .unwrap()
            .subject_hash("C-1");
        let subject = hash.to_hex();
        let sealed_fast = write_prediction(
            &id,
            &shared,
            br#"{"income":5.5}"#,
            br#"{"label":1}"#,
            Some(SealedRow {
                subject: &subject,
                sealed_json: br#"["email"]"#,
                sealed_inputs: b"pii1:xyz",
            }),
            None,
            None,
        );
        let LogRecord::Prediction(mut p) = typed else {
            unreachable!()
        };
        p.subject = Some(subject.clone());
        p.sealed = Some(vec!["email".into()]);
        p.sealed_inputs = Some("pii1:xyz".into());
        let typed = LogRecord::Prediction(p);
        assert_eq!(
            String::from_utf8(sealed_fast.clone()).unwrap(),
            serde_json::to_string(&typed).unwrap()
        );
        let back: LogRecord = serde_json::from_slice(&sealed_fast).unwrap();
        assert!(back.same_as(&typed));

        let explained_fast = write_prediction(
            &id,
            &shared,
            br#"{"income":5.5}"#,
            br#"{"label":1}"#,
            None,
            Some(br#"{"method":"linear","values":{"income":0.5}}"#),
            None,
        );
        let LogRecord::Prediction(mut p) = typed else {
            unreachable!()
        };
        p.subject = None;
        p.sealed = None;
        p.sealed_inputs = None;
        p.explanation = Some(raw(r#"{"method":"linear","values":{"income":0.5}}"#));
        let typed = LogRecord::Prediction(p);
        assert_eq!(
            String::from_utf8(explained_fast.clone()).unwrap(),
            serde_json::to_string(&typed).unwrap()
        );
        let back: LogRecord = serde_json::from_slice(&explained_fast).unwrap();
        assert!(back.same_as(&typed));

        let routed_shared = RequestRecord {
            time_ms: 1_795_745_151_565,
            deployment: "credit \"prod\"",
            model: "credit",
            version: "3",
            digest: "ab12",
            arm: Some("credit@challenger"),
            latency_us: 250,
            trace_id: None,
        }
        .shared_json();
        let group = Signature::group_json("exp", "bandit", "0123456789abcdef", true);
        let routed_fast = write_prediction(
            &id,
            &routed_shared,
            br#"{"income":5.5}"#,
            br#"{"label":1}"#,
            None,
            None,
            Some(RowSignature {
                group: &group,
                propensity: Some(0.1 + 0.2),
                request_key: Some("user \"7\""),
                shadow_of: None,
            }),
        );
        let LogRecord::Prediction(mut p) = typed else {
            unreachable!()
        };
        p.explanation = None;
        p.trace_id = None;
        p.arm = Some("credit@challenger".into());
        p.signature = Some(Signature {
            experiment: "exp".into(),
            policy: "bandit".into(),
            policy_version: "0123456789abcdef".into(),
            returned: true,
            propensity: Some(0.1 + 0.2),
            request_key: Some("user \"7\"".into()),
            shadow_of: None,
        });
        let typed = LogRecord::Prediction(p);
        // The log leaves out `returned: true`; the rest is the serialized record's.
        assert_eq!(
            String::from_utf8(routed_fast.clone()).unwrap(),
            serde_json::to_string(&typed)
                .unwrap()
                .replace(r#","returned":true"#, "")
        );
        let back: LogRecord = serde_json::from_slice(&routed_fast).unwrap();
        assert!(back.same_as(&typed));
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&typed).unwrap()
        );
        let LogRecord::Prediction(p) = back else {
            unreachable!()
        };
        assert_eq!(p.signature.unwrap().propensity, Some(0.1 + 0.2));
        // An experiment named as its policy is left out too, and read back.
        let group = Signature::group_json("bandit", "bandit", "0123456789abcdef", false);
        let shadowed = write_prediction(
            &id,
            &routed_shared,
            b"{}",
            br#"{"label":1}"#,
            None,
            None,
            Some(RowSignature {
                group: &group,
                propensity: None,
                request_key: None,
                shadow_of: Some(&id),
            }),
        );
        let text = String::from_utf8(shadowed.clone()).unwrap();
        assert!(!text.contains("experiment") && text.contains(r#""returned":false"#));
        let LogRecord::Prediction(p) = serde_json::from_slice(&shadowed).unwrap() else {
            panic!("a prediction")
        };
        let signature = p.signature.unwrap();
        assert_eq!(
            (signature.experiment.as_str(), signature.returned),
            ("bandit", false)
        );
        assert_eq!(uuid_v7_time_ms(id.as_u128()), 1_795_745_151_565);
    }

    #[test]
    fn every_serialized_field_has_a_column() {
        let prediction = LogRecord::Prediction(PredictionRecord {
            id: prediction_id(5),
            time_ms: 5,
            deployment: "d".into(),
            model: "m".into(),
            version: "1".into(),
            digest: "x".into(),
            arm: Some("a".into()),
            latency_us: 7,
            trace_id: None,
            inputs: raw("{}"),
            outputs: raw("{}"),
            subject: Some("ab".repeat(32)),
            sealed: Some(vec!["email".into()]),
            sealed_inputs: Some("pii1:xyz".into()),
            explanation: Some(raw(r#"{"method":"linear"}"#)),
            signature: Some(Signature {
                experiment: "e".into(),
                policy: "thompson".into(),
                policy_version: "0123456789abcdef".into(),
                returned: false,
                propensity: Some(0.25),
                request_key: Some("u1".into()),
                shadow_of: Some(prediction_id(4)),
            }),
        });
        let explanation = LogRecord::Explanation(ExplanationRecord {
            id: prediction_id(5),
            time_ms: 11,
            deployment: "d".into(),
            explanation: raw(r#"{"method":"linear"}"#),
        });
        let feedback = LogRecord::Feedback(FeedbackRecord {
            id: prediction_id(5),
            time_ms: 9,
            deployment: "d".into(),
            label: Some(raw("1")),
            reward: Some(Number::from(2)),
            ranking: Some(raw(r#"["b","a"]"#)),
            clicked: Some(raw(r#"["a"]"#)),
        });
        for record in [prediction, feedback, explanation] {
            let value = serde_json::to_value(&record).unwrap();
            for key in value.as_object().unwrap().keys() {
                assert!(
                    COLUMNS.iter().any(|c| c.name == key),
                    "field `{key}` has no archive column"
                );
                assert_ne!(record.cell(key), Cell::Null, "field `{key}` has no cell");
            }
        }
    }

    #[test]
    fn a_null_label_is_kept_in_the_log_and_missing_in_the_archive() {
        let text = r#"{"type":"feedback","id":"0190a5b2-0000-7000-8000-000000000001","time_ms":3,"deployment":"d","label":null}"#;
        let record: LogRecord = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&record).unwrap(), text);
        assert_eq!(record.cell("label"), Cell::Null);
    }

    #[test]
    fn feedback_keeps_the_reward_as_written() {
        let text = r#"{"type":"feedback","id":"0190a5b2-0000-7000-8000-000000000001","time_ms":3,"deployment":"d","reward":1}"#;
        let record: LogRecord = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&record).unwrap(), text);
        assert_eq!(record.cell("reward"), Cell::Float(1.0));
    }
}

//! MLflow clients send the same fields as a query string (GET) or a JSON body (POST, PATCH,
//! DELETE), and send int64 values either as numbers or as strings. [`Req`] merges both sources
//! into one map and offers typed accessors whose errors name the field.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use mltrail_core::ExperimentId;
use mltrail_store::PageToken;
use serde_json::{Map, Value};

pub struct Req {
    fields: Map<String, Value>,
    /// Query keys given more than once, whose values were gathered into a list (a list where a
    /// string belongs is the caller's mistake unless it came from such a key). Usually empty.
    repeated_query: Vec<String>,
    pub actor: String,
}

/// A request before its fields are parsed: for handlers with a typed fast path, which fall
/// back to [`Req`] through [`RawReq::fields`].
pub struct RawReq {
    pub actor: String,
    pub query: Option<String>,
    pub body: Bytes,
    /// The caller whose permission check the guard left to the handler
    /// ([`crate::permissions::RunCheck`]); `None` when the guard decided. A handler of a
    /// [`crate::permissions::deferred`] route must call [`RawReq::authorize_run`].
    pub run_check: Option<crate::permissions::RunCheck>,
}

impl RawReq {
    /// Makes the permission check the guard deferred ([`crate::permissions::deferred`]): may the
    /// caller log to `run` and link `models`? A 403 (counted and logged as the guard's
    /// refusals are) when not; nothing to do when the guard decided already.
    pub async fn authorize_run<'a>(
        &self,
        state: &crate::AppState,
        run: &str,
        models: impl Iterator<Item = &'a str>,
    ) -> Result<(), ApiError> {
        let Some(check) = &self.run_check else {
            return Ok(());
        };
        let caller = &check.caller;
        let Some(grants) = &caller.grants else {
            return Ok(());
        };
        let checked = crate::permissions::run_logging_allowed(
            &state.store,
            state.artifacts.uri(),
            &state.auth.owners,
            caller.principal.name(),
            grants,
            run,
            models,
        )
        .await;
        if checked
            .as_ref()
            .is_err_and(|e| e.status == axum::http::StatusCode::FORBIDDEN)
        {
            state.auth.counters.count_denial(caller, check.uri.path());
        }
        checked
    }

    /// The general parse of this request.
    pub fn fields(&self) -> Result<Req, ApiError> {
        Req::from_parts(self.actor.clone(), self.query.as_deref(), &self.body)
    }
}

impl<S: Send + Sync> FromRequest<S> for RawReq {
    type Rejection = ApiError;

    async fn from_request(mut req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.method(), req.headers())?;
        let actor = actor_of(req.headers(), req.extensions());
        let query = req.uri().query().map(str::to_string);
        let run_check = req
            .extensions_mut()
            .remove::<crate::permissions::RunCheck>();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::body_rejected(e, "INVALID_PARAMETER_VALUE"))?;
        Ok(RawReq {
            actor,
            query,
            body,
            run_check,
        })
    }
}

impl<S: Send + Sync> FromRequest<S> for Req {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        RawReq::from_request(req, state).await?.fields()
    }
}

impl Req {
    /// Merges the query string and the JSON body; errors name what is malformed.
    pub fn from_parts(actor: String, query: Option<&str>, body: &[u8]) -> Result<Req, ApiError> {
        let mut fields = Map::new();
        let mut repeated_query = Vec::new();
        if let Some(query) = query {
            for (k, v) in form_pairs(query) {
                match fields.get_mut(&k) {
                    Some(Value::Array(items)) => items.push(Value::String(v)),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, Value::String(v)]);
                        repeated_query.push(k);
                    }
                    None => {
                        fields.insert(k, Value::String(v));
                    }
                }
            }
        }
        if !body.iter().all(|b| b.is_ascii_whitespace()) {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => {
                    // A body field replaces the query's, list and all.
                    repeated_query.retain(|k| !map.contains_key(k));
                    fields.extend(map);
                }
                Ok(_) => return Err(ApiError::invalid("Request body must be a JSON object")),
                Err(e) => {
                    return Err(ApiError::invalid(format!(
                        "Malformed JSON request body: {e}"
                    )))
                }
            }
        }
        Ok(Req {
            fields,
            repeated_query,
            actor,
        })
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// A request that writes (POST, PUT, PATCH) must say its body is JSON, as MLflow requires.
/// Beyond matching MLflow, this is what keeps other web sites out: a page can make a browser
/// send a `text/plain` or form POST to a loopback server without asking, but not a JSON one.
pub(crate) fn json_content_type(
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    use axum::http::Method;
    if ![Method::POST, Method::PUT, Method::PATCH].contains(method) {
        return Ok(());
    }
    match content_type(headers) {
        None => Err(ApiError::invalid(
            "Bad Request. Content-Type header is missing: send the body as application/json.",
        )),
        Some(sent) if is_media(sent, "application/json") => Ok(()),
        Some(sent) => Err(ApiError::invalid(format!(
            "Bad Request. Content-Type must be application/json, got '{sent}'."
        ))),
    }
}

/// The `Content-Type` header as sent (`(not text)` when it is not text); `None` without one.
pub(crate) fn content_type(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}

/// Whether a `Content-Type` value names `media` (lowercase), whatever its parameters and case:
/// `text/CSV; charset=utf-8` is `text/csv`. Runs on every scoring request, so it allocates
/// nothing.
pub(crate) fn is_media(content_type: &str, media: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media))
}

/// Who made the request, as the audit trail names it: the caller [`crate::auth::AuthGate`]
/// established with auth on; with auth off (no middleware runs: it measured 8 % of log-metric
/// throughput at 64 connections) the Basic user name the request claims, else anonymous.
pub(crate) fn actor_of(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> String {
    match extensions.get::<std::sync::Arc<crate::auth::Caller>>() {
        Some(caller) => caller.principal.to_string(),
        None => crate::auth::claimed(headers).to_string(),
    }
}

/// The actor, for handlers that take no [`Req`].
pub struct Actor(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Actor(actor_of(&parts.headers, &parts.extensions)))
    }
}

/// A JSON body decoded into the handler's own request type (the type the OpenAPI document
/// describes). A field of the wrong type is refused, naming the field, never coerced.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.method(), req.headers())?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::body_rejected(e, "INVALID_PARAMETER_VALUE"))?;
        decode_body(&body).map(Body)
    }
}

/// A request body decoded into `T`; errors name the field (`a.b[2]`) that failed.
pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let decoded: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing or unknown field in its message. A missing field's path is
        // its object's; an unknown one's is the field itself.
        let named = |prefix: &str| {
            inner
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_once('`'))
                .map(|(name, rest)| {
                    let field = match path.as_str() {
                        "." => name.to_string(),
                        at if at == name || at.ends_with(&format!(".{name}")) => at.to_string(),
                        outer => format!("{outer}.{name}"),
                    };
                    // serde_json ends its messages with where in the text it was.
                    let rest = rest.trim_start_matches(", ");
                    let rest = rest.rsplit_once(" at line ").map_or(rest, |(r, _)| r);
                    (field, rest.to_string())
                })
        };
        if let Some((field, _)) = named("missing field `") {
            return ApiError::invalid(format!("`{field}` is required"))
                .at_column(Some(&field), None);
        }
        if let Some((field, expected)) = named("unknown field `") {
            return ApiError::invalid(format!("`{field}` is not a field here: {expected}"))
                .at_column(Some(&field), None);
        }
        if path == "." {
            ApiError::invalid(format!("the body is not the JSON object expected: {inner}"))
        } else {
            ApiError::invalid(format!("`{path}`: {inner}")).at_column(Some(&path), None)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("the body has more after its JSON value: {e}")))?;
    Ok(decoded)
}

pub(crate) fn decode_base64(input: &str) -> Option<String> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine as _;
    // Clients differ on padding; the credentials are the same either way.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    String::from_utf8(LENIENT.decode(input).ok()?).ok()
}

impl Req {
    /// Every field, from the query string and the body merged.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    pub fn value(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// A string field; numbers and booleans are accepted and rendered as MLflow would. A list
    /// or an object is refused, naming the field (a repeated query key counts as its first
    /// value, as Flask reads it).
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, ApiError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        match value {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            Value::Array(items) if self.repeated_query.iter().any(|k| k == key) => {
                Ok(items.first().and_then(Value::as_str).map(str::to_string))
            }
            other => Err(ApiError::invalid(format!(
                "Parameter '{key}' must be a string, got {other}"
            ))),
        }
    }

    pub fn str(&self, key: &str) -> Result<String, ApiError> {
        self.opt_str(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::missing(key))
    }

    /// The run id, sent as `run_id` or the legacy `run_uuid`.
    pub fn run_id(&self) -> Result<String, ApiError> {
        match self.opt_str("run_id")?.filter(|s| !s.is_empty()) {
            Some(id) => Ok(id),
            None => self
                .opt_str("run_uuid")?
                .ok_or_else(|| ApiError::missing("run_id")),
        }
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => as_i64(v).map(Some).ok_or_else(|| {
                ApiError::invalid(format!("Parameter '{key}' must be an integer, got {v}"))
            }),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(format!(
                "Parameter '{key}' must be a boolean, got {v}"
            ))),
        }
    }

    /// A repeated string field (`order_by`, `experiment_ids`, `stages`).
    pub fn str_list(&self, key: &str) -> Vec<String> {
        match self.value(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().filter_map(scalar_string).collect(),
            Some(v) => scalar_string(v).into_iter().collect(),
        }
    }

    /// `max_results` with a default and an upper bound, as MLflow enforces them.
    pub fn max_results(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        let n = self.opt_i64("max_results")?.unwrap_or(default);
        if n <= 0 || n > max {
            return Err(ApiError::invalid(format!("Invalid value {n} for parameter 'max_results' supplied. It must be between 1 and {max}.")));
        }
        Ok(n)
    }

    pub fn experiment_id(&self) -> Result<ExperimentId, ApiError> {
        let raw = self.str("experiment_id")?;
        parse_experiment_id(&raw)
    }

    /// The page a search asks for (`page_token`).
    pub fn page(&self) -> Result<PageToken, ApiError> {
        Ok(PageToken::parse(self.opt_str("page_token")?.as_deref())?)
    }
}

/// A required non-empty string field of a native (`/api/v1`) JSON body, `what` saying what it
/// holds; the refusal names the field.
pub(crate) fn body_text<'a>(body: &'a Value, field: &str, what: &str) -> Result<&'a str, ApiError> {
    required_text(body.get(field).and_then(Value::as_str), field, what)
}

/// For a typed body's optional field that may be left out but not given as `null` (where
/// `null` and absent would otherwise read alike): `#[serde(default, deserialize_with =
/// "crate::req::non_null")]`.
pub(crate) fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// For a typed body's field whose `null` means something other than leaving it out:
/// `#[serde(default, deserialize_with = "crate::req::present")]` on an `Option<Option<T>>`
/// reads absent as `None`, `null` as `Some(None)`.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// A body value given as text or as a number (a duration, a time, a version number).
pub(crate) enum TextOrNumber {
    Text(String),
    Number(serde_json::Number),
}

/// Reads a [`TextOrNumber`], refusing anything else with `expecting`: serde's untagged enums
/// refuse without saying what they expected. The caller refuses a number it cannot take with
/// [`not_expected`].
pub(crate) fn text_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
) -> Result<TextOrNumber, D::Error> {
    struct Visitor(&'static str);
    impl serde::de::Visitor<'_> for Visitor {
        type Value = TextOrNumber;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(TextOrNumber::Text(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(TextOrNumber::Number(v.into()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(TextOrNumber::Number(v.into()))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            serde_json::Number::from_f64(v)
                .map(TextOrNumber::Number)
                .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }
    deserializer.deserialize_any(Visitor(expecting))
}

/// The refusal of a number a [`TextOrNumber`] field cannot take.
pub(crate) fn not_expected<E: serde::de::Error>(number: &serde_json::Number, expecting: &str) -> E {
    E::custom(format!("invalid value: {number}, expected {expecting}"))
}

/// A required text field (of a typed body, [`Body`], or an untyped one): given and not empty.
pub(crate) fn required_text<'a>(
    value: Option<&'a str>,
    field: &str,
    what: &str,
) -> Result<&'a str, ApiError> {
    value.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::invalid(format!("`{field}` ({what}) is required")).at_column(Some(field), None)
    })
}

pub fn parse_experiment_id(raw: &str) -> Result<ExperimentId, ApiError> {
    ExperimentId::parse(raw).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid experiment id '{raw}': experiment ids are non-negative integers"
        ))
    })
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole_f64)),
        Value::String(s) => i64_from_str(s),
        _ => None,
    }
}

/// An int64 sent as a JSON float with no fraction (`3.0`). One outside int64's range (`1e300`,
/// `99999999999999999999`) is refused, never clamped to a value the client did not send.
pub(crate) fn whole_f64(f: f64) -> Option<i64> {
    // 2^63 is exact as a double; every whole double below it and at or above -2^63 fits.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// An int64 sent as a string, as protobuf JSON allows.
pub(crate) fn i64_from_str(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

/// A double sent as a string: protobuf JSON's "NaN" / "Infinity" / "-Infinity", or digits.
pub(crate) fn f64_from_str(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.trim().parse().ok(),
    }
}

/// A metric value: a JSON number, or protobuf JSON's "NaN" / "Infinity" / "-Infinity".
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => f64_from_str(s),
        _ => None,
    }
}

/// `[{"key": …, "value": …}]` lists (tags, params).
pub fn key_values(
    value: Option<&Value>,
    field: &str,
) -> Result<Vec<mltrail_store::KeyValue>, ApiError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items = value.as_array().ok_or_else(|| {
        ApiError::invalid(format!(
            "Parameter '{field}' must be a list of {{key, value}} objects"
        ))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let key = item
                .get("key")
                .and_then(scalar_string)
                .ok_or_else(|| ApiError::invalid(format!("{field}[{i}] is missing 'key'")))?;
            let value = match item.get("value") {
                None | Some(Value::Null) => String::new(),
                Some(v) => scalar_string(v)
                    .or_else(|| v.as_bool().map(|b| b.to_string()))
                    .ok_or_else(|| {
                        ApiError::invalid(format!("{field}[{i}].value must be a string"))
                    })?,
            };
            Ok(mltrail_store::KeyValue { key, value })
        })
        .collect()
}

/// Whether a search answer names its list when the page is empty: MLflow leaves `runs` and
/// `models` out then, and always writes the registry's and the experiments' lists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptyList {
    Omitted,
    Written,
}

/// A search answer: the page's items under `key`, and `next_page_token` when another follows.
pub(crate) fn page_body<T: serde::Serialize>(
    key: &str,
    page: mltrail_store::Page<T>,
    empty: EmptyList,
) -> Value {
    let mut body = serde_json::json!({});
    if !page.items.is_empty() || empty == EmptyList::Written {
        body[key] = serde_json::json!(page.items);
    }
    if let Some(token) = page.next_page_token {
        body["next_page_token"] = Value::String(token);
    }
    body
}

/// A model version number from a route's path, refused naming `version`.
pub(crate) fn version_number(raw: &str) -> Result<mltrail_core::ModelVersionNumber, ApiError> {
    mltrail_core::ModelVersionNumber::parse(raw).ok_or_else(|| {
        ApiError::invalid(format!(
            "`version` must be a model version number, got `{raw}`"
        ))
        .at_column(Some("version"), None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Only decoded.
    struct Outer {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Only decoded.
    struct Inner {
        k: u32,
    }

    #[test]
    fn a_typed_body_names_the_field_at_fault() {
        let refused = |body: &str| decode_body::<Outer>(body.as_bytes()).unwrap_err();
        let e = refused(r#"{"inner": {"k": 1}}"#);
        assert_eq!(
            (e.message.as_str(), e.column.as_deref()),
            ("`name` is required", Some("name"))
        );
        let e = refused(r#"{"name": "a", "inner": {}}"#);
        assert_eq!(e.column.as_deref(), Some("inner.k"));
        let e = refused(r#"{"name": "a", "level": 1}"#);
        assert_eq!(e.column.as_deref(), Some("level"));
        assert_eq!(
            e.message,
            "`level` is not a field here: expected `name` or `inner`"
        );
        let e = refused(r#"{"name": "a", "inner": {"k": 1, "j": 2}}"#);
        assert_eq!(e.column.as_deref(), Some("inner.j"));
        let e = refused(r#"{"name": "a", "inner": {"k": -1}}"#);
        assert_eq!(e.column.as_deref(), Some("inner.k"));
        assert!(
            e.message.starts_with("`inner.k`: invalid value"),
            "{}",
            e.message
        );
        let e = refused(r#"{"name": "a"} trailing"#);
        assert!(e.message.contains("more after"), "{}", e.message);
        assert!(decode_body::<Outer>(br#"{"name": "a"}"#).is_ok());
    }

    #[test]
    fn decodes_basic_auth_user() {
        assert_eq!(
            decode_base64("YWxpY2U6c2VjcmV0").as_deref(),
            Some("alice:secret")
        );
        assert_eq!(decode_base64("Ym9iOng=").as_deref(), Some("bob:x"));
        assert_eq!(decode_base64("Ym9iOng").as_deref(), Some("bob:x"));
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn numbers_may_arrive_as_strings() {
        assert_eq!(as_i64(&Value::String("25000".into())), Some(25000));
        assert!(as_f64(&Value::String("NaN".into())).unwrap().is_nan());
        assert_eq!(as_i64(&serde_json::json!(3.5)), None);
    }

    #[test]
    fn integers_outside_int64_are_refused_not_clamped() {
        for text in [
            "1e300",
            "99999999999999999999",
            "9223372036854775808",
            "-1e19",
            "1e30",
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(as_i64(&v), None, "{text}");
        }
        let v: Value = serde_json::from_str("-9223372036854775808").unwrap();
        assert_eq!(as_i64(&v), Some(i64::MIN));
        assert_eq!(
            as_i64(&serde_json::json!(1e18)),
            Some(1_000_000_000_000_000_000)
        );
    }

    #[test]
    fn a_list_in_the_body_is_not_a_string() {
        let req = Req::from_parts("t".into(), None, br#"{"name": ["a", "b"]}"#).unwrap();
        assert!(req.opt_str("name").is_err());
        let req = Req::from_parts("t".into(), Some("name=a&name=b"), b"").unwrap();
        assert_eq!(req.opt_str("name").unwrap().as_deref(), Some("a"));
        let req =
            Req::from_parts("t".into(), Some("name=a&name=b"), br#"{"name": ["c"]}"#).unwrap();
        assert!(
            req.opt_str("name").is_err(),
            "the body's list replaced the query's"
        );
    }
}

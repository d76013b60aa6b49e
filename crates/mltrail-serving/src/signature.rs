//! A model's input signature: the columns a request must carry, their types, and how they map to
//! the ONNX inputs (one `[N, F]` tensor, or one `[N, 1]` tensor per named column).

use serde_json::Value as Json;

use crate::runtime::{ElementType, Model};

/// Why a signature cannot be used: the MLflow JSON is malformed, or it does not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("signature inputs are not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("signature inputs must be a JSON list")]
    NotAList,
    #[error("the signature names {names} columns but the model input `{input}` takes {width}")]
    Width {
        names: usize,
        input: String,
        width: usize,
    },
    #[error("cannot map request columns onto the model inputs {shapes}")]
    Unmappable { shapes: String },
}

/// Where a model version's column names come from, for messages: the MLmodel file's signature
/// or the version's [`mltrail_core::tags::SIGNATURE`] tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamesFrom {
    MlModel,
    Tag,
}

impl std::fmt::Display for NamesFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NamesFrom::MlModel => "MLmodel",
            NamesFrom::Tag => "signature tag",
        })
    }
}

/// The column names of a model version: its `mltrail.signature` tag when it has one (what
/// `mltrail models register --signature` wrote), else the MLmodel file's column signature.
/// `None` when neither names columns (the model's own input names are used then).
pub fn column_names(
    mlmodel: Option<&str>,
    signature_tag: Option<&str>,
) -> Result<Option<Vec<String>>, (NamesFrom, SignatureError)> {
    if let Some(tag) = signature_tag {
        return mlflow_column_names(tag).map_err(|e| (NamesFrom::Tag, e));
    }
    match mlmodel.and_then(mlmodel_signature_inputs) {
        Some(inputs) => mlflow_column_names(&inputs).map_err(|e| (NamesFrom::MlModel, e)),
        None => Ok(None),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub element: ElementType,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// One input tensor `[N, F]`; request rows are lists (or records in column order).
    Tensor { input: String, element: ElementType },
    /// One input per column, each `[N, 1]` or `[N]`.
    Columns,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub layout: Layout,
    pub columns: Vec<ColumnSpec>,
    /// Whether column names are known (from the model's inputs or an MLflow signature); unnamed
    /// tensor models accept rows positionally.
    named: bool,
    /// Each column's name escaped as a JSON key, once per model rather than per request: every
    /// logged row is written with them.
    json_keys: Vec<Vec<u8>>,
}

/// Column names from an MLflow signature's `inputs` (the JSON string in `MLmodel`), when it is
/// column-based. A tensor-based signature carries no names.
pub fn mlflow_column_names(inputs_json: &str) -> Result<Option<Vec<String>>, SignatureError> {
    let spec: Json = serde_json::from_str(inputs_json).map_err(SignatureError::NotJson)?;
    let list = spec.as_array().ok_or(SignatureError::NotAList)?;
    let names: Vec<String> = list
        .iter()
        .filter_map(|c| c.get("name").and_then(Json::as_str).map(str::to_string))
        .collect();
    let tensors = list
        .iter()
        .any(|c| c.get("type").and_then(Json::as_str) == Some("tensor"));
    Ok((!tensors && !names.is_empty() && names.len() == list.len()).then_some(names))
}

impl Signature {
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    pub fn named(&self) -> bool {
        self.named
    }

    /// The column names escaped as JSON keys (`"income"`), in column order.
    pub fn json_keys(&self) -> &[Vec<u8>] {
        &self.json_keys
    }

    fn new(layout: Layout, columns: Vec<ColumnSpec>, named: bool) -> Self {
        let json_keys = columns
            .iter()
            .map(|c| serde_json::to_vec(&c.name).unwrap_or_default())
            .collect();
        Signature {
            layout,
            columns,
            named,
            json_keys,
        }
    }

    /// Derives the signature from the model's declared inputs, taking column names from an MLflow
    /// signature when the model itself has one unnamed tensor input.
    pub fn from_model(model: &Model, names: Option<Vec<String>>) -> Result<Self, SignatureError> {
        let inputs = model.inputs();
        if let [single] = inputs {
            if let [_, Some(width)] = single.shape.as_slice() {
                if *width > 1
                    || names.as_ref().is_some_and(|n| n.len() == 1)
                    || single.element != ElementType::String
                {
                    let (columns, named) = match names {
                        Some(n) if n.len() == *width => (n, true),
                        Some(n) => {
                            return Err(SignatureError::Width {
                                names: n.len(),
                                input: single.name.clone(),
                                width: *width,
                            })
                        }
                        None => ((0..*width).map(|i| format!("f{i}")).collect(), false),
                    };
                    return Ok(Self::new(
                        Layout::Tensor {
                            input: single.name.clone(),
                            element: single.element,
                        },
                        columns
                            .into_iter()
                            .map(|name| ColumnSpec {
                                name,
                                element: single.element,
                            })
                            .collect(),
                        named,
                    ));
                }
            }
        }
        let columns_layout = inputs
            .iter()
            .all(|i| matches!(i.shape.as_slice(), [_] | [_, Some(1)] | [_, None]));
        if !columns_layout || inputs.is_empty() {
            let shapes: Vec<String> = inputs
                .iter()
                .map(|i| format!("{}{:?}", i.name, i.shape))
                .collect();
            return Err(SignatureError::Unmappable {
                shapes: shapes.join(", "),
            });
        }
        Ok(Self::new(
            Layout::Columns,
            inputs
                .iter()
                .map(|i| ColumnSpec {
                    name: i.name.clone(),
                    element: i.element,
                })
                .collect(),
            true,
        ))
    }

    /// The signature as MLflow writes it (column-based), for the model version and `/metadata`.
    pub fn to_mlflow_json(&self) -> Json {
        Json::Array(
            self.columns
                .iter()
                .map(|c| {
                    let ty = match c.element {
                        ElementType::Float => "float",
                        ElementType::Double => "double",
                        ElementType::Int64 => "long",
                        ElementType::Int32 => "integer",
                        ElementType::String => "string",
                        ElementType::Bool => "boolean",
                    };
                    serde_json::json!({"name": c.name, "type": ty, "required": true})
                })
                .collect(),
        )
    }
}

/// The `inputs` JSON string of an MLmodel file's `signature:` block: a single-quoted YAML scalar
/// that PyYAML folds over several more-indented lines.
pub fn mlmodel_signature_inputs(text: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("signature:"))
        .skip(1);
    let mut value = String::new();
    let mut indent = None;
    for line in lines.by_ref() {
        let depth = line.len() - line.trim_start().len();
        if depth == 0 {
            return None;
        }
        if let Some(rest) = line.trim_start().strip_prefix("inputs:") {
            value.push_str(rest.trim());
            indent = Some(depth);
            break;
        }
    }
    let indent = indent?;
    for line in lines {
        let depth = line.len() - line.trim_start().len();
        if depth <= indent || line.trim().is_empty() {
            break;
        }
        value.push(' ');
        value.push_str(line.trim());
    }
    let unquoted = value
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .map(|r| r.replace("''", "'"));
    Some(unquoted.unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlmodel_signature_is_read_from_yaml() {
        let text = "flavors:\n  onnx:\n    onnx_version: 1.23.2\nsignature:\n  inputs: '[{\"type\": \"double\", \"name\": \"a\"}]'\n  outputs: null\n";
        assert_eq!(
            mlmodel_signature_inputs(text).unwrap(),
            "[{\"type\": \"double\", \"name\": \"a\"}]"
        );
        assert!(mlmodel_signature_inputs("flavors: {}\n").is_none());
        let folded = "signature:\n  inputs: '[{\"type\": \"float\", \"name\": \"income\"}, {\"type\": \"float\",\n    \"name\": \"age\"}]'\n  outputs: null\n";
        assert_eq!(
            mlmodel_signature_inputs(folded).unwrap(),
            "[{\"type\": \"float\", \"name\": \"income\"}, {\"type\": \"float\", \"name\": \"age\"}]"
        );
    }
}

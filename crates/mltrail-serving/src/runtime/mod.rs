//! The model runtime: an ONNX graph compiled into native evaluators for the `ai.onnx.ml` operators
//! that tabular exporters emit (and the plain operators their graphs use around them).
//!
//! Semantics follow onnxruntime's CPU kernels, including their binary-classification conventions,
//! so a model answers here exactly as it does in onnxruntime. An operator we do not implement is
//! refused by name at compile time ([`RuntimeError::Unsupported`]); it is never approximated.

mod attrs;
mod estimator;
mod graph;
mod model;
mod onnxruntime;
mod ops;
pub mod proto;
pub mod value;

pub use estimator::{
    ColumnSteps, Estimator, EstimatorKind, LinearTerms, OutputSpace, RawOutput, TreeOutput,
};
pub use graph::{Graph, GraphInput, GraphOutput, ValueKind};
pub use model::{Engine, Model};
pub use onnxruntime::locate_library as locate_onnxruntime;
pub use ops::tree::{NodeMode, Tree, TreeEnsemble, TreeNode};
pub use value::{ElementType, MapKeys, MapSequence, Tensor, TensorData, Value};

use proto::TensorProto;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("operator {domain}:{op} is not supported by the native runtime")]
    Unsupported { domain: String, op: String },
    #[error("invalid model: {0}")]
    Model(String),
    #[error("shape error: {0}")]
    Shape(String),
    #[error("type error: {0}")]
    Type(String),
    #[error("input error: {0}")]
    Input(String),
}

/// Decodes an initializer or attribute tensor.
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, RuntimeError> {
    if t.data_location == 1 {
        return Err(RuntimeError::Model(format!(
            "tensor `{}` keeps its data in an external file, which is not supported",
            t.name
        )));
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|d| {
            usize::try_from(*d)
                .map_err(|_| RuntimeError::Model(format!("tensor `{}` has dim {d}", t.name)))
        })
        .collect::<Result<_, _>>()?;
    let raw = &t.raw_data;
    fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        raw.chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                f(b)
            })
            .collect()
    }
    let element = value::ElementType::from_onnx(t.data_type).ok_or_else(|| {
        RuntimeError::Model(format!(
            "tensor `{}` has unsupported data type {}",
            t.name, t.data_type
        ))
    })?;
    let data = match element {
        ElementType::Float if !raw.is_empty() => TensorData::Float(chunks(raw, f32::from_le_bytes)),
        ElementType::Float => TensorData::Float(t.float_data.clone()),
        ElementType::Double if !raw.is_empty() => {
            TensorData::Double(chunks(raw, f64::from_le_bytes))
        }
        ElementType::Double => TensorData::Double(t.double_data.clone()),
        ElementType::Int64 if !raw.is_empty() => TensorData::Int64(chunks(raw, i64::from_le_bytes)),
        ElementType::Int64 => TensorData::Int64(t.int64_data.clone()),
        ElementType::Int32 if !raw.is_empty() => TensorData::Int32(chunks(raw, i32::from_le_bytes)),
        ElementType::Int32 => TensorData::Int32(t.int32_data.clone()),
        ElementType::Bool if !raw.is_empty() => {
            TensorData::Bool(raw.iter().map(|b| *b != 0).collect())
        }
        ElementType::Bool => TensorData::Bool(t.int32_data.iter().map(|b| *b != 0).collect()),
        ElementType::String => TensorData::String(
            t.string_data
                .iter()
                .map(|s| String::from_utf8(s.clone()))
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    RuntimeError::Model(format!("tensor `{}` holds non-UTF-8 text", t.name))
                })?,
        ),
    };
    Tensor::new(shape, data)
}

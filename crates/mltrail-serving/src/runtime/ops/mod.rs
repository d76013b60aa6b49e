//! Native kernels, one module per family. `compile` binds a node to its kernel or refuses it by name.

mod basic;
mod linear;
mod post;
mod transform;
pub mod tree;

use super::attrs::Attrs;
use super::proto::NodeProto;
use super::value::Value;
use super::RuntimeError;

pub trait Kernel: Send + Sync {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError>;

    fn as_tree_ensemble(&self) -> Option<&tree::TreeEnsemble> {
        None
    }

    /// A linear model's coefficients, for explanations.
    fn linear_terms(&self) -> Option<super::estimator::LinearTerms> {
        None
    }

    /// Whether output column j depends on input column j alone, so that an explanation of the
    /// output's columns is one of the input's.
    fn column_wise(&self) -> bool {
        false
    }
}

pub fn compile(domain: &str, node: &NodeProto) -> Result<Box<dyn Kernel>, RuntimeError> {
    let op = node.op_type.as_str();
    let attrs = Attrs::new(op, &node.attribute);
    let kernel: Box<dyn Kernel> = match (domain, op) {
        ("ai.onnx.ml", "TreeEnsembleClassifier") => {
            Box::new(tree::TreeEnsemble::classifier(&attrs)?)
        }
        ("ai.onnx.ml", "TreeEnsembleRegressor") => Box::new(tree::TreeEnsemble::regressor(&attrs)?),
        ("ai.onnx.ml", "LinearClassifier") => Box::new(linear::LinearClassifier::new(&attrs)?),
        ("ai.onnx.ml", "LinearRegressor") => Box::new(linear::LinearRegressor::new(&attrs)?),
        ("ai.onnx.ml", "Scaler") => Box::new(transform::Scaler::new(&attrs)?),
        ("ai.onnx.ml", "Normalizer") => Box::new(transform::Normalizer::new(&attrs)?),
        ("ai.onnx.ml", "Imputer") => Box::new(transform::Imputer::new(&attrs)?),
        ("ai.onnx.ml", "Binarizer") => Box::new(transform::Binarizer::new(&attrs)),
        ("ai.onnx.ml", "OneHotEncoder") => Box::new(transform::OneHotEncoder::new(&attrs)?),
        ("ai.onnx.ml", "LabelEncoder") => Box::new(transform::LabelEncoder::new(&attrs)?),
        ("ai.onnx.ml", "ArrayFeatureExtractor") => Box::new(transform::ArrayFeatureExtractor),
        ("ai.onnx.ml", "FeatureVectorizer") => Box::new(transform::FeatureVectorizer::new(&attrs)),
        ("ai.onnx.ml", "ZipMap") => Box::new(transform::ZipMap::new(&attrs)?),
        ("ai.onnx", "Identity") => Box::new(basic::Identity),
        ("ai.onnx", "Cast") => Box::new(basic::Cast::new(&attrs)?),
        ("ai.onnx", "Add") => Box::new(basic::Arithmetic(basic::ArithOp::Add)),
        ("ai.onnx", "Sub") => Box::new(basic::Arithmetic(basic::ArithOp::Sub)),
        ("ai.onnx", "Mul") => Box::new(basic::Arithmetic(basic::ArithOp::Mul)),
        ("ai.onnx", "Div") => Box::new(basic::Arithmetic(basic::ArithOp::Div)),
        ("ai.onnx", "Concat") => Box::new(basic::Concat::new(&attrs)?),
        ("ai.onnx", "Reshape") => Box::new(basic::Reshape::new(&attrs)),
        ("ai.onnx", "Flatten") => Box::new(basic::Flatten::new(&attrs)),
        ("ai.onnx", "Gather") => Box::new(basic::Gather::new(&attrs)),
        _ => {
            return Err(RuntimeError::Unsupported {
                domain: domain.to_string(),
                op: op.to_string(),
            })
        }
    };
    Ok(kernel)
}

/// Checks the number of inputs a kernel received.
pub(crate) fn arity<'v>(
    op: &str,
    inputs: &[&'v Value],
    n: usize,
) -> Result<Vec<&'v Value>, RuntimeError> {
    if inputs.len() < n {
        return Err(RuntimeError::Model(format!(
            "{op} needs {n} inputs, got {}",
            inputs.len()
        )));
    }
    Ok(inputs[..n].to_vec())
}

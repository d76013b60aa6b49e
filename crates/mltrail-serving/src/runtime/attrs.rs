//! Typed access to a node's attributes, with errors that name the operator and the attribute.

use super::proto::{AttributeProto, TensorProto};
use super::tensor_from_proto;
use super::value::TensorData;
use super::RuntimeError;

pub struct Attrs<'a> {
    op: &'a str,
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub fn new(op: &'a str, list: &'a [AttributeProto]) -> Self {
        Self { op, list }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn missing(&self, name: &str) -> RuntimeError {
        RuntimeError::Model(format!("{}: attribute `{name}` is required", self.op))
    }

    pub fn invalid(&self, name: &str, why: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Model(format!("{}: attribute `{name}` {why}", self.op))
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f)
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        self.get(name)
            .map(|a| String::from_utf8(a.s.clone()).map_err(|_| self.invalid(name, "is not UTF-8")))
            .transpose()
    }

    pub fn ints(&self, name: &str) -> Vec<i64> {
        self.get(name).map(|a| a.ints.clone()).unwrap_or_default()
    }

    pub fn floats(&self, name: &str) -> Vec<f32> {
        self.get(name).map(|a| a.floats.clone()).unwrap_or_default()
    }

    pub fn strings(&self, name: &str) -> Result<Vec<String>, RuntimeError> {
        self.get(name)
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| {
                        String::from_utf8(s.clone())
                            .map_err(|_| self.invalid(name, "holds non-UTF-8 text"))
                    })
                    .collect()
            })
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    pub fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }

    /// A float list that may instead be given as `<name>_as_tensor` in double precision (the
    /// ai.onnx.ml-3 convention, used by LightGBM exporters for exact thresholds).
    pub fn reals(&self, name: &str) -> Result<Vec<f64>, RuntimeError> {
        let tensor_name = format!("{name}_as_tensor");
        if let Some(t) = self.tensor(&tensor_name) {
            return match tensor_from_proto(t)?.data {
                TensorData::Double(v) => Ok(v),
                TensorData::Float(v) => Ok(v.into_iter().map(f64::from).collect()),
                _ => Err(self.invalid(&tensor_name, "must hold floating-point values")),
            };
        }
        Ok(self.floats(name).into_iter().map(f64::from).collect())
    }
}

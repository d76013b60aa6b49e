//! Values that flow between operators: dense tensors, and the sequence of maps that `ZipMap` emits.

use super::RuntimeError;

/// The element type of a tensor, as the ONNX graph declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Float,
    Double,
    Int64,
    Int32,
    String,
    Bool,
}

impl ElementType {
    pub fn from_onnx(code: i32) -> Option<Self> {
        use super::proto::data_type as dt;
        Some(match code {
            dt::FLOAT => Self::Float,
            dt::DOUBLE => Self::Double,
            dt::INT64 => Self::Int64,
            dt::INT32 => Self::Int32,
            dt::STRING => Self::String,
            dt::BOOL => Self::Bool,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Float => "float",
            Self::Double => "double",
            Self::Int64 => "int64",
            Self::Int32 => "int32",
            Self::String => "string",
            Self::Bool => "bool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Float(Vec<f32>),
    Double(Vec<f64>),
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    String(Vec<String>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            Self::Float(v) => v.len(),
            Self::Double(v) => v.len(),
            Self::Int64(v) => v.len(),
            Self::Int32(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn element_type(&self) -> ElementType {
        match self {
            Self::Float(_) => ElementType::Float,
            Self::Double(_) => ElementType::Double,
            Self::Int64(_) => ElementType::Int64,
            Self::Int32(_) => ElementType::Int32,
            Self::String(_) => ElementType::String,
            Self::Bool(_) => ElementType::Bool,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, RuntimeError> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(RuntimeError::Shape(format!(
                "shape {shape:?} holds {expected} values, got {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    pub fn floats(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: TensorData::Float(data),
        }
    }

    /// Rows and columns when the tensor is read as a batch of feature vectors: `[N, F]` is itself,
    /// `[F]` is one row (as onnxruntime's ML operators read it).
    pub fn rows_cols(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [] => (1, 1),
            [f] => (1, *f),
            [n, rest @ ..] => (*n, rest.iter().product()),
        }
    }

    /// The values as f64, for operators that accept any numeric input.
    pub fn to_f64(&self, op: &str) -> Result<Vec<f64>, RuntimeError> {
        Ok(match &self.data {
            TensorData::Float(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::Double(v) => v.clone(),
            TensorData::Int64(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::Int32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::Bool(v) => v.iter().map(|x| f64::from(u8::from(*x))).collect(),
            TensorData::String(_) => {
                return Err(RuntimeError::Type(format!(
                    "{op} needs a numeric input, got strings"
                )))
            }
        })
    }

    /// The values as f32 (how onnxruntime feeds numeric inputs to float-only ML kernels).
    pub fn to_f32(&self, op: &str) -> Result<Vec<f32>, RuntimeError> {
        Ok(match &self.data {
            TensorData::Float(v) => v.clone(),
            _ => self.to_f64(op)?.into_iter().map(|x| x as f32).collect(),
        })
    }

    pub fn to_i64(&self, op: &str) -> Result<Vec<i64>, RuntimeError> {
        Ok(match &self.data {
            TensorData::Int64(v) => v.clone(),
            TensorData::Int32(v) => v.iter().map(|x| i64::from(*x)).collect(),
            other => {
                return Err(RuntimeError::Type(format!(
                    "{op} needs integer indices, got {}",
                    other.element_type().name()
                )))
            }
        })
    }
}

/// Keys of the maps a `ZipMap` emits.
#[derive(Debug, Clone, PartialEq)]
pub enum MapKeys {
    Int64(Vec<i64>),
    String(Vec<String>),
}

/// A sequence of maps, one per row, each with the same keys: `probabilities[row * keys + k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSequence {
    pub keys: MapKeys,
    pub values: Vec<f32>,
}

impl MapSequence {
    pub fn key_count(&self) -> usize {
        match &self.keys {
            MapKeys::Int64(k) => k.len(),
            MapKeys::String(k) => k.len(),
        }
    }

    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.key_count()).unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    Maps(MapSequence),
}

impl Value {
    pub fn as_tensor(&self, op: &str) -> Result<&Tensor, RuntimeError> {
        match self {
            Self::Tensor(t) => Ok(t),
            Self::Maps(_) => Err(RuntimeError::Type(format!(
                "{op} needs a tensor, got a sequence of maps"
            ))),
        }
    }

    /// Rows in the value (first dimension), used to split a batch per prediction.
    pub fn rows(&self) -> usize {
        match self {
            Self::Tensor(t) => t.shape.first().copied().unwrap_or(1),
            Self::Maps(m) => m.rows(),
        }
    }
}

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
    /// The values at `items`, `width` at a time: item `i` is `[i * width, (i + 1) * width)`.
    pub fn gather(&self, items: impl Iterator<Item = usize> + Clone, width: usize) -> Self {
        fn pick<T: Clone>(v: &[T], items: impl Iterator<Item = usize>, width: usize) -> Vec<T> {
            items
                .flat_map(|i| v[i * width..(i + 1) * width].iter().cloned())
                .collect()
        }
        match self {
            Self::Float(v) => Self::Float(pick(v, items, width)),
            Self::Double(v) => Self::Double(pick(v, items, width)),
            Self::Int64(v) => Self::Int64(pick(v, items, width)),
            Self::Int32(v) => Self::Int32(pick(v, items, width)),
            Self::String(v) => Self::String(pick(v, items, width)),
            Self::Bool(v) => Self::Bool(pick(v, items, width)),
        }
    }

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
    /// The rows (first dimension) at `rows`, in that order.
    pub fn take_rows(&self, rows: &[usize]) -> Self {
        let n = self.shape.first().copied().unwrap_or(1).max(1);
        let width = self.data.len() / n;
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = rows.len();
        }
        Self {
            shape,
            data: self.data.gather(rows.iter().copied(), width),
        }
    }

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

    /// One value from rows of several: row `i` of the result is row `picks[i].1` of
    /// `parts[picks[i].0]`, each part holding `rows` rows. `None` when the parts differ in kind,
    /// element type, row shape or map keys (versions whose outputs cannot be one array).
    pub fn interleave(parts: &[(&Value, usize)], picks: &[(usize, usize)]) -> Option<Value> {
        let (first, _) = parts.first()?;
        match first {
            Value::Tensor(t) => {
                let tensors: Vec<(&Tensor, usize)> = parts
                    .iter()
                    .map(|(v, rows)| match v {
                        Value::Tensor(u) => Some((u, *rows)),
                        Value::Maps(_) => None,
                    })
                    .collect::<Option<_>>()?;
                let rest = t.shape.get(1..).unwrap_or_default();
                let width = |u: &Tensor, rows: usize| u.data.len() / rows.max(1);
                if tensors.iter().any(|(u, rows)| {
                    u.data.element_type() != t.data.element_type()
                        || u.shape.get(1..).unwrap_or_default() != rest
                        || width(u, *rows) != width(t, tensors[0].1)
                }) {
                    return None;
                }
                let w = width(t, tensors[0].1);
                // Concatenate, then pick: each part's rows keep their offset.
                let mut offsets = Vec::with_capacity(tensors.len());
                let mut total = 0;
                for (_, rows) in &tensors {
                    offsets.push(total);
                    total += rows;
                }
                let joined = join_data(&tensors.iter().map(|(u, _)| &u.data).collect::<Vec<_>>())?;
                let mut shape = t.shape.clone();
                match shape.first_mut() {
                    Some(first) => *first = picks.len(),
                    None => return None,
                }
                Some(Value::Tensor(Tensor {
                    shape,
                    data: joined.gather(picks.iter().map(|(p, r)| offsets[*p] + r), w),
                }))
            }
            Value::Maps(m) => {
                let maps: Vec<&MapSequence> = parts
                    .iter()
                    .map(|(v, _)| match v {
                        Value::Maps(n) if n.keys == m.keys => Some(n),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                let k = m.key_count();
                let values = picks
                    .iter()
                    .flat_map(|(p, r)| maps[*p].values[r * k..(r + 1) * k].iter().copied())
                    .collect();
                Some(Value::Maps(MapSequence {
                    keys: m.keys.clone(),
                    values,
                }))
            }
        }
    }
}

/// The values of several tensors of one element type, one after another.
fn join_data(parts: &[&TensorData]) -> Option<TensorData> {
    fn join<T: Clone>(
        parts: &[&TensorData],
        get: impl Fn(&TensorData) -> Option<&Vec<T>>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(get(p)?);
        }
        Some(out)
    }
    Some(match parts.first()? {
        TensorData::Float(_) => TensorData::Float(join(parts, |d| match d {
            TensorData::Float(v) => Some(v),
            _ => None,
        })?),
        TensorData::Double(_) => TensorData::Double(join(parts, |d| match d {
            TensorData::Double(v) => Some(v),
            _ => None,
        })?),
        TensorData::Int64(_) => TensorData::Int64(join(parts, |d| match d {
            TensorData::Int64(v) => Some(v),
            _ => None,
        })?),
        TensorData::Int32(_) => TensorData::Int32(join(parts, |d| match d {
            TensorData::Int32(v) => Some(v),
            _ => None,
        })?),
        TensorData::String(_) => TensorData::String(join(parts, |d| match d {
            TensorData::String(v) => Some(v),
            _ => None,
        })?),
        TensorData::Bool(_) => TensorData::Bool(join(parts, |d| match d {
            TensorData::Bool(v) => Some(v),
            _ => None,
        })?),
    })
}

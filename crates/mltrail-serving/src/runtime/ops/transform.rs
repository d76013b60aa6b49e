//! Feature transforms from `ai.onnx.ml`: scaling, normalizing, imputing, binarizing, encoding,
//! column selection and assembly, and `ZipMap`.

use std::collections::HashMap;

use super::super::attrs::Attrs;
use super::super::value::{MapKeys, MapSequence, Tensor, TensorData, Value};
use super::super::RuntimeError;
use super::{arity, Kernel};

fn per_feature(values: &[f32], j: usize) -> f32 {
    if values.len() == 1 {
        values[0]
    } else {
        values[j]
    }
}

fn check_per_feature(op: &str, name: &str, len: usize, cols: usize) -> Result<(), RuntimeError> {
    if len != 1 && len != cols {
        return Err(RuntimeError::Input(format!(
            "{op}: `{name}` has {len} values but rows have {cols} features"
        )));
    }
    Ok(())
}

pub struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Scaler {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let (offset, scale) = (attrs.floats("offset"), attrs.floats("scale"));
        if offset.is_empty() || scale.is_empty() {
            return Err(attrs.missing("offset and scale"));
        }
        Ok(Self { offset, scale })
    }
}

impl Kernel for Scaler {
    fn column_wise(&self) -> bool {
        true
    }

    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("Scaler", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("Scaler")?;
        let (_, cols) = x.rows_cols();
        check_per_feature("Scaler", "offset", self.offset.len(), cols)?;
        check_per_feature("Scaler", "scale", self.scale.len(), cols)?;
        let values = x.to_f32("Scaler")?;
        let out = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let j = i % cols.max(1);
                (v - per_feature(&self.offset, j)) * per_feature(&self.scale, j)
            })
            .collect();
        Ok(vec![Value::Tensor(Tensor::floats(x.shape.clone(), out))])
    }
}

#[derive(Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

pub struct Normalizer {
    norm: Norm,
}

impl Normalizer {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let norm = match attrs.string("norm")?.as_deref().unwrap_or("MAX") {
            "MAX" => Norm::Max,
            "L1" => Norm::L1,
            "L2" => Norm::L2,
            other => return Err(attrs.invalid("norm", format!("`{other}` is not MAX, L1 or L2"))),
        };
        Ok(Self { norm })
    }
}

impl Kernel for Normalizer {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("Normalizer", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("Normalizer")?;
        let (_, cols) = x.rows_cols();
        let mut values = x.to_f32("Normalizer")?;
        for row in values.chunks_mut(cols.max(1)) {
            let denom = match self.norm {
                Norm::Max => row.iter().copied().fold(f32::MIN, f32::max),
                Norm::L1 => row.iter().map(|v| v.abs()).sum(),
                Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            if denom != 0.0 {
                row.iter_mut().for_each(|v| *v /= denom);
            }
        }
        Ok(vec![Value::Tensor(Tensor::floats(x.shape.clone(), values))])
    }
}

enum ImputeRule {
    Floats { values: Vec<f32>, replaced: f32 },
    Ints { values: Vec<i64>, replaced: i64 },
}

pub struct Imputer(ImputeRule);

impl Imputer {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let floats = attrs.floats("imputed_value_floats");
        if !floats.is_empty() {
            return Ok(Self(ImputeRule::Floats {
                values: floats,
                replaced: attrs.float("replaced_value_float").unwrap_or(0.0),
            }));
        }
        let ints = attrs.ints("imputed_value_int64s");
        if !ints.is_empty() {
            return Ok(Self(ImputeRule::Ints {
                values: ints,
                replaced: attrs.int("replaced_value_int64").unwrap_or(0),
            }));
        }
        Err(attrs.missing("imputed_value_floats or imputed_value_int64s"))
    }
}

impl Kernel for Imputer {
    fn column_wise(&self) -> bool {
        true
    }

    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("Imputer", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("Imputer")?;
        let (_, cols) = x.rows_cols();
        let cols = cols.max(1);
        match &self.0 {
            ImputeRule::Floats { values, replaced } => {
                check_per_feature("Imputer", "imputed_value_floats", values.len(), cols)?;
                let out = x
                    .to_f32("Imputer")?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let missing = if replaced.is_nan() {
                            v.is_nan()
                        } else {
                            v == *replaced
                        };
                        if missing {
                            per_feature(values, i % cols)
                        } else {
                            v
                        }
                    })
                    .collect();
                Ok(vec![Value::Tensor(Tensor::floats(x.shape.clone(), out))])
            }
            ImputeRule::Ints { values, replaced } => {
                if values.len() != 1 && values.len() != cols {
                    return Err(RuntimeError::Input(format!(
                        "Imputer: {} values for {cols} features",
                        values.len()
                    )));
                }
                let out = x
                    .to_i64("Imputer")?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        if v == *replaced {
                            values[if values.len() == 1 { 0 } else { i % cols }]
                        } else {
                            v
                        }
                    })
                    .collect();
                Ok(vec![Value::Tensor(Tensor {
                    shape: x.shape.clone(),
                    data: TensorData::Int64(out),
                })])
            }
        }
    }
}

pub struct Binarizer {
    threshold: f32,
}

impl Binarizer {
    pub fn new(attrs: &Attrs) -> Self {
        Self {
            threshold: attrs.float("threshold").unwrap_or(0.0),
        }
    }
}

impl Kernel for Binarizer {
    fn column_wise(&self) -> bool {
        true
    }

    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("Binarizer", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("Binarizer")?;
        let t = f64::from(self.threshold);
        let data = match &x.data {
            TensorData::Double(v) => {
                TensorData::Double(v.iter().map(|a| if *a > t { 1.0 } else { 0.0 }).collect())
            }
            _ => TensorData::Float(
                x.to_f32("Binarizer")?
                    .iter()
                    .map(|a| if *a > self.threshold { 1.0 } else { 0.0 })
                    .collect(),
            ),
        };
        Ok(vec![Value::Tensor(Tensor {
            shape: x.shape.clone(),
            data,
        })])
    }
}

enum Categories {
    Int64(HashMap<i64, usize>),
    String(HashMap<String, usize>),
}

pub struct OneHotEncoder {
    categories: Categories,
    count: usize,
    unknown_is_zeros: bool,
}

impl OneHotEncoder {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let strings = attrs.strings("cats_strings")?;
        let ints = attrs.ints("cats_int64s");
        let (categories, count) = if !strings.is_empty() {
            let n = strings.len();
            (
                Categories::String(
                    strings
                        .into_iter()
                        .enumerate()
                        .map(|(i, s)| (s, i))
                        .collect(),
                ),
                n,
            )
        } else if !ints.is_empty() {
            let n = ints.len();
            (
                Categories::Int64(ints.into_iter().enumerate().map(|(i, s)| (s, i)).collect()),
                n,
            )
        } else {
            return Err(attrs.missing("cats_strings or cats_int64s"));
        };
        Ok(Self {
            categories,
            count,
            unknown_is_zeros: attrs.int("zeros").unwrap_or(1) == 1,
        })
    }
}

impl Kernel for OneHotEncoder {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("OneHotEncoder", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("OneHotEncoder")?;
        let positions: Vec<Option<usize>> = match (&self.categories, &x.data) {
            (Categories::String(map), TensorData::String(v)) => {
                v.iter().map(|s| map.get(s).copied()).collect()
            }
            (Categories::String(_), other) => {
                return Err(RuntimeError::Type(format!(
                    "OneHotEncoder has string categories, got {}",
                    other.element_type().name()
                )))
            }
            (Categories::Int64(map), _) => x
                .to_f64("OneHotEncoder")?
                .iter()
                .map(|v| map.get(&(*v as i64)).copied())
                .collect(),
        };
        let mut out = vec![0.0f32; positions.len() * self.count];
        for (i, p) in positions.iter().enumerate() {
            match p {
                Some(k) => out[i * self.count + k] = 1.0,
                None if self.unknown_is_zeros => {}
                None => {
                    return Err(RuntimeError::Input(
                        "OneHotEncoder: a value is not one of the known categories".into(),
                    ))
                }
            }
        }
        let mut shape = x.shape.clone();
        shape.push(self.count);
        Ok(vec![Value::Tensor(Tensor::floats(shape, out))])
    }
}

enum LabelMap {
    StringToInt(HashMap<String, i64>, i64),
    IntToString(HashMap<i64, String>, String),
    StringToString(HashMap<String, String>, String),
    IntToInt(HashMap<i64, i64>, i64),
    StringToFloat(HashMap<String, f32>, f32),
}

pub struct LabelEncoder(LabelMap);

impl LabelEncoder {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let ks = attrs.strings("keys_strings")?;
        let ki = attrs.ints("keys_int64s");
        let vs = attrs.strings("values_strings")?;
        let vi = attrs.ints("values_int64s");
        let vf = attrs.floats("values_floats");
        let default_string = attrs
            .string("default_string")?
            .unwrap_or_else(|| "_Unused".into());
        let default_int = attrs.int("default_int64").unwrap_or(-1);
        let default_float = attrs.float("default_float").unwrap_or(-0.0);
        fn zip<K: std::hash::Hash + Eq, V>(
            k: Vec<K>,
            v: Vec<V>,
            attrs: &Attrs,
        ) -> Result<HashMap<K, V>, RuntimeError> {
            if k.len() != v.len() {
                return Err(attrs.invalid(
                    "keys/values",
                    format!("{} keys for {} values", k.len(), v.len()),
                ));
            }
            Ok(k.into_iter().zip(v).collect())
        }
        let map = match (
            !ks.is_empty(),
            !ki.is_empty(),
            !vs.is_empty(),
            !vi.is_empty(),
            !vf.is_empty(),
        ) {
            (true, _, _, true, _) => LabelMap::StringToInt(zip(ks, vi, attrs)?, default_int),
            (true, _, true, _, _) => LabelMap::StringToString(zip(ks, vs, attrs)?, default_string),
            (true, _, _, _, true) => LabelMap::StringToFloat(zip(ks, vf, attrs)?, default_float),
            (_, true, true, _, _) => LabelMap::IntToString(zip(ki, vs, attrs)?, default_string),
            (_, true, _, true, _) => LabelMap::IntToInt(zip(ki, vi, attrs)?, default_int),
            _ => {
                return Err(attrs.invalid(
                    "keys_*/values_*",
                    "combination is not supported (string/int64 keys to string/int64/float values)",
                ))
            }
        };
        Ok(Self(map))
    }
}

impl Kernel for LabelEncoder {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("LabelEncoder", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("LabelEncoder")?;
        let strings = || match &x.data {
            TensorData::String(v) => Ok(v),
            other => Err(RuntimeError::Type(format!(
                "LabelEncoder has string keys, got {}",
                other.element_type().name()
            ))),
        };
        let data = match &self.0 {
            LabelMap::StringToInt(m, d) => {
                TensorData::Int64(strings()?.iter().map(|s| *m.get(s).unwrap_or(d)).collect())
            }
            LabelMap::StringToString(m, d) => TensorData::String(
                strings()?
                    .iter()
                    .map(|s| m.get(s).unwrap_or(d).clone())
                    .collect(),
            ),
            LabelMap::StringToFloat(m, d) => {
                TensorData::Float(strings()?.iter().map(|s| *m.get(s).unwrap_or(d)).collect())
            }
            LabelMap::IntToString(m, d) => TensorData::String(
                x.to_i64("LabelEncoder")?
                    .iter()
                    .map(|k| m.get(k).unwrap_or(d).clone())
                    .collect(),
            ),
            LabelMap::IntToInt(m, d) => TensorData::Int64(
                x.to_i64("LabelEncoder")?
                    .iter()
                    .map(|k| *m.get(k).unwrap_or(d))
                    .collect(),
            ),
        };
        Ok(vec![Value::Tensor(Tensor {
            shape: x.shape.clone(),
            data,
        })])
    }
}

pub struct ArrayFeatureExtractor;

impl Kernel for ArrayFeatureExtractor {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x, idx] = arity("ArrayFeatureExtractor", inputs, 2)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("ArrayFeatureExtractor")?;
        let idx = idx
            .as_tensor("ArrayFeatureExtractor")?
            .to_i64("ArrayFeatureExtractor")?;
        let last = *x
            .shape
            .last()
            .ok_or_else(|| RuntimeError::Shape("ArrayFeatureExtractor on a scalar".into()))?;
        let outer = x.data.len() / last.max(1);
        let mut picks = Vec::with_capacity(outer * idx.len());
        for o in 0..outer {
            for i in &idx {
                let i = usize::try_from(*i)
                    .ok()
                    .filter(|i| *i < last)
                    .ok_or_else(|| {
                        RuntimeError::Input(format!(
                            "ArrayFeatureExtractor: index {i} outside 0..{last}"
                        ))
                    })?;
                picks.push(o * last + i);
            }
        }
        let data = match &x.data {
            TensorData::Float(v) => TensorData::Float(picks.iter().map(|p| v[*p]).collect()),
            TensorData::Double(v) => TensorData::Double(picks.iter().map(|p| v[*p]).collect()),
            TensorData::Int64(v) => TensorData::Int64(picks.iter().map(|p| v[*p]).collect()),
            TensorData::Int32(v) => TensorData::Int32(picks.iter().map(|p| v[*p]).collect()),
            TensorData::String(v) => {
                TensorData::String(picks.iter().map(|p| v[*p].clone()).collect())
            }
            TensorData::Bool(v) => TensorData::Bool(picks.iter().map(|p| v[*p]).collect()),
        };
        let shape = if x.shape.len() == 1 {
            vec![1, idx.len()]
        } else {
            let mut s = x.shape.clone();
            if let Some(l) = s.last_mut() {
                *l = idx.len();
            }
            s
        };
        Ok(vec![Value::Tensor(Tensor::new(shape, data)?)])
    }
}

pub struct FeatureVectorizer {
    dims: Vec<i64>,
}

impl FeatureVectorizer {
    pub fn new(attrs: &Attrs) -> Self {
        Self {
            dims: attrs.ints("inputdimensions"),
        }
    }
}

impl Kernel for FeatureVectorizer {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let tensors: Vec<&Tensor> = inputs
            .iter()
            .map(|v| v.as_tensor("FeatureVectorizer"))
            .collect::<Result<_, _>>()?;
        let rows = tensors.first().map(|t| t.rows_cols().0).unwrap_or(0);
        let widths: Vec<usize> = (0..tensors.len())
            .map(|i| {
                self.dims
                    .get(i)
                    .map(|d| (*d).max(0) as usize)
                    .unwrap_or_else(|| tensors[i].rows_cols().1)
            })
            .collect();
        let total: usize = widths.iter().sum();
        let mut out = vec![0.0f32; rows * total];
        let mut offset = 0;
        for (t, width) in tensors.iter().zip(&widths) {
            let (r, cols) = t.rows_cols();
            if r != rows {
                return Err(RuntimeError::Shape(format!(
                    "FeatureVectorizer inputs have {rows} and {r} rows"
                )));
            }
            let values = t.to_f32("FeatureVectorizer")?;
            for row in 0..rows {
                for c in 0..cols.min(*width) {
                    out[row * total + offset + c] = values[row * cols + c];
                }
            }
            offset += width;
        }
        Ok(vec![Value::Tensor(Tensor::floats(vec![rows, total], out))])
    }
}

pub struct ZipMap {
    keys: MapKeys,
}

impl ZipMap {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let strings = attrs.strings("classlabels_strings")?;
        let keys = if !strings.is_empty() {
            MapKeys::String(strings)
        } else {
            MapKeys::Int64(attrs.ints("classlabels_int64s"))
        };
        Ok(Self { keys })
    }
}

impl Kernel for ZipMap {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("ZipMap", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("ZipMap")?;
        let (_, cols) = x.rows_cols();
        let seq = MapSequence {
            keys: self.keys.clone(),
            values: x.to_f32("ZipMap")?,
        };
        if cols != seq.key_count() {
            return Err(RuntimeError::Shape(format!(
                "ZipMap has {} labels for {cols} columns",
                seq.key_count()
            )));
        }
        Ok(vec![Value::Maps(seq)])
    }
}

//! The plain ONNX operators that tabular graphs use around the ML operators.

use super::super::attrs::Attrs;
use super::super::value::{ElementType, Tensor, TensorData, Value};
use super::super::RuntimeError;
use super::{arity, Kernel};

pub struct Identity;

impl Kernel for Identity {
    fn column_wise(&self) -> bool {
        true
    }

    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("Identity", inputs, 1)?[..] else {
            unreachable!()
        };
        Ok(vec![x.clone()])
    }
}

pub struct Cast {
    to: ElementType,
}

impl Cast {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let code = attrs.int("to").ok_or_else(|| attrs.missing("to"))?;
        let to = ElementType::from_onnx(code as i32)
            .ok_or_else(|| attrs.invalid("to", format!("{code} is not a supported type")))?;
        Ok(Self { to })
    }
}

pub fn cast(t: &Tensor, to: ElementType) -> Result<Tensor, RuntimeError> {
    let parse_err = |s: &str| RuntimeError::Input(format!("Cast: `{s}` is not a number"));
    let data = match (to, &t.data) {
        (ElementType::String, TensorData::String(v)) => TensorData::String(v.clone()),
        (ElementType::String, _) => {
            TensorData::String(t.to_f64("Cast")?.iter().map(|x| x.to_string()).collect())
        }
        (_, TensorData::String(v)) => {
            let parsed: Vec<f64> = v
                .iter()
                .map(|s| s.trim().parse::<f64>().map_err(|_| parse_err(s)))
                .collect::<Result<_, _>>()?;
            return cast(
                &Tensor {
                    shape: t.shape.clone(),
                    data: TensorData::Double(parsed),
                },
                to,
            );
        }
        (ElementType::Float, _) => TensorData::Float(t.to_f32("Cast")?),
        (ElementType::Double, _) => TensorData::Double(t.to_f64("Cast")?),
        (ElementType::Int64, TensorData::Int64(v)) => TensorData::Int64(v.clone()),
        (ElementType::Int64, _) => {
            TensorData::Int64(t.to_f64("Cast")?.iter().map(|x| *x as i64).collect())
        }
        (ElementType::Int32, _) => {
            TensorData::Int32(t.to_f64("Cast")?.iter().map(|x| *x as i32).collect())
        }
        (ElementType::Bool, _) => {
            TensorData::Bool(t.to_f64("Cast")?.iter().map(|x| *x != 0.0).collect())
        }
    };
    Ok(Tensor {
        shape: t.shape.clone(),
        data,
    })
}

impl Kernel for Cast {
    fn column_wise(&self) -> bool {
        true
    }

    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("Cast", inputs, 1)?[..] else {
            unreachable!()
        };
        Ok(vec![Value::Tensor(cast(x.as_tensor("Cast")?, self.to)?)])
    }
}

#[derive(Clone, Copy)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

pub struct Arithmetic(pub ArithOp);

fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, RuntimeError> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(RuntimeError::Shape(format!(
                "cannot broadcast {a:?} with {b:?} (dims {x} and {y})"
            ))),
        })
        .collect()
}

/// Flat index into `shape` (right-aligned, broadcast) for each element of `out`.
fn broadcast_index(out: &[usize], shape: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let offset = out.len() - shape.len();
    let mut strides = vec![0usize; out.len()];
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        strides[i + offset] = if shape[i] == 1 { 0 } else { stride };
        stride *= shape[i];
    }
    let mut idx = vec![0usize; total];
    let mut counter = vec![0usize; out.len()];
    for slot in idx.iter_mut() {
        *slot = counter.iter().zip(&strides).map(|(c, s)| c * s).sum();
        for d in (0..out.len()).rev() {
            counter[d] += 1;
            if counter[d] < out[d] {
                break;
            }
            counter[d] = 0;
        }
    }
    idx
}

fn elementwise<T: Copy>(
    a: &[T],
    ai: &[usize],
    b: &[T],
    bi: &[usize],
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    ai.iter().zip(bi).map(|(i, j)| f(a[*i], b[*j])).collect()
}

impl Kernel for Arithmetic {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [a, b] = arity("Arithmetic", inputs, 2)?[..] else {
            unreachable!()
        };
        let (a, b) = (a.as_tensor("Arithmetic")?, b.as_tensor("Arithmetic")?);
        let shape = broadcast_shape(&a.shape, &b.shape)?;
        let (ai, bi) = (
            broadcast_index(&shape, &a.shape),
            broadcast_index(&shape, &b.shape),
        );
        let op = self.0;
        macro_rules! apply {
            ($x:expr, $y:expr) => {
                elementwise($x, &ai, $y, &bi, |p, q| match op {
                    ArithOp::Add => p + q,
                    ArithOp::Sub => p - q,
                    ArithOp::Mul => p * q,
                    ArithOp::Div => p / q,
                })
            };
        }
        let data = match (&a.data, &b.data) {
            (TensorData::Float(x), TensorData::Float(y)) => TensorData::Float(apply!(x, y)),
            (TensorData::Double(x), TensorData::Double(y)) => TensorData::Double(apply!(x, y)),
            (TensorData::Int64(x), TensorData::Int64(y)) => {
                if matches!(op, ArithOp::Div) && y.contains(&0) {
                    return Err(RuntimeError::Input("integer division by zero".into()));
                }
                TensorData::Int64(apply!(x, y))
            }
            (x, y) => {
                return Err(RuntimeError::Type(format!(
                    "arithmetic on {} and {} (ONNX requires one type)",
                    x.element_type().name(),
                    y.element_type().name()
                )))
            }
        };
        Ok(vec![Value::Tensor(Tensor { shape, data })])
    }
}

/// An axis of a tensor of `rank`; a scalar (rank 0) has none, so Gather and Concat refuse it
/// (fuzzing found both indexing the empty shape).
fn normalize_axis(axis: i64, rank: usize, op: &str) -> Result<usize, RuntimeError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(RuntimeError::Shape(format!(
            "{op}: axis {axis} out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// Gathers `len` elements starting at each flat position into a new buffer, by type.
fn gather_blocks(data: &TensorData, blocks: &[(usize, usize)]) -> TensorData {
    macro_rules! take {
        ($v:expr, $variant:ident) => {{
            let mut out = Vec::with_capacity(blocks.iter().map(|b| b.1).sum());
            for (start, len) in blocks {
                out.extend_from_slice(&$v[*start..*start + *len]);
            }
            TensorData::$variant(out)
        }};
    }
    match data {
        TensorData::Float(v) => take!(v, Float),
        TensorData::Double(v) => take!(v, Double),
        TensorData::Int64(v) => take!(v, Int64),
        TensorData::Int32(v) => take!(v, Int32),
        TensorData::String(v) => take!(v, String),
        TensorData::Bool(v) => take!(v, Bool),
    }
}

pub struct Concat {
    axis: i64,
}

impl Concat {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        Ok(Self {
            axis: attrs.int("axis").ok_or_else(|| attrs.missing("axis"))?,
        })
    }
}

impl Kernel for Concat {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let tensors: Vec<&Tensor> = inputs
            .iter()
            .map(|v| v.as_tensor("Concat"))
            .collect::<Result<_, _>>()?;
        let first = tensors
            .first()
            .ok_or_else(|| RuntimeError::Model("Concat without inputs".into()))?;
        let rank = first.shape.len();
        let axis = normalize_axis(self.axis, rank, "Concat")?;
        let element = first.data.element_type();
        for t in &tensors {
            if t.shape.len() != rank || t.data.element_type() != element {
                return Err(RuntimeError::Shape(format!(
                    "Concat of {:?} and {:?}",
                    first.shape, t.shape
                )));
            }
            if (0..rank).any(|d| d != axis && t.shape[d] != first.shape[d]) {
                return Err(RuntimeError::Shape(format!(
                    "Concat of {:?} and {:?} on axis {axis}",
                    first.shape, t.shape
                )));
            }
        }
        let outer: usize = first.shape[..axis].iter().product();
        let mut shape = first.shape.clone();
        shape[axis] = tensors.iter().map(|t| t.shape[axis]).sum();
        // Interleave: for each outer index, each input's inner block in turn.
        let mut parts: Vec<TensorData> = Vec::new();
        for o in 0..outer {
            for t in &tensors {
                let inner: usize = t.shape[axis..].iter().product();
                parts.push(gather_blocks(&t.data, &[(o * inner, inner)]));
            }
        }
        Ok(vec![Value::Tensor(Tensor {
            shape,
            data: concat_data(element, parts),
        })])
    }
}

fn concat_data(element: ElementType, parts: Vec<TensorData>) -> TensorData {
    macro_rules! join {
        ($variant:ident) => {{
            let mut out = Vec::new();
            for p in parts {
                if let TensorData::$variant(v) = p {
                    out.extend(v);
                }
            }
            TensorData::$variant(out)
        }};
    }
    match element {
        ElementType::Float => join!(Float),
        ElementType::Double => join!(Double),
        ElementType::Int64 => join!(Int64),
        ElementType::Int32 => join!(Int32),
        ElementType::String => join!(String),
        ElementType::Bool => join!(Bool),
    }
}

pub struct Reshape {
    allow_zero: bool,
}

impl Reshape {
    pub fn new(attrs: &Attrs) -> Self {
        Self {
            allow_zero: attrs.int("allowzero").unwrap_or(0) == 1,
        }
    }
}

impl Kernel for Reshape {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x, shape] = arity("Reshape", inputs, 2)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("Reshape")?;
        let wanted = shape.as_tensor("Reshape")?.to_i64("Reshape")?;
        let total = x.data.len();
        let mut dims: Vec<usize> = Vec::with_capacity(wanted.len());
        let mut infer = None;
        for (i, d) in wanted.iter().enumerate() {
            match *d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    dims.push(1);
                }
                0 if !self.allow_zero => dims.push(
                    *x.shape
                        .get(i)
                        .ok_or_else(|| RuntimeError::Shape("Reshape: 0 past input rank".into()))?,
                ),
                d if d >= 0 => dims.push(d as usize),
                d => return Err(RuntimeError::Shape(format!("Reshape: invalid dim {d}"))),
            }
        }
        if let Some(i) = infer {
            let known: usize = dims
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, d)| *d)
                .product();
            if known == 0 || total % known != 0 {
                return Err(RuntimeError::Shape(format!(
                    "Reshape: {total} values do not fit {wanted:?}"
                )));
            }
            dims[i] = total / known;
        }
        Ok(vec![Value::Tensor(Tensor::new(dims, x.data.clone())?)])
    }
}

pub struct Flatten {
    axis: i64,
}

impl Flatten {
    pub fn new(attrs: &Attrs) -> Self {
        Self {
            axis: attrs.int("axis").unwrap_or(1),
        }
    }
}

impl Kernel for Flatten {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("Flatten", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("Flatten")?;
        let rank = x.shape.len() as i64;
        let axis = if self.axis < 0 {
            self.axis + rank
        } else {
            self.axis
        };
        if axis < 0 || axis > rank {
            return Err(RuntimeError::Shape(format!(
                "Flatten: axis {} for rank {rank}",
                self.axis
            )));
        }
        let outer: usize = x.shape[..axis as usize].iter().product();
        let inner: usize = x.shape[axis as usize..].iter().product();
        Ok(vec![Value::Tensor(Tensor::new(
            vec![outer, inner],
            x.data.clone(),
        )?)])
    }
}

pub struct Gather {
    axis: i64,
}

impl Gather {
    pub fn new(attrs: &Attrs) -> Self {
        Self {
            axis: attrs.int("axis").unwrap_or(0),
        }
    }
}

impl Kernel for Gather {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x, indices] = arity("Gather", inputs, 2)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("Gather")?;
        let indices_t = indices.as_tensor("Gather")?;
        let idx = indices_t.to_i64("Gather")?;
        let axis = normalize_axis(self.axis, x.shape.len(), "Gather")?;
        let extent = x.shape[axis] as i64;
        let outer: usize = x.shape[..axis].iter().product();
        let inner: usize = x.shape[axis + 1..].iter().product();
        let mut blocks = Vec::with_capacity(outer * idx.len());
        for o in 0..outer {
            for i in &idx {
                let j = if *i < 0 { i + extent } else { *i };
                if j < 0 || j >= extent {
                    return Err(RuntimeError::Input(format!(
                        "Gather: index {i} out of range for {extent}"
                    )));
                }
                blocks.push(((o * x.shape[axis] + j as usize) * inner, inner));
            }
        }
        let mut shape = x.shape[..axis].to_vec();
        shape.extend_from_slice(&indices_t.shape);
        shape.extend_from_slice(&x.shape[axis + 1..]);
        Ok(vec![Value::Tensor(Tensor::new(
            shape,
            gather_blocks(&x.data, &blocks),
        )?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Value {
        Value::Tensor(Tensor::floats(shape, v))
    }

    #[test]
    fn add_broadcasts_a_row_over_a_matrix() {
        let out = Arithmetic(ArithOp::Sub)
            .run(&[
                &t(vec![2, 2], vec![1., 2., 3., 4.]),
                &t(vec![2], vec![1., 1.]),
            ])
            .unwrap();
        assert_eq!(out[0], t(vec![2, 2], vec![0., 1., 2., 3.]));
    }

    #[test]
    fn concat_on_axis_one_interleaves_rows() {
        let k = Concat { axis: 1 };
        let out = k
            .run(&[
                &t(vec![2, 1], vec![1., 2.]),
                &t(vec![2, 2], vec![3., 4., 5., 6.]),
            ])
            .unwrap();
        assert_eq!(out[0], t(vec![2, 3], vec![1., 3., 4., 2., 5., 6.]));
    }

    #[test]
    fn gather_on_axis_one_picks_columns() {
        let idx = Value::Tensor(Tensor {
            shape: vec![2],
            data: TensorData::Int64(vec![2, 0]),
        });
        let out = Gather { axis: 1 }
            .run(&[&t(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]), &idx])
            .unwrap();
        assert_eq!(out[0], t(vec![2, 2], vec![3., 1., 6., 4.]));
    }
}

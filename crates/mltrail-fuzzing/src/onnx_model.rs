//! The ONNX loader and the native graph compiler: any bytes are loaded or refused with a
//! `RuntimeError`, never a panic; a model that loads is run on a small batch built from its
//! declared inputs, and answers or refuses with an error.

use mltrail_serving::runtime::{ElementType, Model, Tensor, TensorData};

/// At most this many cells per input, so a declared width of 2^40 is not allocated.
const MAX_CELLS: usize = 4096;

pub fn run(data: &[u8]) {
    let Ok(model) = Model::load(data) else {
        return;
    };
    let rows = 2usize;
    let mut inputs = Vec::new();
    for input in model.inputs() {
        // Free dimensions (None) and the batch dimension become `rows`; others as declared.
        let mut shape: Vec<usize> = input.shape.iter().map(|d| d.unwrap_or(rows)).collect();
        if let Some(first) = shape.first_mut() {
            *first = rows;
        }
        let cells = shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
        let Some(cells) = cells.filter(|c| *c <= MAX_CELLS) else {
            return;
        };
        let data = match input.element {
            ElementType::Float => TensorData::Float((0..cells).map(|i| i as f32 * 0.5).collect()),
            ElementType::Double => TensorData::Double((0..cells).map(|i| i as f64 * 0.5).collect()),
            ElementType::Int64 => TensorData::Int64((0..cells).map(|i| i as i64).collect()),
            ElementType::Int32 => TensorData::Int32((0..cells).map(|i| i as i32).collect()),
            ElementType::String => {
                TensorData::String((0..cells).map(|i| format!("s{i}")).collect())
            }
            ElementType::Bool => TensorData::Bool((0..cells).map(|i| i % 2 == 0).collect()),
        };
        let Ok(tensor) = Tensor::new(shape, data) else {
            return;
        };
        inputs.push(tensor);
    }
    let _ = model.run(inputs);
}

//! The native readers of logged XGBoost and LightGBM files (`mltrail_serving::flavors`): any
//! bytes are read or refused with a `FlavorError`, never a panic; an ensemble that is read
//! always compiles as the ONNX graph it is written as, and answers a small batch (missing
//! values included) or refuses it with an error.
//!
//! The first byte chooses the reader: 0 XGBoost UBJSON, 1 XGBoost JSON, 2 LightGBM text,
//! 3 LightGBM skops archive; the rest is the file.

use mltrail_serving::flavors;
use mltrail_serving::runtime::{Model, Tensor, TensorData};

const READERS: [(&str, &str); 4] = [
    ("xgboost", "model.ubj"),
    ("xgboost", "model.json"),
    ("lightgbm", "model.lgb"),
    ("lightgbm", "model.skops"),
];

pub fn run(data: &[u8]) {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let (flavor, name) = READERS[usize::from(selector) % READERS.len()];
    let Ok(ensemble) = flavors::read(flavor, name, file) else {
        return;
    };
    // Thousands of features would only make the batch large, not the check stronger.
    if ensemble.features > 4096 {
        return;
    }
    let model = match Model::load(&ensemble.to_onnx()) {
        Ok(model) => model,
        Err(e) => panic!("a {flavor} model that was read does not compile: {e}"),
    };
    let rows = 2;
    let cells = rows * ensemble.features;
    let values = (0..cells).map(|i| {
        if i % 3 == 0 {
            f64::NAN
        } else {
            i as f64 * 0.25 - 1.0
        }
    });
    let data = if ensemble.float32_input {
        TensorData::Float(values.map(|v| v as f32).collect())
    } else {
        TensorData::Double(values.collect())
    };
    if let Ok(tensor) = Tensor::new(vec![rows, ensemble.features], data) {
        let _ = model.run(vec![tensor]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounded mutation round over the committed seeds (byte flips, truncations, splices),
    /// from a fixed seed: a quick check between real fuzzing runs (fuzz/run.sh).
    /// `MLTRAIL_MUTATIONS=N` (and `MLTRAIL_MUTATION_SEED`) runs a longer one by hand.
    #[test]
    fn mutated_seeds_are_read_or_refused() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/model_files");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&root)
            .expect("seeds")
            .flatten()
            .map(|e| std::fs::read(e.path()).expect("seed"))
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty());
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let rounds = number("MLTRAIL_MUTATIONS", 20_000) as usize;
        let mut state = number("MLTRAIL_MUTATION_SEED", 0x9e37_79b9_7f4a_7c15).max(1);
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..rounds {
            let seed = &seeds[round % seeds.len()];
            let mut input = seed.clone();
            for _ in 0..1 + next() % 4 {
                if input.len() < 2 {
                    break;
                }
                let at = 1 + (next() as usize) % (input.len() - 1);
                match next() % 3 {
                    0 => input[at] = next() as u8,
                    1 => input.truncate(at),
                    _ => {
                        let from = 1 + (next() as usize) % (input.len() - 1);
                        let byte = input[from];
                        input.insert(at, byte);
                    }
                }
            }
            run(&input);
        }
    }
}

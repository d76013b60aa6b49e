//! Rows per second of the native runtime on one model, single thread, for `bench/serving.sh`:
//! `cargo run --release -p mltrail-serving --example kernel_bench -- MODEL.onnx BATCH SECONDS`.
//! Inputs are uniform in [-2, 2) from a fixed-seed generator; the same seed is used by the
//! onnxruntime side of the benchmark only in distribution, not bit for bit (it does not matter
//! for speed).

use std::time::{Duration, Instant};

use mltrail_serving::runtime::{Graph, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(batch)) = (
        args.get(1),
        args.get(2).and_then(|b| b.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: kernel_bench MODEL.onnx BATCH [SECONDS]");
        std::process::exit(2);
    };
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let graph = Graph::from_bytes(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    let width = graph.inputs()[0]
        .shape
        .get(1)
        .copied()
        .flatten()
        .expect("a [N, F] input");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let values: Vec<f32> = (0..batch * width)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    let input = Tensor::floats(vec![batch, width], values);
    for _ in 0..3 {
        graph.run(vec![input.clone()]).expect("run");
    }
    let started = Instant::now();
    let mut batches = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        graph.run(vec![input.clone()]).expect("run");
        batches += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"batch\": {batch}, \"batches\": {batches}, \"ms_per_batch\": {:.4}, \"rows_per_sec\": {:.0}}}",
        elapsed * 1000.0 / batches as f64,
        (batches as f64 * batch as f64) / elapsed
    );
}

//! How the audit trail's Merkle tree scales (issue 14: proofs O(log n), 1M events verified
//! within seconds): the root of 1,000,000 leaves, an inclusion proof and its check, timed.
//!
//!     cargo run --release -p mltrail-core --example merkle_scale [LEAVES]

use mltrail_core::merkle;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let leaves: Vec<merkle::Hash> = (0..n as u64)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let hashing = started.elapsed();
    let started = Instant::now();
    let root = merkle::root(&leaves);
    let rooting = started.elapsed();
    let index = n / 3;
    let started = Instant::now();
    let proof = merkle::inclusion_proof(&leaves, index).expect("a leaf");
    let proving = started.elapsed();
    let started = Instant::now();
    let ok = merkle::verify_inclusion(&leaves[index], index as u64, n as u64, &proof, &root);
    let checking = started.elapsed();
    assert!(ok);
    println!(
        "{n} leaves: leaf hashes {:.3} s, root {:.3} s, proof of leaf {index} {:.3} s ({} hashes, {} bytes), check {:.1} µs",
        hashing.as_secs_f64(),
        rooting.as_secs_f64(),
        proving.as_secs_f64(),
        proof.len(),
        proof.len() * 32,
        checking.as_secs_f64() * 1e6
    );
}

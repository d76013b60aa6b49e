//! What sealing one record's personal data costs (`cargo run --release -p mltrail-core --example
//! seal_cost`): the nonce, AES-256-GCM and the base64 text, per value.
use mltrail_core::privacy::DataKey;
use std::time::Instant;

fn main() {
    let key = DataKey::generate().expect("key");
    let n = 1_000_000;
    let started = Instant::now();
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for i in 0..n {
        out.clear();
        key.seal_into(
            &(i as u128).to_le_bytes(),
            br#"{"email":"ada@example.org"}"#,
            &mut scratch,
            &mut out,
        )
        .expect("seal");
        bytes += out.len();
    }
    let per = started.elapsed().as_nanos() as f64 / n as f64;
    println!("seal_into: {per:.0} ns per value ({bytes} bytes)");
    let mut nonce = [0u8; 12];
    let started = Instant::now();
    for _ in 0..n {
        aws_lc_rs::rand::fill(&mut nonce).expect("random");
    }
    let per = started.elapsed().as_nanos() as f64 / n as f64;
    println!("12 random bytes: {per:.0} ns");
}

//! Artifact downloads on a kept-alive connection, the way the mlflow client fetches a model's
//! files. A response sent in two writes (headers, then a streamed body) must not wait for the
//! client's delayed ACK: with Nagle's algorithm on, 14 of 20 of these downloads took 41-44 ms
//! instead of about 1 ms.

mod common;

use common::{client, Server};
use std::time::{Duration, Instant};

const DOWNLOADS: usize = 20;
/// Linux delays an ACK by at least 40 ms; a loopback download of a few kilobytes takes about 1 ms.
const STALL: Duration = Duration::from_millis(35);

#[test]
fn artifact_downloads_on_a_kept_alive_connection_do_not_wait_for_delayed_acks() {
    let server = Server::start();
    let http = client();
    for size in [1_000usize, 70_001] {
        let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/blob-{size}",
            server.url
        );
        let put = http.put(&url).body(content.clone()).send().expect("upload");
        assert_eq!(put.status().as_u16(), 200, "upload of {size} bytes");

        let mut stalled = Vec::new();
        for _ in 0..DOWNLOADS {
            let start = Instant::now();
            let body = http
                .get(&url)
                .send()
                .expect("download")
                .bytes()
                .expect("body");
            let took = start.elapsed();
            assert_eq!(
                body.as_ref(),
                content.as_slice(),
                "{size} bytes came back changed"
            );
            if took >= STALL {
                stalled.push(took);
            }
        }
        // A busy machine may delay one or two; the stall delayed most of them.
        assert!(
            stalled.len() <= 2,
            "{} of {DOWNLOADS} downloads of {size} bytes took 35 ms or more: {stalled:?}",
            stalled.len()
        );
    }
}

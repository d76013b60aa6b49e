//! The scoring server's input rules beyond the signature: the content types MLflow's scoring
//! protocol takes (JSON and CSV) and no others, booleans are not numbers, and the protocol's
//! edges (405 with a JSON body, a 413 that ends its keep-alive connection cleanly).

mod common;
use common::scorer::{register, Scorer};
use common::{client, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn post_as(scorer: &Scorer, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = client()
        .post(format!("{}/invocations", scorer.url))
        .body(body.to_string());
    if let Some(ct) = content_type {
        request = request.header("Content-Type", ct);
    }
    let resp = request.send().expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn json_and_csv_are_scored_alike_and_other_types_are_refused() {
    let server = Server::start();
    register(&server, "by-columns", "columns_onehot.onnx", &[]);
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(&server, "by-columns/1", logs.path(), &[]);

    let records = json!({"dataframe_records": [
        {"region": "north", "income": 51.5, "age": 30},
        {"region": "south", "income": 20.0, "age": 61},
    ]});
    let (status, from_json) = scorer.post("/invocations", &records);
    assert_eq!(status, 200, "{from_json}");
    let csv = "region,income,age\nnorth,51.5,30\nsouth,20.0,61\n";
    let (status, from_csv) = post_as(&scorer, Some("text/csv"), csv);
    assert_eq!(status, 200, "{from_csv}");
    assert_eq!(
        from_csv, from_json,
        "the same rows as CSV and as JSON give the same answer"
    );
    let (status, _) = post_as(&scorer, Some("text/csv; charset=utf-8"), csv);
    assert_eq!(status, 200);

    // CSV errors name the row and the column, as JSON errors do.
    let (status, answer) = post_as(
        &scorer,
        Some("text/csv"),
        "region,income,age\nnorth,51.5,30\nsouth,lots,61\n",
    );
    assert_eq!(
        (status, answer["column"].clone(), answer["row"].clone()),
        (400, json!("income"), json!(1)),
        "{answer}"
    );
    let (status, answer) = post_as(&scorer, Some("text/csv"), "region,income,age\nnorth,51.5\n");
    assert_eq!((status, answer["row"].clone()), (400, json!(0)), "{answer}");
    let (status, answer) = post_as(&scorer, Some("text/csv"), "region,income\nnorth,51.5\n");
    assert_eq!(
        (status, answer["column"].clone()),
        (400, json!("age")),
        "{answer}"
    );

    // Neither JSON nor CSV: 415, as MLflow's scoring server answers, with a JSON body.
    let body = records.to_string();
    for content_type in [
        Some("application/xml"),
        Some("image/png"),
        Some("text/plain"),
        None,
    ] {
        let (status, answer) = post_as(&scorer, content_type, &body);
        assert_eq!(status, 415, "{content_type:?}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("text/csv"),
            "{answer}"
        );
    }
    let (_, metrics) = scorer.get("/metrics");
    assert!(metrics.contains("kind=\"bad_request\"} 7"), "{metrics}");
}

#[test]
fn a_boolean_is_not_a_number() {
    let server = Server::start();
    register(&server, "by-columns", "columns_onehot.onnx", &[]);
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(&server, "by-columns/1", logs.path(), &[]);
    for income in [json!(true), json!(false)] {
        let (status, answer) = scorer.post(
            "/invocations",
            &json!({"dataframe_records": [{"region": "north", "income": income, "age": 30}]}),
        );
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["column"], "income", "{answer}");
        assert_eq!(answer["row"], 0, "{answer}");
    }
}

#[test]
fn protocol_edges_answer_in_json_and_end_connections_cleanly() {
    let server = Server::start();
    register(&server, "by-columns", "columns_onehot.onnx", &[]);
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "by-columns/1",
        logs.path(),
        &["--max-body-bytes", "4096"],
    );
    let (status, text) = scorer.get("/invocations");
    assert_eq!(status, 405, "{text}");
    let body: Value = serde_json::from_str(&text).expect("a JSON body");
    assert_eq!(body["error_code"], "BAD_REQUEST");

    // A body over the limit on a keep-alive connection: the answer says the connection closes,
    // so the client's next request goes on a new one instead of failing on this one.
    let addr = scorer.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let big = vec![b' '; 64 * 1024];
    let head = format!(
        "POST /invocations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&big);
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    // The server is fine for the next client.
    let (status, _) = scorer.post(
        "/invocations",
        &json!({"dataframe_records": [{"region": "north", "income": 1.0, "age": 30}]}),
    );
    assert_eq!(status, 200);
}

//! `predictions export --since/--until` reads only what the range needs: day folders that cannot
//! hold it are not listed into the read (a damaged file there does not matter), and of the files
//! read only the footer and the row groups whose time statistics overlap the range are fetched,
//! through the artifact proxy's `Range` support.

mod common;

use common::{client, Server};
use mltrail_serving::archive::ParquetFile;
use mltrail_serving::record::LogRecord;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000;

fn record(t: i64, n: i64) -> LogRecord {
    let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(t / 1000).unwrap(),
        u32::try_from((t % 1000) * 1_000_000 + n).unwrap(),
    ));
    serde_json::from_str(&format!(
        r#"{{"type":"prediction","id":"{id}","time_ms":{t},"deployment":"ranged","model":"m","version":"1","inputs":{{"n":{n}}},"outputs":{{"y":1}}}}"#
    ))
    .unwrap()
}

#[test]
fn export_reads_only_the_days_and_row_groups_of_its_range() {
    let server = Server::start();
    let root = server.artifact_root().join("predictions/ranged");
    // Four days, one file each of four row groups; group g of a day holds 50 records between
    // g*6h and g*6h+5h.
    for day in 0..4 {
        let folder = root.join(mltrail_core::time::utc_date(START + day * DAY));
        std::fs::create_dir_all(&folder).unwrap();
        let mut file = ParquetFile::new().unwrap();
        for g in 0..4 {
            let group: Vec<LogRecord> = (0..50)
                .map(|i| record(START + day * DAY + g * 6 * HOUR + i * 6 * 60_000, i))
                .collect();
            file.write(&group).unwrap();
        }
        std::fs::write(
            folder.join("r-000000000001.parquet"),
            file.finish().unwrap(),
        )
        .unwrap();
    }
    // A file no reader of the last day can need: were it downloaded, the export would fail.
    let first_day = root.join(mltrail_core::time::utc_date(START));
    std::fs::write(first_day.join("r-000000000002.parquet"), b"not parquet").unwrap();

    let export = |extra: &[&str]| {
        let base = [
            "predictions",
            "export",
            "--deployment",
            "ranged",
            "--format",
            "csv",
            "--tracking-uri",
            &server.url,
            "--log-dir",
            "/nonexistent",
        ];
        server.mltrail(&[&base[..], extra].concat())
    };
    // The predictions an export printed, and what it said on stderr; it must succeed.
    let exported = |extra: &[&str]| {
        let out = export(extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let csv = String::from_utf8(out.stdout).unwrap();
        let rows = csv.lines().filter(|l| l.starts_with("prediction,")).count();
        (rows, stderr)
    };
    let rfc = |t: i64| mltrail_core::time::rfc3339_seconds(t);
    let since = START + 3 * DAY + 6 * HOUR;
    let (rows, stderr) = exported(&[
        "--since",
        &rfc(since),
        "--until",
        &rfc(since + 6 * HOUR - 1000),
    ]);
    // Group 1 of the fourth day: 06:00 to 11:00, every record of it.
    assert_eq!(rows, 50);
    // The two days before are read for their footers (a segment may cross midnight) and
    // skipped; the first day's folder is not read at all.
    assert!(
        stderr.contains("(1 row groups of 3 files; 11 row groups outside the range left unread)"),
        "{stderr}"
    );

    // --since alone: the last day whole, from the same two files.
    assert_eq!(exported(&["--since", &rfc(START + 3 * DAY)]).0, 200);

    // A date alone as --until is the whole of that day.
    let day = mltrail_core::time::utc_date(START + 3 * DAY);
    assert_eq!(exported(&["--since", &day, "--until", &day]).0, 200);

    // An end before the start is refused with what to do.
    let out = export(&["--since", &rfc(since), "--until", &rfc(since - 1000)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--until"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_artifact_proxy_answers_byte_ranges() {
    let server = Server::start();
    let folder = server.artifact_root().join("ranges");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("f.bin"), b"0123456789").unwrap();
    let url = format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/ranges/f.bin",
        server.url
    );
    let get = |range: &str| client().get(&url).header("Range", range).send().unwrap();
    let part = get("bytes=2-4");
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(part.text().unwrap(), "234");
    assert_eq!(get("bytes=-3").text().unwrap(), "789");
    assert_eq!(get("bytes=7-").text().unwrap(), "789");
    assert_eq!(get("bytes=8-100").text().unwrap(), "89");
    let past = get("bytes=10-");
    assert_eq!(past.status().as_u16(), 416);
    assert_eq!(past.headers()["content-range"], "bytes */10");
    // A malformed byte range is refused naming the header; another unit is ignored.
    let bad = get("bytes=4-1");
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().unwrap().contains("Range"));
    let other_unit = get("lines=1-2");
    assert_eq!(other_unit.status().as_u16(), 200);
    assert_eq!(other_unit.text().unwrap(), "0123456789");
    // An empty file has no byte to send.
    std::fs::write(folder.join("empty.bin"), b"").unwrap();
    let empty = client()
        .get(url.replace("f.bin", "empty.bin"))
        .header("Range", "bytes=-4")
        .send()
        .unwrap();
    assert_eq!(empty.status().as_u16(), 416);
    assert_eq!(empty.headers()["content-range"], "bytes */0");
    // Several ranges: the whole file, as HTTP allows.
    let whole = get("bytes=0-1,4-5");
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(whole.text().unwrap(), "0123456789");
    let plain = client().get(&url).send().unwrap();
    assert_eq!(plain.headers()["accept-ranges"], "bytes");
}

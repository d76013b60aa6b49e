#!/usr/bin/env bash
# Every test: Rust unit and integration tests, then the mlflow-client compatibility suite against
# mltrail server on SQLite + local folder (auth off, then --auth on), PostgreSQL + local folder
# (and its permission and audit-proof tests with --auth on), and SQLite + S3 (moto), then
# the web UI in headless Chromium (tests/ui: pages, links the client prints, script payloads
# inert; screenshots in target/ui-screenshots), then the fault-injection tests (tests/faults:
# PostgreSQL stopped and restarted under write load, the S3-compatible store out of reach, a
# full disk under the SQLite store and the prediction log).
# Services start on 127.0.0.1 with free ports and are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

scripts/setup.sh
cargo build --locked --bins
cargo test --locked --workspace -- --test-threads=2

work=$(mktemp -d)
chmod 755 "$work"
cleanup() { scripts/pg.sh stop "$work/pg" || true; scripts/s3.sh stop "$work/s3" || true; rm -rf "$work"; }
trap cleanup EXIT

pytest=(.venv/bin/pytest -q -p no:cacheprovider tests/compat)

echo "== compatibility suite: SQLite + local artifacts"
"${pytest[@]}"

echo "== compatibility suite: SQLite + --auth on (the client logs in with MLFLOW_TRACKING_USERNAME/PASSWORD)"
MLTRAIL_TEST_AUTH=on "${pytest[@]}"

echo "== compatibility suite: PostgreSQL + local artifacts"
pg_uri=$(scripts/pg.sh start "$work/pg")
MLTRAIL_TEST_BACKEND_URI="$pg_uri" "${pytest[@]}"
echo "== PostgreSQL + --auth on: permissions, roles and audit proofs"
MLTRAIL_TEST_AUTH=on MLTRAIL_TEST_BACKEND_URI="$pg_uri" \
  .venv/bin/pytest -q -p no:cacheprovider tests/compat/test_auth.py tests/compat/test_audit_proof.py

echo "== compatibility suite: SQLite + S3-compatible object storage (moto)"
endpoint=$(scripts/s3.sh start "$work/s3" mltrail-test)
AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  MLTRAIL_TEST_ARTIFACTS="s3://mltrail-test/artifacts" "${pytest[@]}"

echo "== web UI in headless Chromium (screenshots in target/ui-screenshots)"
.venv/bin/pytest -q -p no:cacheprovider tests/ui

echo "== fault injection: PostgreSQL restarted, S3 out of reach, full disks"
.venv/bin/pytest -q -p no:cacheprovider tests/faults

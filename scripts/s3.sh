#!/usr/bin/env bash
# Starts moto's S3-compatible server on 127.0.0.1 with one bucket, and prints its endpoint URL.
#   scripts/s3.sh start DIR BUCKET   → prints http://127.0.0.1:PORT (pid in DIR/moto.pid)
#   scripts/s3.sh stop DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?start|stop}; dir=${2:?state directory}
case "$cmd" in
  start)
    bucket=${3:?bucket}
    mkdir -p "$dir"
    port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    echo $! > "$dir/moto.pid"
    for _ in $(seq 100); do
      .venv/bin/python - "$port" "$bucket" <<'PY' 2>/dev/null && break || sleep 0.2
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
s3.create_bucket(Bucket=sys.argv[2])
PY
    done
    echo "http://127.0.0.1:$port"
    ;;
  stop)
    [ -f "$dir/moto.pid" ] && kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
    ;;
esac

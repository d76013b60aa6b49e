#!/usr/bin/env bash
# Installs what the tests and benchmarks need on a fresh machine: the Python venv with the pinned
# mlflow client (and moto for an S3-compatible server), PostgreSQL server binaries, Chromium
# (headless, for the HTML report test), wrk for benchmarks.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null || need_apt+=(chromium)   # renders the drift HTML report in a test
command -v openssl >/dev/null || need_apt+=(openssl)     # makes the TLS test's CA and certificate
if [ "${MLTRAIL_SETUP_BENCH:-0}" = 1 ]; then command -v wrk >/dev/null || need_apt+=(wrk); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.requirements.sha
want=$(sha256sum tests/compat/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv with tests/compat/requirements.txt (pinned mlflow client)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -r tests/compat/requirements.txt
  echo "$want" > "$stamp"
fi

# The Python client (python/), reinstalled when its sources change; the tests import it.
client_stamp=.venv/.client.sha
client_want=$(find python -type f \( -name '*.py' -o -name '*.toml' -o -name '*.md' -o -name py.typed \) -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$client_stamp" 2>/dev/null)" != "$client_want" ]; then
  echo "setup: installing the Python client from ./python"
  .venv/bin/pip install -q --disable-pip-version-check ./python
  rm -rf python/build python/src/*.egg-info
  echo "$client_want" > "$client_stamp"
fi

#!/usr/bin/env bash
# Runs fuzz targets coverage-guided with cargo fuzz (nightly): each for SECONDS, growing
# fuzz/corpus/<target>/ from fuzz/seeds/<target>/. Crashes land in fuzz/artifacts/<target>/,
# logs (with libFuzzer's final stats: executions, coverage) in fuzz/logs/<target>.log.
#   fuzz/run.sh [--seconds N] [--jobs J] [--keep-going] [TARGET...]
#                 (default: every target, 3600 s, 1 job; --keep-going: libFuzzer's fork mode, which
#                  records a crash or timeout in artifacts/ and goes on fuzzing instead of stopping)
#   fuzz/run.sh --minimize [TARGET...]                 shrink corpora before committing them
# The test suite replays the committed corpora without nightly (crates/mltrail-fuzzing/tests).
set -euo pipefail
cd "$(dirname "$0")"
seconds=3600
jobs=1
minimize=0
keep_going=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --minimize) minimize=1; shift ;;
    --keep-going) keep_going=1; shift ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O
mkdir -p logs
run_one() {
  local t="$1"
  mkdir -p "corpus/$t"
  if [ "$minimize" = 1 ]; then
    cargo +nightly fuzz cmin -O "$t" "corpus/$t" -- -rss_limit_mb=4096 >"logs/$t.cmin.log" 2>&1
    echo "$t: $(ls "corpus/$t" | wc -l) corpus inputs after minimizing"
    return
  fi
  local extra=()
  # sqlx's SQLite connection threads outlive close() by a moment; LeakSanitizer's check at the
  # end of each input counts them as leaks. This target opens a store per input.
  [ "$t" = audit_verify ] && extra+=(-detect_leaks=0)
  [ "$keep_going" = 1 ] && extra+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 -timeout=60 "${extra[@]}" \
    >"logs/$t.log" 2>&1 || true
  echo "$t: $(grep -E '^stat::number_of_executed_units' "logs/$t.log" | awk '{print $2}') executions," \
    "$(ls "artifacts/$t" 2>/dev/null | wc -l) crash files"
}
export -f run_one
export seconds minimize keep_going
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'

#!/usr/bin/env bash
# `dynahug scan` throughput on a mixed directory (the generated benign
# corpus: torch zip/legacy/TorchScript, sklearn/xgboost pickles, joblib
# plain and compressed, numpy, pandas, dill/cloudpickle, archives), side by
# side in one run with the static floor (`dynahug disasm` of the same files:
# read + decode every pickle, nothing loaded) and, when installed, picklescan.
#
# usage: bench/run_scan_bench.sh [BUILD_DIR] [JOBS] [--full]
#   BUILD_DIR  CMake build directory with runtime/dynahug (default: build)
#   JOBS       scan workers (default 2)
#   --full     the full benign corpus (815 files) instead of --small (148)
# Inputs are generated once under BUILD_DIR/bench-data/scan/ (never
# committed). Prints files, wall seconds and files/s per tool;
# the scan row also gives its verdict counts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
JOBS=${2:-2}
SIZE=--small
[ "${3:-}" = "--full" ] && SIZE=
BIN=$BUILD/runtime/dynahug
DATA=$BUILD/bench-data/scan${SIZE:+-small}
if [ ! -f "$DATA/manifest.json" ]; then
  /usr/bin/python3 "$ROOT/tools/corpus/generate.py" --out "$DATA" $SIZE \
    --only benign >/dev/null
fi
mapfile -t files < <(find "$DATA/benign" -type f | sort)
n=${#files[@]}

# run NAME CMD...: wall time of one command (its output kept in $DATA).
run() {
  local name=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$DATA/$name.out" 2>"$DATA/$name.err" || true
  t1=$(date +%s.%N)
  awk -v n="$n" -v t0="$t0" -v t1="$t1" -v name="$name" \
    'BEGIN { w = t1 - t0; printf "%-28s %6d files %8.2f s %8.1f files/s\n", name, n, w, n / w }'
}

echo "scan benchmark: $n files ($DATA), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
run "dynahug disasm (static)" "$BIN" disasm --format json "${files[@]}"
if command -v picklescan >/dev/null; then
  run "picklescan" picklescan --path "$DATA/benign"
else
  echo "picklescan                   not installed (no PyPI here): skipped"
fi
run "dynahug scan --jobs $JOBS" "$BIN" scan --jobs "$JOBS" --format json "$DATA/benign"
/usr/bin/python3 - "$DATA/dynahug scan --jobs $JOBS.out" <<'PY'
import json, sys, collections
doc = json.load(open(sys.argv[1]))
c = collections.Counter(r["verdict"] for r in doc["results"])
print("  verdicts:", dict(c))
PY

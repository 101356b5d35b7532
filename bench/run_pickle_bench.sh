#!/bin/sh
# Decoder throughput vs pickletools.genops on the same files, same run.
#   bench/run_pickle_bench.sh [BUILD_DIR] [DATA_DIR]
# BUILD_DIR must contain bench/pickle_decode_bench (default build-pickle);
# DATA_DIR caches the generated pickles (default BUILD_DIR/bench-data).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-pickle}
DATA=${2:-$BUILD/bench-data}
PY=/usr/bin/python3
BENCH=$BUILD/bench/pickle_decode_bench
[ -x "$BENCH" ] || BENCH=$BUILD/pickle_decode_bench
[ -x "$BENCH" ] || { echo "no pickle_decode_bench under $BUILD" >&2; exit 2; }

$PY "$ROOT/bench/gen_large_pickle.py" "$DATA"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
DYNAHUG_PICKLE_BENCH_DIR=$DATA "$BENCH" --benchmark_format=json >"$OUT"

$PY - "$OUT" "$DATA" <<'PYEOF'
import json, os, pickletools, sys, time
res = json.load(open(sys.argv[1]))
data_dir = sys.argv[2]
cpp = {}
for b in res["benchmarks"]:
    name = b["name"].split("/")[1]
    cpp[name] = b["bytes_per_second"] / 1e6
    print("decoder %-26s %8.1f MB/s (CPU time; wall %.0f ms/iter)" %
          (name, cpp[name], b["real_time"]))
for name in ("small_ops", "mixed"):
    path = os.path.join(data_dir, name + ".pkl")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        t0 = time.process_time()
        n = 0
        for _ in pickletools.genops(f):
            n += 1
        secs = time.process_time() - t0
    py = size / secs / 1e6
    print("genops  %-26s %8.1f MB/s (CPU time, %d opcodes)" % (name, py, n))
    print("ratio   %-26s %8.1fx" % (name, cpp[name] / py))
PYEOF

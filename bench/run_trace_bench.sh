#!/usr/bin/env bash
# Sandboxed-tracing throughput: dynahug's zygote workers vs the original
# DynaHug technique (a fresh `python3 -c "import torch; torch.load(PATH)"`
# per file under `strace -f -c`), on the same small, benign files, in one run.
#
# usage: bench/run_trace_bench.sh [BUILD_DIR] [BASELINE_SAMPLE] [ROUNDS]
#   BUILD_DIR        CMake build directory (default: build); trace_throughput
#                    is built there if missing (-j2)
#   BASELINE_SAMPLE  files per set for the baseline (default 20; it costs
#                    ~1.5-2 s a file)
#   ROUNDS           warm passes over each set for dynahug (default 2)
#
# File sets (generated under BUILD_DIR/bench-data/trace on first use):
#   tiny    200 tiny torch state dicts (bench/gen_tiny_models.py)
#   corpus  the --small benign corpus' model files up to 256 KiB whose
#           library is torch, sklearn, joblib or numpy, archives excluded
#           (tools/corpus/generate.py --small --only benign)
#   mixed   200 tiny files, a quarter each torch / npy / raw pickle / joblib
#           (bench/gen_tiny_models.py --mixed): prewarmed zygotes (the
#           default) vs lazy imports, FIFO or routed by needed packages
#           (no baseline)
# dynahug rows: bench/trace_throughput (see its header for what is timed).
# Baseline rows: per file, wall time of the whole process; torch formats use
# torch.load exactly as DynaHug did, the others the loader their format needs
# (joblib.load, numpy.load, pickle.load) after the same `import torch`.
# "x2" rows run two baseline processes at a time (xargs -P2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SAMPLE=${2:-20}
ROUNDS=${3:-2}
PY=/usr/bin/python3
DATA=$BUILD/bench-data/trace
OUT=$DATA/results
mkdir -p "$DATA" "$OUT"

if [ ! -x "$BUILD/bench/trace_throughput" ]; then
  cmake --build "$BUILD" --target trace_throughput -j2 >/dev/null
fi
command -v strace >/dev/null || { echo "strace missing: scripts/install-deps.sh" >&2; exit 1; }

# --- inputs --------------------------------------------------------------------
if [ ! -f "$DATA/tiny/tiny_199.pt" ]; then
  "$PY" "$ROOT/bench/gen_tiny_models.py" "$DATA/tiny" 200 >/dev/null
fi
if [ ! -f "$DATA/mixed/arrays_199.joblib" ]; then
  "$PY" "$ROOT/bench/gen_tiny_models.py" --mixed "$DATA/mixed" 200 >/dev/null
fi
if [ ! -f "$DATA/corpus/manifest.json" ]; then
  "$PY" "$ROOT/tools/corpus/generate.py" --out "$DATA/corpus" --small \
    --only benign >/dev/null
fi
ls "$DATA"/tiny/tiny_*.pt | sed 's/$/\ttorch.load/' >"$DATA/tiny.tsv"
ls "$DATA"/mixed/* | sed 's/$/\t-/' >"$DATA/mixed.tsv"
"$PY" - "$DATA/corpus" >"$DATA/corpus.tsv" <<'EOF'
import json, os, sys
root = sys.argv[1]
for f in json.load(open(os.path.join(root, "manifest.json")))["files"]:
    loader = f["params"].get("loader")
    if (f["size"] <= 256 * 1024 and
            f["library"] in ("torch", "sklearn", "joblib", "numpy") and
            loader in ("torch.load", "joblib.load", "numpy.load",
                       "pickle.load")):
        print(f"{os.path.join(root, f['path'])}\t{loader}")
EOF

# --- baseline: one fresh Python process per file --------------------------------
# Prints the file's wall time in microseconds and the process's exit status
# (a load that fails, e.g. a checkpoint that needs a package that is not
# installed, still produced a syscall trace, as in DynaHug).
baseline_one() {
  local path=$1 loader=$2 mode=$3 code
  case $loader in
    torch.load) code="import torch; torch.load('$path')" ;;
    joblib.load) code="import torch, joblib; joblib.load('$path')" ;;
    numpy.load) code="import torch, numpy; numpy.load('$path', allow_pickle=True)" ;;
    pickle.load) code="import torch, pickle; pickle.load(open('$path', 'rb'))" ;;
  esac
  local start end
  local status=0
  start=$(date +%s%N)
  if [ "$mode" = strace ]; then
    strace -f -c -o /dev/null /usr/bin/python3 -W ignore -c "$code" >/dev/null 2>&1 || status=$?
  else
    /usr/bin/python3 -W ignore -c "$code" >/dev/null 2>&1 || status=$?
  fi
  end=$(date +%s%N)
  echo "$(((end - start) / 1000)) $status"
}
export -f baseline_one

# $1 set, $2 mode (plain|strace), $3 parallelism -> one JSON line
baseline() {
  local set=$1 mode=$2 par=$3 n sample start end
  n=$(wc -l <"$DATA/$set.tsv")
  sample=$DATA/$set.sample.tsv
  awk -v n="$n" -v k="$SAMPLE" 'BEGIN { step = n / k }
       { if (NR - 1 >= next_pick && picked < k) { print; picked++; next_pick += step } }' \
    "$DATA/$set.tsv" >"$sample"
  start=$(date +%s%N)
  tr '\t' ' ' <"$sample" |
    xargs -P "$par" -L 1 bash -c 'baseline_one "$0" "$1" '"$mode" \
      >"$OUT/baseline_${set}_${mode}_$par.us"
  end=$(date +%s%N)
  "$PY" - "$OUT/baseline_${set}_${mode}_$par.us" "$start" "$end" "$mode" "$par" <<'EOF'
import json, sys
runs = [l.split() for l in open(sys.argv[1]) if l.strip()]
us = sorted(int(r[0]) for r in runs)
failed = sum(1 for r in runs if r[1] != "0")
wall = (int(sys.argv[3]) - int(sys.argv[2])) / 1e9
pick = lambda p: us[min(len(us) - 1, int(p / 100 * len(us)))] / 1000
print(json.dumps({"mode": "baseline-" + sys.argv[4], "workers": int(sys.argv[5]),
                  "files": len(us), "ok": len(us) - failed,
                  "load_failed": failed, "errors": 0,
                  "files_per_s": len(us) / wall, "latency_ms_p50": pick(50),
                  "latency_ms_p99": pick(99)}))
EOF
}

# --- runs -------------------------------------------------------------------------
results=$OUT/results.jsonl
: >"$results"
echo "machine: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
dynahug() {  # $1 set, rest: trace_throughput options
  local set=$1
  shift
  "$BUILD/bench/trace_throughput" "$@" --rounds "$ROUNDS" @"$DATA/$set.list" |
    sed "s/^{/{\"set\": \"$set\", \"options\": \"$*\", /" >>"$results" ||
    { echo "trace_throughput $* failed on $set" >&2; exit 1; }
}
for set in tiny corpus mixed; do
  cut -f1 "$DATA/$set.tsv" >"$DATA/$set.list"
  echo "set $set: $(wc -l <"$DATA/$set.list") files" >&2
  dynahug "$set" --mode inproc
  dynahug "$set" --mode pool --workers 1
  dynahug "$set" --mode pool --workers 2
  case $set in
    tiny) dynahug "$set" --mode pool --workers 2 --no-compact ;;
    mixed) dynahug "$set" --mode pool --workers 2 --affinity --no-prewarm
           dynahug "$set" --mode pool --workers 2 --no-prewarm
           continue ;;
  esac
  for mode in plain strace; do
    for par in 1 2; do
      baseline "$set" "$mode" "$par" |
        sed "s/^{/{\"set\": \"$set\", \"options\": \"\", /" >>"$results"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- table ------------------------------------------------------------------------
"$PY" - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def name(r):
    o = r["options"]
    if r["mode"] == "inproc":
        return "in-process zygote (old trace)"
    if r["mode"] == "pool":
        n = "dynahug trace --jobs %d" % r["workers"]
        if "--no-compact" in o: n += ", 4K pages"
        if "--affinity" in o: n += ", routed"
        if "--no-prewarm" in o: n += ", lazy imports"
        return n
    return {"baseline-plain": "python -c torch.load (fresh)",
            "baseline-strace": "strace -f python -c torch.load"}[r["mode"]]
print()
print(f"{'set':6} {'method':33} {'procs':>5} {'files':>5} {'files/s':>8} "
      f"{'p50 ms':>7} {'p99 ms':>7} {'CPU ms/file':>11} {'vs strace':>9}")
for s in ("tiny", "corpus", "mixed"):
    base = {r["workers"]: r["files_per_s"] for r in rows
            if r["set"] == s and r["mode"] == "baseline-strace"}
    for r in rows:
        if r["set"] != s:
            continue
        cpu = f"{r['cpu_ms_per_file']:.1f}" if "cpu_ms_per_file" in r else "-"
        b = base.get(r["workers"], base.get(1))
        ratio = f"{r['files_per_s'] / b:.0f}x" if b else "-"
        print(f"{s:6} {name(r):33} {r['workers']:>5} {r['files']:>5} "
              f"{r['files_per_s']:>8.1f} {r['latency_ms_p50']:>7.1f} "
              f"{r['latency_ms_p99']:>7.1f} {cpu:>11} {ratio:>9}")
print()
for r in rows:
    if r["mode"] in ("pool", "inproc"):
        print(f"{r['set']} {name(r)}: cold {r['cold_files_per_s']:.1f} files/s "
              f"(start-up and imports included); CPU/file zygote "
              f"{r['zygote_cpu_ms_per_file']:.2f} + children "
              f"{r['children_cpu_ms_per_file']:.2f} + driver "
              f"{r['driver_cpu_ms_per_file']:.2f} ms; child wall p50 "
              f"{r['child_wall_ms_p50']:.2f} ms, load+hooks p50 "
              f"{r['load_ms_p50']:.2f} ms"
              + (f"; jobs/worker {r['jobs_per_worker']}" if "jobs_per_worker" in r else ""))
for r in rows:
    if r.get("load_failed"):
        print(f"{r['set']} {name(r)} x{r['workers']}: {r['load_failed']} of "
              f"{r['files']} sampled loads failed in plain Python (counted: "
              f"their process still ran and was traced)")
    if r.get("child_not_ok"):
        print(f"{r['set']} {name(r)}: {r['child_not_ok']} traces whose child "
              f"did not end OK (load errors are results)")
print("\nfiles/s and latencies: warm passes (interpreters started, libraries "
      "imported); baseline rows: one process per file, sampled.\n'vs strace': "
      "files/s over the strace baseline with the same number of processes.")
EOF
echo "raw results: $results"

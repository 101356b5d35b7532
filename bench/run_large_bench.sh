#!/usr/bin/env bash
# Cost of large checkpoints: `dynahug disasm`, `scan` and `trace` against a
# static reference on the same file, side by side in one run: wall time and
# peak RSS (bench/peak_rss.py: the largest single process of each command's
# tree, and per role). Goal (issue 10): within 2x the static reference's wall
# time, every process under 300 MiB, whatever the file size.
#
# usage: bench/run_large_bench.sh [BUILD_DIR] [SIZES] [SNAPSHOT_GIB] [SHARDS]
#   BUILD_DIR     CMake build directory with runtime/dynahug (default: build)
#   SIZES         torch zip checkpoints to make, GiB (default "1 4"; "": none,
#                 e.g. `run_large_bench.sh build "" 0`: floor and legacy only)
#   SNAPSHOT_GIB  sharded snapshot size, GiB (default 10; 0: none)
#   SHARDS        shards of the snapshot (default 10)
# Inputs (bench/gen_large_checkpoints.py: torch.save of 4096x4096 float32
# tensors, plus a 1 GiB legacy-format file) are written one at a time into
# one temporary directory under ${TMPDIR:-/tmp}, measured, and deleted before
# the next (the directory is removed on exit, also on failure): never
# committed, at most one input on disk at a time. Each file is synced and
# evicted from the page cache (POSIX_FADV_DONTNEED) before every command, so
# every command reads what it needs from disk ("cold"); the static reference
# (bench/static_reference.py: zipfile + pickletools over the .pkl members, what
# picklescan does; picklescan itself is not installed here) is measured the
# same way.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SIZES=${2-"1 4"}
SNAPSHOT_GIB=${3:-10}
SHARDS=${4:-10}
BIN=$BUILD/runtime/dynahug
PY=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dynahug-large-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

evict() {
  sync "$@" 2>/dev/null || sync
  "$PY" - "$@" <<'PY'
import os, sys
for top in sys.argv[1:]:
    paths = [top] if os.path.isfile(top) else [
        os.path.join(r, n) for r, _d, fs in os.walk(top) for n in fs]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}

measure() {  # LABEL TARGET CMD...
  local label=$1 target=$2
  shift 2
  evict "$target"
  "$PY" "$ROOT/bench/peak_rss.py" "$label" "$@"
}

# Runs every tool on TARGET (a file or a snapshot directory).
bench_one() {
  local name=$1 target=$2
  local files=("$target")
  [ -d "$target" ] && mapfile -t files < <(find "$target" -name '*.bin' | sort)
  echo "== $name: $(du -sh --apparent-size "$target" | cut -f1), ${#files[@]} file(s)"
  measure "static reference (zipfile+pickletools)" "$target" \
    "$PY" "$ROOT/bench/static_reference.py" "${files[@]}"
  measure "dynahug disasm" "$target" "$BIN" disasm "${files[@]}"
  measure "dynahug scan --jobs 2" "$target" "$BIN" scan --jobs 2 --quiet "$target"
  measure "dynahug trace --jobs 2" "$target" "$BIN" trace --jobs 2 "${files[@]}"
  measure "dynahug disasm --full-hash" "$target" "$BIN" disasm --full-hash "${files[@]}"
  # The sandboxed child's own peak, as the trace reports it.
  evict "$target"
  "$BIN" trace --format json --jobs 2 "${files[@]}" 2>/dev/null |
    "$PY" -c '
import json, sys
traces = json.load(sys.stdin).get("traces", [])
rss = [int(t.get("exit", {}).get("max_rss_kib", 0)) for t in traces]
wall = [float(t.get("exit", {}).get("wall_ms", 0)) for t in traces]
if rss:
    print("%-44s %d load(s): child wall max %.0f ms, child peak RSS max %.0f MiB"
          % ("  sandboxed child (from the trace)", len(rss), max(wall),
             max(rss) / 1024))
' || true
}

echo "large checkpoint benchmark: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $WORK"
# The floor: the same commands on one tiny (4 KiB) checkpoint. scan and
# trace start interpreters and import the ML libraries (seconds, whatever
# the file); what a big file adds is the difference.
"$PY" "$ROOT/bench/gen_tiny_models.py" "$WORK/tiny" 1 >/dev/null
bench_one "start-up floor: a 4 KiB torch zip" "$WORK/tiny/tiny_000.pt"
rm -rf "$WORK/tiny"
for gib in $SIZES; do
  f=$("$PY" "$ROOT/bench/gen_large_checkpoints.py" "$WORK" zip "$gib")
  bench_one "torch zip, ${gib} GiB" "$f"
  rm -f "$f"
done
f=$("$PY" "$ROOT/bench/gen_large_checkpoints.py" "$WORK" legacy 1)
bench_one "torch legacy (non-zip), 1 GiB" "$f"
rm -f "$f"
if [ "$SNAPSHOT_GIB" -gt 0 ]; then
  d=$("$PY" "$ROOT/bench/gen_large_checkpoints.py" "$WORK" sharded "$SNAPSHOT_GIB" "$SHARDS")
  bench_one "sharded snapshot, ${SNAPSHOT_GIB} GiB in $SHARDS shards" "$d"
  rm -rf "$d"
fi

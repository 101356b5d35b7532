#!/usr/bin/env bash
# Regenerates models/default.dhm, the bundle `dynahug scan` uses when no
# --model is given: the benign side of the project's corpus (seed 0, full
# size, generated here from Debian's ML libraries: no download), its
# `train` and `val` splits (668 files; `val` served model selection, the
# `test` split stays unseen), traced in the sandbox and trained with
# `dynahug train`'s defaults (task clusters).
#
#   models/regenerate.sh [OUT]      # default OUT: models/default.dhm
#
# Same machine, same packages → the same bytes (checked by
# tests/integration/default_model_test.cc on a small corpus, and by running
# this twice: `cmp`). Needs root (the sandbox) and a built
# build/runtime/dynahug (scripts/build.sh); DYNAHUG_BIN overrides it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/models/default.dhm}")
bin=$(realpath "${DYNAHUG_BIN:-$root/build/runtime/dynahug}")
work=$(mktemp -d /tmp/dynahug-model-XXXXXX)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 "$root/tools/corpus/generate.py" --out "$work/corpus" \
  --only benign --seed 0 >&2
cd "$work/corpus"
# Relative paths: the bundle's training ids do not depend on where it ran.
/usr/bin/python3 - > "$work/train.txt" <<'PY'
import json
m = json.load(open("manifest.json"))
for f in m["files"]:
    if f["label"] == "benign" and f["split"] in ("train", "val"):
        print(f["path"])
PY
echo "regenerate: training on $(wc -l < "$work/train.txt") benign files" >&2
mapfile -t files < "$work/train.txt"
# One worker: a zygote keeps the libraries earlier files imported, so with
# several workers the traces would depend on which worker got which file.
"$bin" train --benign "${files[@]}" --out "$out" --jobs 1
sha256sum "$out"

#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (run as root): install the
# dependencies, build, and scan the shipped examples (a PyTorch state dict, a
# scikit-learn joblib file, a NumPy array and a Hugging Face-style model
# folder) with the shipped default model bundle.
# Usage: scripts/main.sh [PATH...]   (default: examples/)
# Exit code: the scan's (0 all benign, 1 malicious found, 2 error).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
if [ $# -eq 0 ]; then
  set -- examples
fi
exec build/runtime/dynahug scan "$@"

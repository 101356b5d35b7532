#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (run as root): install the
# dependencies, build, and analyse the shipped example model.
# Usage: scripts/main.sh [FILE...]   (default: the shipped example)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
if [ $# -eq 0 ]; then
  set -- examples/tiny_mlp_state_dict.pt
fi
exec build/runtime/dynahug disasm "$@"

#!/usr/bin/env bash
# Configures and builds dynahug into build/ (RelWithDebInfo). Idempotent:
# an existing build directory is reused and only rebuilt where sources
# changed. Warnings are errors here (DYNAHUG_WERROR). Extra arguments are passed to the CMake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDYNAHUG_WERROR=ON "$@" >/dev/null
cmake --build build -j"$jobs"

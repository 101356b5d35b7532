#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (run as root): install
# the dependencies, build, run every test (units, integration, differential,
# corpus tools), then build the libFuzzer targets and run each briefly.
# Environment: FUZZ_SECONDS (default 20) per fuzz target; FUZZ=0 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

scripts/install-deps.sh
scripts/build.sh

# A probe marker left on the host means a sandbox escape. Report any left
# from before, then start clean so a marker found afterwards is this run's.
if [ -d /tmp/dynahug_pwned ] && [ -n "$(ls -A /tmp/dynahug_pwned)" ]; then
  echo "test.sh: WARNING: probe markers from an earlier run:" >&2
  ls -la /tmp/dynahug_pwned >&2
fi
rm -rf /tmp/dynahug_pwned

ctest --test-dir build --output-on-failure -j"$jobs"

if [ -d /tmp/dynahug_pwned ] && [ -n "$(ls -A /tmp/dynahug_pwned)" ]; then
  echo "test.sh: SANDBOX ESCAPE: probe markers on the host:" >&2
  ls -la /tmp/dynahug_pwned >&2
  exit 1
fi

if [ "${FUZZ:-1}" != "0" ]; then
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DDYNAHUG_FUZZ=ON -DDYNAHUG_TESTS=OFF -DDYNAHUG_BENCH=OFF >/dev/null
  targets=()
  for src in tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$src" .cc)"); done
  cmake --build build-fuzz -j"$jobs" --target "${targets[@]}"
  for src in tests/fuzz/*_fuzz.cc; do
    name=$(basename "$src" .cc)
    corpus="$root/tests/fuzz/corpus/${name%_fuzz}"
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    echo "test.sh: fuzzing $name for ${FUZZ_SECONDS:-20}s"
    # Memory is judged as in production: by what a run really uses
    # (-rss_limit_mb), not by the size a C library asks malloc for. A
    # header-declared size makes libarchive ask for terabytes; glibc returns
    # NULL and libarchive reports "Couldn't allocate memory"
    # (tests/fuzz/corpus/container/7z-huge-alloc.7z), so ASan's malloc
    # returns NULL too instead of aborting. C++ operator new of an absurd
    # size still aborts under ASan, so our own allocations stay checked.
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1" \
    build-fuzz/tests/fuzz/"$name" -max_total_time="${FUZZ_SECONDS:-20}" \
      -rss_limit_mb=2048 -malloc_limit_mb=1048576 -timeout=10 \
      -print_final_stats=1 "$work" 2>&1 | tail -12
    rm -rf "$work"
  done
fi
echo "test.sh: all tests passed"

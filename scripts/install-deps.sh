#!/usr/bin/env bash
# Installs every Debian package dynahug needs to build, test and run.
# Idempotent: packages already installed are skipped, and apt is only
# contacted when something is missing. Must run as root on Debian 12.
set -euo pipefail

PACKAGES=(
  # build toolchain
  build-essential cmake pkg-config clang libclang-rt-14-dev
  # the embedded interpreter and the ML libraries the loaders and corpus use
  python3 libpython3.11-dev python3-numpy python3-torch python3-torchvision
  python3-sklearn python3-joblib python3-dill python3-cloudpickle
  python3-pandas python3-xgboost
  # the complete CPython standard library for the embedded interpreter, so
  # that stdlib gadgets a payload calls run for real instead of resolving to
  # stubs: Debian splits idlelib (idle-python3.11), lib2to3, distutils,
  # ensurepip (python3.11-venv), tkinter (python3-tk), dbm.gnu (python3-gdbm)
  # and test (libpython3.11-testsuite) out of libpython3.11-stdlib;
  # python3.11-full depends on all of them, turtledemo is in the examples
  python3.11-full python3.11-examples
  # native libraries (see third_party/CMakeLists.txt)
  libunwind-dev libcapstone-dev libsvm-dev libprotobuf-dev protobuf-compiler
  libseccomp-dev libabsl-dev libarchive-dev zlib1g-dev libbz2-dev liblzma-dev
  # SHA-256 of model bundles (features/model_bundle.cc)
  libssl-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # the original DynaHug baseline in bench/run_trace_bench.sh
  strace
  # archive tools the tests use to build 7z fixtures
  p7zip-full
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo $0)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"

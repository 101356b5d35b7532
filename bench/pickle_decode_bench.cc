// Throughput of the static pickle decoder (hooks/pickle_decoder) on large
// generated pickles. Inputs come from bench/gen_large_pickle.py; pass their
// directory in DYNAHUG_PICKLE_BENCH_DIR (bench/run_pickle_bench.sh does).
//
//   pickle_decode_bench [--benchmark_filter=...]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hooks/pickle_decoder.h"

namespace {

const std::vector<uint8_t>& Input(const char* name) {
  static std::vector<uint8_t> small_ops, small_ops_20mb, mixed;
  const std::string n(name);
  std::vector<uint8_t>& buf = n == "small_ops.pkl"        ? small_ops
                              : n == "small_ops_20mb.pkl" ? small_ops_20mb
                                                          : mixed;
  if (buf.empty()) {
    const char* dir = std::getenv("DYNAHUG_PICKLE_BENCH_DIR");
    const std::string path = std::string(dir ? dir : ".") + "/" + name;
    std::ifstream f(path, std::ios::binary);
    buf.assign(std::istreambuf_iterator<char>(f), {});
    if (buf.empty()) {
      std::fprintf(stderr,
                   "cannot read %s: run bench/gen_large_pickle.py DIR and set "
                   "DYNAHUG_PICKLE_BENCH_DIR=DIR\n",
                   path.c_str());
      std::exit(2);
    }
  }
  return buf;
}

void BM_Decode(benchmark::State& state, const char* name, bool keep_ops) {
  const std::vector<uint8_t>& data = Input(name);
  dynahug::hooks::DecodeOptions options;
  options.keep_ops = keep_ops;
  uint64_t ops = 0;
  for (auto _ : state) {
    const dynahug::hooks::PickleStream s =
        dynahug::hooks::DecodePickle(data, options);
    if (!s.complete) {
      state.SkipWithError(s.error ? s.error->message.c_str() : "incomplete");
      return;
    }
    ops = s.stats.opcode_count;
    benchmark::DoNotOptimize(s.stats.max_stack_depth);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
  state.counters["opcodes"] = static_cast<double>(ops);
  state.counters["MB"] = static_cast<double>(data.size()) / 1e6;
}

BENCHMARK_CAPTURE(BM_Decode, small_ops, "small_ops.pkl", false)
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Decode, small_ops_20mb, "small_ops_20mb.pkl", false)
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);
// keep_ops on the 20 MB file: ~15M DecodedOps (~1.7 GB) per iteration.
BENCHMARK_CAPTURE(BM_Decode, small_ops_20mb_keep_ops, "small_ops_20mb.pkl", true)
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Decode, mixed, "mixed.pkl", false)
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Decode, mixed_keep_ops, "mixed.pkl", true)
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();

// Sandbox costs: fork + full policy + exit for an empty body, against a bare
// fork/_exit/waitpid; and the per-syscall cost of the supervisor round trip
// (notified syscall) against a filter-allowed syscall and no sandbox.
//
//   build-sandbox/bench/sandbox_bench --benchmark_min_time=2
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "benchmark/benchmark.h"
#include "sandbox/child_launcher.h"

namespace dynahug::sandbox {
namespace {

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void BM_BareFork(benchmark::State& state) {
  for (auto _ : state) {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
  }
}
BENCHMARK(BM_BareFork)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Arg: 0 = Landlock, 1 = mount namespace.
void BM_SandboxedEmptyChild(benchmark::State& state) {
  Policy policy;
  policy.fs_isolation =
      state.range(0) == 0 ? FsIsolation::kLandlock : FsIsolation::kMountNamespace;
  for (auto _ : state) {
    absl::StatusOr<ChildResult> r =
        RunSandboxed(policy, [](ChildContext&) { return 0; });
    if (!r.ok() || r->status != ChildStatus::kOk) {
      state.SkipWithError("sandboxed child failed");
      break;
    }
  }
}
BENCHMARK(BM_SandboxedEmptyChild)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Per-syscall cost inside the sandbox, timed by the child around a loop of
// `kCalls` syscalls. Arg: 0 = getppid (notified, supervisor round trip),
// 1 = getpid (allowed by the filter, no round trip).
constexpr int kCalls = 20000;

void BM_SandboxedSyscall(benchmark::State& state) {
  const int nr = state.range(0) == 0 ? SYS_getppid : SYS_getpid;
  Policy policy;
  double total_ns = 0;
  int64_t runs = 0;
  for (auto _ : state) {
    absl::StatusOr<ChildResult> r = RunSandboxed(policy, [nr](ChildContext& ctx) {
      const int64_t t0 = NowNs();
      for (int i = 0; i < kCalls; ++i) syscall(nr);
      const int64_t t1 = NowNs();
      proto::Event e;
      e.set_kind(proto::Event::LOG);
      e.set_name("elapsed");
      e.set_duration_ns(static_cast<uint64_t>(t1 - t0));
      ctx.events().Write(std::move(e));
      return 0;
    });
    if (!r.ok() || r->events.empty()) {
      state.SkipWithError("sandboxed child failed");
      break;
    }
    total_ns += static_cast<double>(r->events[0].duration_ns());
    ++runs;
  }
  state.counters["ns_per_syscall"] =
      runs > 0 ? total_ns / static_cast<double>(runs * kCalls) : 0;
}
BENCHMARK(BM_SandboxedSyscall)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_UnsandboxedSyscall(benchmark::State& state) {
  for (auto _ : state) {
    for (int i = 0; i < kCalls; ++i) syscall(SYS_getppid);
  }
  state.counters["ns_per_syscall"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kCalls,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_UnsandboxedSyscall)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dynahug::sandbox

BENCHMARK_MAIN();

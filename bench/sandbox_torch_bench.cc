// End-to-end cost of a sandboxed load in a warm "zygote": this process embeds
// CPython, imports torch and loads a small state_dict once (warm-up), then
// each iteration forks a sandboxed child (RunSandboxed) that runs
// torch.load on the same file. Compared with torch.load in-process and with
// a bare fork + torch.load. Reports the syscalls the sandboxed load made.
//
//   build-sandbox/bench/sandbox_torch_bench
//
// The model file is written by the benchmark itself with Debian's
// /usr/bin/python3 into a temporary directory.
#include <Python.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "benchmark/benchmark.h"
#include "sandbox/child_launcher.h"

namespace dynahug::sandbox {
namespace {

std::string g_model;

std::string LoadStatement() {
  return "import torch\n_m = torch.load('" + g_model + "')\n";
}

void BM_TorchLoadInProcess(benchmark::State& state) {
  const std::string code = LoadStatement();
  for (auto _ : state) {
    if (PyRun_SimpleString(code.c_str()) != 0) {
      state.SkipWithError("torch.load failed");
      break;
    }
  }
}
BENCHMARK(BM_TorchLoadInProcess)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TorchLoadBareFork(benchmark::State& state) {
  const std::string code = LoadStatement();
  for (auto _ : state) {
    PyOS_BeforeFork();
    const pid_t pid = fork();
    if (pid == 0) {
      PyOS_AfterFork_Child();
      _exit(PyRun_SimpleString(code.c_str()) == 0 ? 0 : 1);
    }
    PyOS_AfterFork_Parent();
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("child torch.load failed");
      break;
    }
  }
}
BENCHMARK(BM_TorchLoadBareFork)->Unit(benchmark::kMillisecond)->UseRealTime();

// Arg: 0 = default (hot syscalls unrecorded), 1 = record every syscall.
void BM_TorchLoadSandboxed(benchmark::State& state) {
  const std::string code = LoadStatement();
  Policy policy;
  policy.seccomp.allow_hot_syscalls_unrecorded = state.range(0) == 0;
  uint64_t recorded = 0;
  uint64_t distinct = 0;
  double child_wall = 0;
  double child_cpu = 0;
  int64_t runs = 0;
  std::string names;
  for (auto _ : state) {
    PyOS_BeforeFork();
    absl::StatusOr<ChildResult> r =
        RunSandboxed(policy, [&code](ChildContext&) {
          PyOS_AfterFork_Child();
          return PyRun_SimpleString(code.c_str()) == 0 ? 0 : 1;
        });
    PyOS_AfterFork_Parent();
    if (!r.ok() || r->status != ChildStatus::kOk) {
      state.SkipWithError(r.ok() ? r->reason.c_str()
                                 : r.status().ToString().c_str());
      break;
    }
    recorded = 0;
    names.clear();
    for (const SyscallCount& c : r->syscalls) {
      recorded += c.count;
      names += c.name + "=" + std::to_string(c.count) + " ";
    }
    child_cpu += r->cpu_ms;
    distinct = r->syscalls.size();
    child_wall += r->wall_ms;
    ++runs;
  }
  state.counters["syscalls_recorded"] = static_cast<double>(recorded);
  state.counters["distinct_syscalls"] = static_cast<double>(distinct);
  state.counters["child_wall_ms"] = runs > 0 ? child_wall / runs : 0;
  state.counters["child_cpu_ms"] = runs > 0 ? child_cpu / runs : 0;
  state.SetLabel(names);
}
BENCHMARK(BM_TorchLoadSandboxed)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace dynahug::sandbox

int main(int argc, char** argv) {
  char dir_template[] = "/tmp/dynahug-torch-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return 2;
  dynahug::sandbox::g_model = std::string(dir_template) + "/small.pt";
  const std::string make =
      "/usr/bin/python3 -c \"import torch; torch.save(torch.nn.Linear(16, 4)"
      ".state_dict(), '" + dynahug::sandbox::g_model + "')\"";
  if (std::system(make.c_str()) != 0) {
    std::fprintf(stderr, "could not create %s\n",
                 dynahug::sandbox::g_model.c_str());
    return 2;
  }
  Py_Initialize();
  // Warm the interpreter: imports and one load, as the zygote would.
  if (PyRun_SimpleString(dynahug::sandbox::LoadStatement().c_str()) != 0) {
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  unlink(dynahug::sandbox::g_model.c_str());
  rmdir(dir_template);
  return 0;
}

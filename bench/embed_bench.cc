// Timings of the embedded interpreter, the loaders and the native inspector,
// moved out of the unit tests (which assert behaviour only). Prints one line
// per measurement; nothing here is a pass/fail check.
//
// Usage: embed_bench FIXTURE_DIR
//   FIXTURE_DIR holds the benign fixtures written by
//   /usr/bin/python3 tests/runtime/embed_fixtures.py FIXTURE_DIR
//
// Measures: interpreter initialisation, library imports and the zygote's
// fork floor; per-file in-process load latency; the opcode-heavy pickle with
// and without call recording; lazy vs materialised storages; fork + load +
// exit through the production event channel; the cost of NATIVE events and
// of one native-inspector observation.
#include <dlfcn.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hooks/audit_hook.h"
#include "hooks/event_sink.h"
#include "hooks/native_inspector.h"
#include "runtime/embed/interpreter.h"
#include "runtime/embed/loader.h"
#include "sandbox/event_channel.h"

namespace dynahug {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "embed_bench: %s\n", what.c_str());
  exit(1);
}

std::string g_dir;

runtime::LoadResult Load(runtime::Loader& loader, const std::string& file,
                         runtime::LoadOptions o, hooks::EventSink& sink) {
  absl::StatusOr<runtime::LoadResult> r =
      loader.Load(g_dir + "/" + file, o, sink);
  if (!r.ok()) Die(file + ": " + r.status().ToString());
  if (!r->loaded) Die(file + ": not loaded: " + r->error_message);
  return *r;
}

void InterpreterAndForkFloor(runtime::Interpreter& py) {
  printf("interpreter init: %.2f ms\n", py.init_ms());
  auto t0 = Clock::now();
  if (!py.Preimport({"torch"}).ok()) Die("import torch");
  double torch_ms = MsSince(t0);
  t0 = Clock::now();
  if (!py.Preimport(
             {"numpy", "joblib", "sklearn", "pickle", "sklearn.linear_model"})
           .ok()) {
    Die("pre-imports");
  }
  printf(
      "import torch: %.1f ms; numpy+joblib+sklearn(+linear_model): %.1f ms\n",
      torch_ms, MsSince(t0));
  constexpr int kForks = 30;
  double total = 0, worst = 0, in_fork = 0;
  for (int i = 0; i < kForks; ++i) {
    auto start = Clock::now();
    runtime::Interpreter::BeforeFork();
    pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      runtime::Interpreter::AfterForkChild();
      _exit(0);
    }
    in_fork += MsSince(start);
    runtime::Interpreter::AfterForkParent();
    int status = 0;
    waitpid(pid, &status, 0);
    double ms = MsSince(start);
    total += ms;
    worst = std::max(worst, ms);
  }
  printf(
      "fork+AfterForkChild+_exit+waitpid with torch imported: mean %.3f ms, "
      "max %.3f ms over %d (fork() itself, parent side: mean %.3f ms)\n",
      total / kForks, worst, kForks, in_fork / kForks);
}

const std::vector<std::pair<std::string, std::string>> kSmallFiles = {
    {"plain_p4.pkl", "pickle.load"}, {"state_dict.pt", "torch.load"},
    {"module.pt", "torch.load"},     {"legacy.pt", "torch.load"},
    {"model.joblib", "joblib.load"}, {"arr.npy", "numpy.load"}};

void SmallFileLatency(runtime::Loader& loader) {
  for (const auto& [file, name] : kSmallFiles) {
    runtime::LoadOptions o;
    o.loader = name;
    hooks::MemoryEventSink warm;
    Load(loader, file, o, warm);
    constexpr int kRuns = 20;
    double total = 0;
    size_t events = 0;
    for (int i = 0; i < kRuns; ++i) {
      hooks::MemoryEventSink sink;
      auto t0 = Clock::now();
      Load(loader, file, o, sink);
      total += MsSince(t0);
      events = sink.events().size();
    }
    printf("in process: %-14s %-12s mean %.2f ms/load (%zu events)\n",
           file.c_str(), name.c_str(), total / kRuns, events);
  }
}

void OpcodeHeavyAndLazy(runtime::Loader& loader) {
  for (bool record_calls : {true, false}) {
    hooks::MemoryEventSink sink;
    runtime::LoadOptions o;
    o.loader = "pickle.load";
    o.record_calls = record_calls;
    o.profile_calls = false;
    runtime::LoadResult r = Load(loader, "many_ops.pkl", o, sink);
    printf("many_ops.pkl (700k opcodes) record_calls=%d: %.1f ms, %zu events\n",
           record_calls, r.load_ms, sink.events().size());
  }
  runtime::LoadOptions lazy;
  lazy.loader = "torch.load";
  lazy.lazy_storage_bytes = 1 << 20;
  runtime::LoadOptions full = lazy;
  full.lazy_storage_bytes = -1;
  hooks::MemoryEventSink a, b;
  double lazy_ms = Load(loader, "big.pt", lazy, a).load_ms;
  double full_ms = Load(loader, "big.pt", full, b).load_ms;
  printf("big.pt (32 MiB tensor): lazy %.1f ms, materialised %.1f ms\n",
         lazy_ms, full_ms);
}

class WriterSink final : public hooks::EventSink {
 public:
  explicit WriterSink(sandbox::EventWriter& writer) : writer_(writer) {}
  void Emit(proto::Event event) override { writer_.Write(std::move(event)); }

 private:
  sandbox::EventWriter& writer_;
};

// The zygote shape without the sandbox: one forked child per file loads it
// and streams its events through the production channel.
void ForkedChildThroughChannel(runtime::Loader& loader) {
  for (bool zygote_baseline : {false, true}) {
    std::optional<hooks::IntegritySnapshot> baseline;
    if (zygote_baseline) {
      absl::StatusOr<hooks::IntegritySnapshot> s =
          hooks::IntegritySnapshot::Take();
      if (!s.ok()) Die("IntegritySnapshot::Take: " + s.status().ToString());
      baseline = std::move(*s);
    }
    for (const auto& [file, name] :
         std::vector<std::pair<std::string, std::string>>{
             {"state_dict.pt", "torch.load"},
             {"model.joblib", "joblib.load"},
             {"plain_p4.pkl", "pickle.load"}}) {
      runtime::LoadOptions o;
      o.loader = name;
      if (baseline.has_value()) o.integrity_baseline = &*baseline;
      constexpr int kRuns = 10;
      double total_ms = 0, child_cpu_ms = 0;
      long minflt = 0;
      size_t events = 0;
      for (int run = 0; run < kRuns; ++run) {
        sandbox::UniqueFd ends[2];
        if (!sandbox::MakeChannel(ends, 1 << 20).ok()) Die("MakeChannel");
        auto t0 = Clock::now();
        runtime::Interpreter::BeforeFork();
        pid_t pid = fork();
        if (pid < 0) Die("fork");
        if (pid == 0) {
          runtime::Interpreter::AfterForkChild();
          ends[0].reset();
          sandbox::EventWriter writer(std::move(ends[1]), {});
          WriterSink sink(writer);
          absl::StatusOr<runtime::LoadResult> r =
              loader.Load(g_dir + "/" + file, o, sink);
          writer.Close(absl::Seconds(30));
          _exit(r.ok() && r->loaded ? 0 : 1);
        }
        runtime::Interpreter::AfterForkParent();
        ends[1].reset();
        sandbox::EventReader reader({});
        for (;;) {
          pollfd pfd = {ends[0].get(), POLLIN, 0};
          poll(&pfd, 1, -1);
          absl::StatusOr<bool> eof = reader.ReadFrom(ends[0].get());
          if (!eof.ok()) Die(eof.status().ToString());
          if (*eof) break;
        }
        reader.Finish();
        int status = 0;
        struct rusage usage = {};
        wait4(pid, &status, 0, &usage);
        total_ms += MsSince(t0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          Die(file + ": child failed");
        }
        minflt += usage.ru_minflt;
        child_cpu_ms +=
            usage.ru_utime.tv_sec * 1e3 + usage.ru_utime.tv_usec / 1e3 +
            usage.ru_stime.tv_sec * 1e3 + usage.ru_stime.tv_usec / 1e3;
        events = reader.events().size();
      }
      printf(
          "forked child: %-14s %-12s mean %.2f ms per file "
          "(fork+load+exit+channel), child cpu %.2f ms, %ld minor faults, "
          "%zu events%s\n",
          file.c_str(), name.c_str(), total_ms / kRuns, child_cpu_ms / kRuns,
          minflt / kRuns, events,
          zygote_baseline ? " [zygote integrity baseline]" : "");
    }
  }
}

void NativeCosts(runtime::Interpreter& py) {
  constexpr int kCalls = 2000;
  const std::string code =
      "import ctypes\nlibc = ctypes.CDLL(None)\nf = libc.getpid\n"
      "for _ in range(" +
      std::to_string(kCalls) + "): f()\n";
  auto per_call_us = [&](bool native, int max_frames) {
    hooks::AuditLimits limits;
    limits.native.enabled = native;
    limits.native.max_events = kCalls * 2;
    limits.native.max_frames = max_frames;
    hooks::MemoryEventSink sink;
    hooks::AuditHook& hook = hooks::AuditHook::Instance();
    hooks::PathContext ctx;
    ctx.scratch_dir = "/tmp/dh-native-scratch";
    hook.Start(&sink, ctx, limits);
    hook.SetRecording(true);
    auto t0 = Clock::now();
    absl::Status s = py.Exec(code);
    double us = MsSince(t0) * 1000 / kCalls;
    hook.SetRecording(false);
    hook.Stop();
    if (!s.ok()) Die(s.ToString());
    return us;
  };
  per_call_us(true, 32);  // warm the symbol cache
  double off = per_call_us(false, 32);
  double on = per_call_us(true, 32);
  double shallow = per_call_us(true, 8);
  printf(
      "per ctypes call, recording: AUDIT only %.2f us, +NATIVE (32 frames) "
      "%.2f us, +NATIVE (8 frames) %.2f us\n",
      off, on, shallow);

  void* fn = dlsym(RTLD_DEFAULT, "getpid");
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, page, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Die("mmap");
  constexpr int kRounds = 200;
  auto per = [](auto f) {
    auto t0 = Clock::now();
    for (int i = 0; i < kRounds; ++i) f();
    return MsSince(t0) * 1000 / kRounds;
  };
  double classify = per(
      [&] { (void)hooks::ClassifyAddress(reinterpret_cast<uint64_t>(fn)); });
  double disasm = per([&] {
    (void)hooks::DisassembleAt(reinterpret_cast<uint64_t>(p), 64, 16);
  });
  double stack = per([] { (void)hooks::CaptureNativeStack(32); });
  printf(
      "per call: ClassifyAddress(libc) %.1f us, DisassembleAt %.1f us, "
      "CaptureNativeStack(32) %.1f us\n",
      classify, disasm, stack);
  munmap(p, page);
}

}  // namespace
}  // namespace dynahug

int main(int argc, char** argv) {
  using namespace dynahug;
  if (argc != 2) {
    fprintf(stderr,
            "usage: %s FIXTURE_DIR (from /usr/bin/python3 "
            "tests/runtime/embed_fixtures.py FIXTURE_DIR)\n",
            argv[0]);
    return 2;
  }
  g_dir = argv[1];
  absl::StatusOr<runtime::Interpreter> py = runtime::Interpreter::Create();
  if (!py.ok()) Die("Interpreter::Create: " + py.status().ToString());
  absl::StatusOr<runtime::Loader> loader = runtime::Loader::Create(*py);
  if (!loader.ok()) Die("Loader::Create: " + loader.status().ToString());
  InterpreterAndForkFloor(*py);
  SmallFileLatency(*loader);
  OpcodeHeavyAndLazy(*loader);
  ForkedChildThroughChannel(*loader);
  NativeCosts(*py);
  return 0;
}

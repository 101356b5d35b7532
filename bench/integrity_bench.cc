// Cost of the post-load integrity diff with and without the library class
// and function watch (hooks/integrity_diff.h), side by side in one process:
// the zygote imports the preimport allowlist, takes both snapshots once, then
// forks children that each run one DiffAndEmit (as a sandboxed child does
// after its load) and report its wall time. Prints one line per variant.
//
// Usage: integrity_bench [CHILDREN]   (default 50 children per variant)
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "hooks/event_sink.h"
#include "hooks/integrity_diff.h"
#include "runtime/embed/interpreter.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "integrity_bench: %s\n", what.c_str());
  std::exit(1);
}

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Wall time of DiffAndEmit in one forked child, milliseconds.
double DiffInChild(const dynahug::hooks::IntegritySnapshot& snap) {
  int fds[2];
  if (pipe(fds) != 0) Die("pipe");
  dynahug::runtime::Interpreter::BeforeFork();
  const pid_t pid = fork();
  if (pid == 0) {
    dynahug::runtime::Interpreter::AfterForkChild();
    dynahug::hooks::MemoryEventSink sink;
    const auto t0 = Clock::now();
    absl::StatusOr<size_t> n = snap.DiffAndEmit(sink);
    const double ms = Ms(Clock::now() - t0);
    double out = n.ok() && *n == 0 ? ms : -1;
    if (write(fds[1], &out, sizeof(out)) != sizeof(out)) _exit(2);
    _exit(0);
  }
  dynahug::runtime::Interpreter::AfterForkParent();
  close(fds[1]);
  double ms = -1;
  if (read(fds[0], &ms, sizeof(ms)) != sizeof(ms)) Die("read");
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (ms < 0) Die("the diff failed or found something in a clean child");
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const int children = argc > 1 ? std::atoi(argv[1]) : 50;
  absl::StatusOr<dynahug::runtime::Interpreter> py =
      dynahug::runtime::Interpreter::Create();
  if (!py.ok()) Die(py.status().ToString());
  dynahug::hooks::IntegrityOptions with_libraries;
  if (!py->Preimport(with_libraries.library_packages).ok()) Die("preimport");
  dynahug::hooks::IntegrityOptions modules_only;
  modules_only.library_packages.clear();
  struct Variant {
    const char* name;
    dynahug::hooks::IntegrityOptions options;
  } variants[] = {{"module attributes only (before)", modules_only},
                  {"+ library classes and functions", with_libraries}};
  std::vector<dynahug::hooks::IntegritySnapshot> snaps;
  for (const Variant& v : variants) {
    const auto t0 = Clock::now();
    absl::StatusOr<dynahug::hooks::IntegritySnapshot> s =
        dynahug::hooks::IntegritySnapshot::Take(v.options);
    if (!s.ok()) Die(s.status().ToString());
    std::printf("%-34s Take (zygote, once) %7.2f ms: %zu classes, %zu "
                "functions\n",
                v.name, Ms(Clock::now() - t0), s->library_classes(),
                s->library_functions());
    snaps.push_back(std::move(*s));
  }
  // Interleaved, so that both variants see the same machine load.
  std::vector<std::vector<double>> times(snaps.size());
  for (int i = 0; i < children; ++i) {
    for (size_t v = 0; v < snaps.size(); ++v) {
      times[v].push_back(DiffInChild(snaps[v]));
    }
  }
  for (size_t v = 0; v < snaps.size(); ++v) {
    std::vector<double>& t = times[v];
    std::sort(t.begin(), t.end());
    std::printf("%-34s DiffAndEmit per child: p50 %.3f ms, p90 %.3f ms "
                "(%d children)\n",
                variants[v].name, t[t.size() / 2], t[t.size() * 9 / 10],
                children);
  }
  return 0;
}

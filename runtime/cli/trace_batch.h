// Tracing many files for a front end: worker zygotes (runtime/trace/
// trace_worker.h), results in input order, and a clean stop on SIGINT,
// SIGTERM or SIGHUP (every worker and sandboxed load killed and reaped).
// `scan`, `train` and `eval` share it.
//
//   BatchOptions options;                 // limits, loader, --jobs
//   absl::StatusOr<BatchOutcome> run = TraceBatch(paths, options,
//       [&](size_t i, absl::StatusOr<proto::Trace> t) { use(paths[i], t); });
//   if (run.ok() && run->interrupted_by) return 128 + run->interrupted_by;
//
// Preconditions: as WorkerPool (single-threaded caller that does not reap
// children it did not create).
#ifndef DYNAHUG_RUNTIME_CLI_TRACE_BATCH_H_
#define DYNAHUG_RUNTIME_CLI_TRACE_BATCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "proto/dynahug.pb.h"
#include "runtime/trace/trace_runner.h"
#include "runtime/trace/trace_worker.h"

namespace dynahug::runtime {

struct BatchOptions {
  TraceOptions trace;
  // Prewarmed by default (TraceWorkerOptions::prewarm): every allowlisted ML
  // library is imported in each zygote before its first file, so a file's
  // trace does not depend on which files its worker traced before (without
  // it, a library imported for an earlier file shows no import events for a
  // later one), and trace, scan, train and eval see the same conditions.
  TraceWorkerOptions worker;
  // Worker zygotes (capped at the number of files).
  uint64_t jobs = 1;
  // Per path (empty, or one entry per path): the name to load that file
  // under instead of trace.as_name ("" = trace.as_name); see TraceRequest.
  std::vector<std::string> as_names;
  // Called once the workers are up, before the first file is handed out
  // (e.g. to open an output document); not when they could not start.
  std::function<void()> on_started;
};

struct BatchOutcome {
  // The stop signal that ended the run early (0: it ran to the end).
  int interrupted_by = 0;
  // Files reported before the run ended.
  size_t reported = 0;
};

// Traces every path; `on_result(index, trace)` is called once per path in
// input order (an error names the file). Errors: the pool could not start
// or failed as a whole (the message says why).
absl::StatusOr<BatchOutcome> TraceBatch(
    const std::vector<std::string>& paths, const BatchOptions& options,
    absl::FunctionRef<void(size_t, absl::StatusOr<proto::Trace>)> on_result);

// Upper bound for --jobs (each worker is a zygote with its own interpreter).
inline constexpr uint64_t kMaxJobs = 64;

// Default --jobs of scan, train and eval: the online CPUs, 1..8.
uint64_t CpuJobs();

enum class FlagResult { kNotMine, kTaken, kError };

// The options every tracing command shares: `--jobs N`/`-j N` (1..kMaxJobs),
// `--timeout SECONDS` (also the CPU limit) and `--memory MIB` (both
// 1..2^20), and `--full-hash` (also hash the whole file into
// FileIdentity.sha256 when tensor storages are skipped: one read of every
// byte). When args[i] is one of them, consumes its value (advancing `i`)
// into `jobs`/`trace` and returns kTaken, or prints why the value is bad
// ("dynahug <command>: ...", plus `usage` for a missing value) and returns
// kError; kNotMine otherwise.
FlagResult ParseBatchFlag(const char* command,
                          const std::vector<std::string>& args, size_t& i,
                          uint64_t& jobs, TraceOptions& trace,
                          std::string_view usage, std::ostream& err);

// The load-choice options of trace and scan: `--loader auto|<loader of the
// table>` (that loader alone, on the file itself) and `--as NAME` (load as
// if named NAME: its extension picks the extension loader;
// runtime/trace/trace_runner.h FileLoaders). Same contract as
// ParseBatchFlag; an unknown loader name is an error listing the valid ones.
FlagResult ParseLoaderFlag(const char* command,
                           const std::vector<std::string>& args, size_t& i,
                           TraceOptions& trace, std::string_view usage,
                           std::ostream& err);

// "auto|torch.load|joblib.load|numpy.load|pickle.load" (from the table).
std::string LoaderChoices();

// "SIGINT"-style name of a signal number.
std::string SignalName(int sig);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_TRACE_BATCH_H_

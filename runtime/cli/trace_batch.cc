#include "runtime/cli/trace_batch.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <ostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/cli/flags.h"
#include "runtime/embed/loader_table.h"
#include "sandbox/unique_fd.h"

namespace dynahug::runtime {
namespace {

// Signals that stop a run cleanly: the workers and their sandboxed children
// are killed and reaped before the command exits with 128 + signal.
constexpr int kStopSignals[] = {SIGHUP, SIGINT, SIGTERM};

// While alive, kStopSignals are blocked in the calling thread and arrive on
// a signalfd instead (the worker pool polls it: sandbox::WorkerPoolOptions::
// interrupt_fd); the destructor restores the previous mask. Blocking happens
// before any worker is forked, so a signal that arrives at any point of the
// run is seen (a pending one makes the fd readable at once). The calling
// process must be single-threaded (other threads would still take the
// signals with their default action).
class StopSignals {
 public:
  // Errors: sigprocmask or signalfd failed (errno text).
  static absl::StatusOr<std::unique_ptr<StopSignals>> Block() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : kStopSignals) sigaddset(&set, sig);
    sigset_t old;
    if (sigprocmask(SIG_BLOCK, &set, &old) != 0) {
      return absl::InternalError(
          absl::StrCat("sigprocmask(SIG_BLOCK) failed: ", strerror(errno)));
    }
    sandbox::UniqueFd fd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd.valid()) {
      const int err = errno;
      sigprocmask(SIG_SETMASK, &old, nullptr);
      return absl::InternalError(
          absl::StrCat("signalfd failed: ", strerror(err)));
    }
    return std::unique_ptr<StopSignals>(new StopSignals(std::move(fd), old));
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  ~StopSignals() {
    // Pending stop signals were handled by stopping: a second Ctrl-C must
    // not kill the process when the mask is restored.
    while (Take().has_value()) {
    }
    sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
  }

  int fd() const { return fd_.get(); }
  // Takes one pending stop signal off the fd: its number, or nullopt.
  std::optional<int> Take() {
    signalfd_siginfo info;
    if (read(fd_.get(), &info, sizeof(info)) != sizeof(info)) {
      return std::nullopt;
    }
    return static_cast<int>(info.ssi_signo);
  }

 private:
  StopSignals(sandbox::UniqueFd fd, const sigset_t& old_mask)
      : fd_(std::move(fd)), old_mask_(old_mask) {}
  sandbox::UniqueFd fd_;
  sigset_t old_mask_;
};

}  // namespace

uint64_t CpuJobs() {
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<uint64_t>(std::clamp<long>(cpus, 1, 8));
}

FlagResult ParseBatchFlag(const char* command,
                          const std::vector<std::string>& args, size_t& i,
                          uint64_t& jobs, TraceOptions& trace,
                          std::string_view usage, std::ostream& err) {
  const std::string& arg = args[i];
  if (arg == "--full-hash") {
    trace.analyze.full_sha256 = true;
    return FlagResult::kTaken;
  }
  const bool is_jobs = arg == "--jobs" || arg == "-j";
  if (!is_jobs && arg != "--timeout" && arg != "--memory") {
    return FlagResult::kNotMine;
  }
  if (i + 1 >= args.size()) {
    err << "dynahug " << command << ": " << arg << " needs a value\n"
        << usage;
    return FlagResult::kError;
  }
  const std::string& v = args[++i];
  uint64_t n = 0;
  if (is_jobs) {
    if (!ParseUint(v, n) || n == 0 || n > kMaxJobs) {
      err << "dynahug " << command << ": " << arg << " needs an integer in 1.."
          << kMaxJobs << ", got '" << v << "'\n";
      return FlagResult::kError;
    }
    jobs = n;
    return FlagResult::kTaken;
  }
  if (!ParseUint(v, n) || n == 0 || n > (uint64_t{1} << 20)) {
    err << "dynahug " << command << ": " << arg
        << " needs a positive integer, got '" << v << "'\n";
    return FlagResult::kError;
  }
  if (arg == "--timeout") {
    trace.policy.limits.wall_time = absl::Seconds(static_cast<int64_t>(n));
    trace.policy.limits.cpu_seconds = n;
  } else {
    trace.policy.limits.memory_bytes = n << 20;
  }
  return FlagResult::kTaken;
}

std::string LoaderChoices() {
  std::string out = "auto";
  for (const LoaderSpec& spec : Loaders()) {
    absl::StrAppend(&out, "|", std::string(spec.name));
  }
  return out;
}

FlagResult ParseLoaderFlag(const char* command,
                           const std::vector<std::string>& args, size_t& i,
                           TraceOptions& trace, std::string_view usage,
                           std::ostream& err) {
  const std::string& arg = args[i];
  if (arg != "--loader" && arg != "--as") return FlagResult::kNotMine;
  if (i + 1 >= args.size()) {
    err << "dynahug " << command << ": " << arg << " needs a value\n"
        << usage;
    return FlagResult::kError;
  }
  const std::string& v = args[++i];
  if (arg == "--as") {
    if (v.empty()) {
      err << "dynahug " << command << ": --as needs a file name or extension\n";
      return FlagResult::kError;
    }
    trace.as_name = v;
    return FlagResult::kTaken;
  }
  if (v != "auto" && FindLoader(v) == nullptr) {
    err << "dynahug " << command << ": unknown loader '" << v
        << "' (one of " << LoaderChoices() << ")\n"
        << usage;
    return FlagResult::kError;
  }
  trace.load.loader = v;
  return FlagResult::kTaken;
}

std::string SignalName(int sig) {
  const char* name = sigabbrev_np(sig);
  return name != nullptr ? absl::StrCat("SIG", name) : absl::StrCat("signal ", sig);
}

absl::StatusOr<BatchOutcome> TraceBatch(
    const std::vector<std::string>& paths, const BatchOptions& options,
    absl::FunctionRef<void(size_t, absl::StatusOr<proto::Trace>)> on_result) {
  BatchOutcome outcome;
  if (paths.empty()) return outcome;
  absl::StatusOr<std::unique_ptr<StopSignals>> stop = StopSignals::Block();
  if (!stop.ok()) return stop.status();

  std::vector<sandbox::WorkerJob> jobs;
  jobs.reserve(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    jobs.push_back({TraceRequest(paths[i], i < options.as_names.size()
                                               ? options.as_names[i]
                                               : std::string()),
                    {}});
  }
  sandbox::WorkerPoolOptions pool_options;
  pool_options.workers = static_cast<int>(
      std::max<uint64_t>(1, std::min<uint64_t>(options.jobs, paths.size())));
  // The sandbox bounds each load; this only catches a stuck worker.
  pool_options.job_timeout =
      2 * options.trace.policy.limits.wall_time + absl::Seconds(60);
  pool_options.interrupt_fd = (*stop)->fd();
  absl::StatusOr<std::unique_ptr<sandbox::WorkerPool>> pool =
      sandbox::WorkerPool::Create(
          TraceWorkerFactory(options.trace, {}, options.worker), pool_options);
  if (!pool.ok()) return pool.status();
  if (options.on_started) options.on_started();

  absl::Status run = (*pool)->Run(
      jobs, [&](size_t index, absl::StatusOr<std::string> reply) {
        ++outcome.reported;
        if (!reply.ok()) {
          // Worker deaths name the worker, not the file.
          const std::string message(reply.status().message());
          on_result(index,
                    absl::Status(reply.status().code(),
                                 message.rfind("worker ", 0) == 0
                                     ? paths[index] + ": " + message
                                     : message));
          return;
        }
        proto::Trace trace;
        if (!trace.ParseFromString(*reply)) {
          on_result(index, absl::InternalError(
                               paths[index] + ": unparseable trace from the worker"));
          return;
        }
        on_result(index, std::move(trace));
      });
  if (absl::IsCancelled(run)) {
    // Every worker, and with it every sandboxed load, is already dead.
    outcome.interrupted_by = (*stop)->Take().value_or(SIGTERM);
    return outcome;
  }
  if (!run.ok()) return run;
  return outcome;
}

}  // namespace dynahug::runtime

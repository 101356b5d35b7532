// WorkerPool: N long-lived worker processes, each its own zygote, that serve
// requests in parallel and return their answers to the parent in input
// order. It knows nothing of what the requests mean (tracing:
// runtime/trace/trace_worker.h).
//
// The pool forks its workers from the calling process; each worker builds
// its own state through the factory, in the worker, right after the fork
// (for tracing: a TraceRunner with its own embedded interpreter, which must
// therefore not exist in the calling process). A worker that dies (crash,
// SIGKILL, OOM) or overruns WorkerPoolOptions::job_timeout is reaped, its
// current request gets an error naming the worker and how it ended, and a fresh
// worker replaces it. Every request is attempted at most once.
//
// Wire: a SOCK_STREAM socketpair (O_CLOEXEC) per worker; each message is a
// 4-byte little-endian length and the payload. Requests are opaque bytes;
// a reply is one tag byte (OK / error), then the reply bytes, or for an
// error a 4-byte absl::StatusCode and the message. One request is in flight
// per worker.
//
// Scheduling: each request may name what it needs (WorkerJob::needs, e.g.
// the Python packages its load imports). A free worker takes the first
// pending request, among the next `lookahead` not yet reported, whose needs
// are all among what it has served before (its zygote has those libraries
// imported: nothing new is imported and the fork costs what it already
// costs); otherwise the first pending request. So torch files gather on the
// workers that imported torch and files that need only numpy or pickle stay
// on small zygotes, whose forks are cheaper.
//
// Processes: workers get PR_SET_PDEATHSIG(SIGKILL) (they die with the
// parent, also when it is SIGKILLed; a parent that died before the prctl is
// caught by checking getppid() after it), an empty signal mask (a caller
// that blocks signals to read them from a signalfd does not pass that on),
// stdin and stdout on /dev/null (stderr is kept for diagnostics), every
// other inherited descriptor closed, and leave with _exit() (no atexit
// handlers, no stdio flush of the parent's buffers). The destructor closes
// the sockets (workers exit on EOF), waits up to
// WorkerPoolOptions::shutdown_grace, then SIGKILLs and reaps: no zombies.
//
// Interruption: with WorkerPoolOptions::interrupt_fd, Run() stops as soon as
// that descriptor is readable (e.g. a signalfd for SIGINT/SIGTERM): it hands
// out nothing more, SIGKILLs every worker at once (what a worker started,
// e.g. a sandboxed child with its own PR_SET_PDEATHSIG, dies with it), reaps
// them and returns Cancelled.
//
// Preconditions: Linux >= 5.3 (pidfd_open). The calling process is
// single-threaded while Create() and Run() fork (fork copies only the
// calling thread), and does not reap children it did not create
// (no waitpid(-1), SIGCHLD not ignored).
//
// Thread safety: none; one thread uses a pool at a time.
#ifndef DYNAHUG_SANDBOX_WORKER_POOL_H_
#define DYNAHUG_SANDBOX_WORKER_POOL_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sandbox/unique_fd.h"

namespace dynahug::sandbox {

// Serves requests inside one worker process.
class WorkerHandler {
 public:
  virtual ~WorkerHandler() = default;
  // Answers one request. An error status is sent back as the request's
  // error; it does not end the worker.
  virtual absl::StatusOr<std::string> Handle(std::string_view request) = 0;
};

// Runs in each freshly forked worker (also in replacements), once, before
// its first request. `worker_index` is the slot (0..workers-1). An error
// does not kill the worker: every request it gets is answered with it.
using WorkerFactory =
    std::function<absl::StatusOr<std::unique_ptr<WorkerHandler>>(
        int worker_index)>;

struct WorkerPoolOptions {
  // Number of worker processes, >= 1.
  int workers = 2;
  // A request running longer than this gets its worker SIGKILLed (and
  // replaced) and an DeadlineExceeded error.
  absl::Duration job_timeout = absl::InfiniteDuration();
  // How far past the oldest unfinished request a worker may look for one
  // matching its affinity (also bounds how many finished replies wait for an
  // earlier one).
  size_t lookahead = 64;
  // Replies larger than this are a protocol error (the worker is killed).
  uint32_t max_reply_bytes = 1u << 30;
  // How long the destructor waits for workers to exit after EOF.
  absl::Duration shutdown_grace = absl::Seconds(2);
  // A descriptor that becomes readable when Run() must stop (see the file
  // comment), or -1. The pool polls it and never reads or closes it; it must
  // stay open while the pool runs.
  int interrupt_fd = -1;
};

struct WorkerJob {
  std::string request;
  // Scheduling hint (see the file comment); empty matches every worker.
  std::vector<std::string> needs;
};

struct WorkerPoolStats {
  uint64_t jobs = 0;
  // Workers that died or were killed and were replaced.
  uint64_t restarts = 0;
  // Jobs started on a worker that had already served all their needs.
  uint64_t affinity_hits = 0;
  // Per slot: jobs served.
  std::vector<uint64_t> jobs_per_worker;
  // Per job of the last Run(): milliseconds from handing it to a worker to
  // its reply (or its failure).
  std::vector<double> job_wall_ms;
};

class WorkerPool {
 public:
  // Forks options.workers workers; each runs `factory` then serves requests
  // until its socket closes. Errors: InvalidArgument for a bad option,
  // Internal when socketpair/fork/pidfd_open fails (with errno text).
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(
      WorkerFactory factory, const WorkerPoolOptions& options = {});

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool();

  // Runs every job and calls `on_result(index, reply)` once per job, in
  // index order, as soon as it and all earlier jobs are done. Per-job
  // failures (handler errors, a worker that died or timed out) are results.
  // Returns an error only when the pool itself broke (a replacement worker
  // could not be forked, or kept dying before its first request), or
  // Cancelled when options.interrupt_fd became readable (checked before
  // anything is forked or handed out, then on every wake-up): jobs not yet
  // reported are then dropped, and the next Run() starts by replacing the
  // workers that were left busy or dead (after an interruption: all of
  // them).
  absl::Status Run(
      std::span<const WorkerJob> jobs,
      absl::FunctionRef<void(size_t, absl::StatusOr<std::string>)> on_result);

  const WorkerPoolStats& stats() const { return stats_; }
  // Current worker pids (for tests).
  std::vector<pid_t> worker_pids() const;

 private:
  struct Worker {
    pid_t pid = -1;
    UniqueFd socket;
    UniqueFd pidfd;
    std::set<std::string> served;
    // In flight: job index, or -1.
    int64_t job = -1;
    absl::Time started;
    std::string inbox;  // bytes of the reply being read
  };

  WorkerPool(WorkerFactory factory, const WorkerPoolOptions& options)
      : factory_(std::move(factory)), options_(options) {}

  absl::Status Spawn(Worker& worker, int index);
  // Reaps the worker, SIGKILLing it first if it is still alive (at once
  // with `kill_now`, else after a short grace for one that is exiting);
  // returns how it ended ("exit 3", "signal 9 (Killed)").
  std::string Reap(Worker& worker, bool kill_now);
  // True when options_.interrupt_fd is readable (no wait).
  bool Interrupted() const;
  // SIGKILLs every worker, then reaps them all.
  void KillAll();
  void ShutDown();

  WorkerFactory factory_;
  WorkerPoolOptions options_;
  std::vector<Worker> workers_;
  WorkerPoolStats stats_;
};

}  // namespace dynahug::sandbox

#endif  // DYNAHUG_SANDBOX_WORKER_POOL_H_

#include "sandbox/worker_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"

namespace dynahug::sandbox {
namespace {

constexpr uint8_t kReplyOk = 0;
constexpr uint8_t kReplyError = 1;
// The worker's end of its socket, after the fork.
constexpr int kWorkerFd = 3;
// Requests are paths or small blobs; anything bigger is a broken parent.
constexpr uint32_t kMaxRequestBytes = 64u << 20;

std::string ErrnoText(int err) { return std::strerror(err); }

// Blocking, EINTR-safe, SIGPIPE-free write of the whole buffer.
bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Blocking read of exactly `size` bytes; false on EOF or error.
bool RecvAll(int fd, char* out, size_t size) {
  while (size > 0) {
    const ssize_t n = recv(fd, out, size, 0);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  }
  return v;
}

std::string Frame(std::string_view payload) {
  std::string frame;
  frame.reserve(4 + payload.size());
  PutU32(frame, static_cast<uint32_t>(payload.size()));
  frame.append(payload);
  return frame;
}

// Serves requests on kWorkerFd until EOF. Never returns.
[[noreturn]] void WorkerMain(int index, const WorkerFactory& factory) {
  absl::StatusOr<std::unique_ptr<WorkerHandler>> handler =
      absl::InternalError("worker factory threw");
  try {
    handler = factory(index);
  } catch (...) {
  }
  std::string request;
  for (;;) {
    char header[4];
    if (!RecvAll(kWorkerFd, header, sizeof(header))) _exit(0);
    const uint32_t size = GetU32(header);
    if (size > kMaxRequestBytes) _exit(4);
    request.resize(size);
    if (!RecvAll(kWorkerFd, request.data(), size)) _exit(0);
    absl::StatusOr<std::string> reply = absl::UnknownError("no reply");
    if (!handler.ok()) {
      reply = handler.status();
    } else {
      try {
        reply = (*handler)->Handle(request);
      } catch (const std::exception& e) {
        reply = absl::InternalError(
            absl::StrCat("worker handler threw: ", e.what()));
      } catch (...) {
        reply = absl::InternalError("worker handler threw");
      }
    }
    std::string payload;
    if (reply.ok()) {
      payload.reserve(1 + reply->size());
      payload.push_back(static_cast<char>(kReplyOk));
      payload.append(*reply);
    } else {
      payload.push_back(static_cast<char>(kReplyError));
      PutU32(payload, static_cast<uint32_t>(reply.status().code()));
      payload.append(std::string(reply.status().message()));
    }
    if (!SendAll(kWorkerFd, Frame(payload))) _exit(0);
  }
}

// In the freshly forked worker: descriptors and process attributes, then
// WorkerMain. Only async-signal-safe calls before WorkerMain (the parent is
// single-threaded by contract, but be strict anyway).
[[noreturn]] void StartWorker(int socket_fd, pid_t parent, int index,
                              const WorkerFactory& factory) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(5);
  if (getppid() != parent) _exit(0);  // the parent died before prctl
  // The caller may block signals to read them from a signalfd; the worker
  // (and whatever it forks) must react to them normally.
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) _exit(5);
  if (socket_fd != kWorkerFd) {
    if (dup3(socket_fd, kWorkerFd, O_CLOEXEC) < 0) _exit(5);
  }
  if (syscall(SYS_close_range, kWorkerFd + 1, ~0U, 0) != 0) {
    for (int fd = kWorkerFd + 1; fd < 1024; ++fd) close(fd);
  }
  const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) _exit(5);
  dup2(null_fd, STDIN_FILENO);
  dup2(null_fd, STDOUT_FILENO);
  close(null_fd);
  signal(SIGPIPE, SIG_IGN);
  WorkerMain(index, factory);
}

std::string DescribeWait(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigdescr_np(sig);
    return absl::StrCat("signal ", sig, " (", name ? name : "?", ")");
  }
  return absl::StrCat("wait status ", status);
}

bool WaitReadable(int fd, absl::Duration timeout) {
  pollfd p{fd, POLLIN, 0};
  const int ms = static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(timeout), 0, 1 << 30));
  for (;;) {
    const int r = poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

bool Covers(const std::set<std::string>& served,
            const std::vector<std::string>& needs) {
  for (const std::string& n : needs) {
    if (!served.count(n)) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(
    WorkerFactory factory, const WorkerPoolOptions& options) {
  if (options.workers < 1 || options.workers > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker pool: workers must be in 1..1024, got ", options.workers));
  }
  if (!factory) {
    return absl::InvalidArgumentError("worker pool: no worker factory");
  }
  if (options.lookahead < 1) {
    return absl::InvalidArgumentError("worker pool: lookahead must be >= 1");
  }
  std::unique_ptr<WorkerPool> pool(new WorkerPool(std::move(factory), options));
  pool->workers_.resize(static_cast<size_t>(options.workers));
  pool->stats_.jobs_per_worker.assign(pool->workers_.size(), 0);
  for (size_t i = 0; i < pool->workers_.size(); ++i) {
    absl::Status status = pool->Spawn(pool->workers_[i], static_cast<int>(i));
    if (!status.ok()) return status;  // the destructor reaps the others
  }
  return pool;
}

WorkerPool::~WorkerPool() { ShutDown(); }

absl::Status WorkerPool::Spawn(Worker& worker, int index) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::InternalError(
        absl::StrCat("worker pool: socketpair failed: ", ErrnoText(errno)));
  }
  UniqueFd parent_end(sv[0]);
  UniqueFd worker_end(sv[1]);
  std::fflush(nullptr);  // no buffered output is duplicated into the worker
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(
        absl::StrCat("worker pool: fork failed: ", ErrnoText(errno)));
  }
  if (pid == 0) StartWorker(worker_end.get(), parent, index, factory_);
  worker_end.reset();
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int err = errno;
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return absl::InternalError(
        absl::StrCat("worker pool: pidfd_open failed: ", ErrnoText(err)));
  }
  worker.pid = pid;
  worker.socket = std::move(parent_end);
  worker.pidfd = UniqueFd(pidfd);
  worker.served.clear();
  worker.job = -1;
  worker.inbox.clear();
  return absl::OkStatus();
}

std::string WorkerPool::Reap(Worker& worker, bool kill_now) {
  if (worker.pid <= 0) return "not running";
  // A worker that closed its socket is usually already exiting: give it a
  // moment so that its own exit status is reported, then kill it.
  if (worker.pidfd.valid() &&
      !WaitReadable(worker.pidfd.get(), kill_now ? absl::ZeroDuration()
                                                 : absl::Milliseconds(500))) {
    syscall(SYS_pidfd_send_signal, worker.pidfd.get(), SIGKILL, nullptr, 0);
  } else if (!worker.pidfd.valid()) {
    kill(worker.pid, SIGKILL);
  }
  int status = 0;
  pid_t r;
  while ((r = waitpid(worker.pid, &status, 0)) < 0 && errno == EINTR) {
  }
  worker.pid = -1;
  worker.socket.reset();
  worker.pidfd.reset();
  worker.job = -1;
  worker.inbox.clear();
  return r < 0 ? absl::StrCat("waitpid failed: ", ErrnoText(errno))
               : DescribeWait(status);
}

bool WorkerPool::Interrupted() const {
  return options_.interrupt_fd >= 0 &&
         WaitReadable(options_.interrupt_fd, absl::ZeroDuration());
}

void WorkerPool::KillAll() {
  // Signal all first so that they die in parallel, then reap.
  for (Worker& w : workers_) {
    if (w.pid <= 0) continue;
    if (!w.pidfd.valid() || syscall(SYS_pidfd_send_signal, w.pidfd.get(),
                                    SIGKILL, nullptr, 0) != 0) {
      kill(w.pid, SIGKILL);
    }
  }
  for (Worker& w : workers_) {
    if (w.pid > 0) (void)Reap(w, /*kill_now=*/true);
  }
}

void WorkerPool::ShutDown() {
  for (Worker& w : workers_) w.socket.reset();  // EOF: workers exit
  const absl::Time deadline = absl::Now() + options_.shutdown_grace;
  for (Worker& w : workers_) {
    if (w.pid <= 0) continue;
    if (!w.pidfd.valid() ||
        !WaitReadable(w.pidfd.get(),
                      std::max(absl::ZeroDuration(), deadline - absl::Now()))) {
      if (w.pidfd.valid()) {
        syscall(SYS_pidfd_send_signal, w.pidfd.get(), SIGKILL, nullptr, 0);
      } else {
        kill(w.pid, SIGKILL);
      }
    }
    int status = 0;
    while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
    w.pid = -1;
    w.pidfd.reset();
  }
}

std::vector<pid_t> WorkerPool::worker_pids() const {
  std::vector<pid_t> pids;
  for (const Worker& w : workers_) pids.push_back(w.pid);
  return pids;
}

absl::Status WorkerPool::Run(
    std::span<const WorkerJob> jobs,
    absl::FunctionRef<void(size_t, absl::StatusOr<std::string>)> on_result) {
  const size_t n = jobs.size();
  std::vector<std::optional<absl::StatusOr<std::string>>> results(n);
  std::vector<bool> started(n, false);
  stats_.job_wall_ms.assign(n, 0);
  size_t next_emit = 0;
  size_t first_unstarted = 0;
  // Workers found dead before they got a request, in a row (a worker that
  // cannot even start must not make this loop fork forever).
  int idle_deaths = 0;

  // Stops everything: no worker outlives an interruption.
  auto cancel = [&]() -> absl::Status {
    KillAll();
    return absl::CancelledError(
        absl::StrCat("worker pool: interrupted; every worker was killed, ",
                     next_emit, " of ", n, " jobs reported"));
  };
  // Forks a worker into `slot` unless the run was interrupted.
  auto spawn = [&](size_t slot) -> absl::Status {
    if (Interrupted()) return cancel();
    return Spawn(workers_[slot], static_cast<int>(slot));
  };
  if (Interrupted()) return cancel();

  // A previous Run() that failed may have left a worker busy or dead, and
  // an idle worker may have died since: start from fresh workers there.
  for (size_t slot = 0; slot < workers_.size(); ++slot) {
    Worker& w = workers_[slot];
    if (w.pid > 0 && w.job < 0 && w.pidfd.valid() &&
        !WaitReadable(w.pidfd.get(), absl::ZeroDuration())) {
      continue;  // idle and alive
    }
    if (w.pid > 0) (void)Reap(w, /*kill_now=*/true);
    if (absl::Status s = spawn(slot); !s.ok()) return s;
    ++stats_.restarts;
  }

  auto finish = [&](Worker& w, absl::StatusOr<std::string> result) {
    const size_t job = static_cast<size_t>(w.job);
    stats_.job_wall_ms[job] =
        absl::ToDoubleMilliseconds(absl::Now() - w.started);
    results[job] = std::move(result);
    w.job = -1;
    w.inbox.clear();
  };
  // The worker died or misbehaved: its job fails, a new worker takes the
  // slot.
  auto replace = [&](size_t slot, const std::string& what,
                     bool kill_now) -> absl::Status {
    Worker& w = workers_[slot];
    const int64_t job = w.job;
    const pid_t pid = w.pid;
    const std::string how = Reap(w, kill_now);
    if (job >= 0) {
      w.job = job;
      finish(w, absl::InternalError(absl::StrCat("worker ", slot, " (pid ", pid,
                                                 ") ", what, " (", how, ")")));
    }
    ++stats_.restarts;
    return spawn(slot);
  };

  while (next_emit < n) {
    if (Interrupted()) return cancel();
    // Hand out work.
    for (size_t slot = 0; slot < workers_.size(); ++slot) {
      Worker& w = workers_[slot];
      if (w.job >= 0) continue;
      while (first_unstarted < n && started[first_unstarted]) ++first_unstarted;
      const size_t window_end = std::min(n, next_emit + options_.lookahead);
      if (first_unstarted >= window_end) break;
      size_t pick = first_unstarted;
      for (size_t i = first_unstarted; i < window_end; ++i) {
        if (!started[i] && Covers(w.served, jobs[i].needs)) {
          pick = i;
          break;
        }
      }
      if (Covers(w.served, jobs[pick].needs)) ++stats_.affinity_hits;
      const std::string& request = jobs[pick].request;
      if (request.size() > kMaxRequestBytes) {
        started[pick] = true;
        results[pick] = absl::InvalidArgumentError(absl::StrCat(
            "worker pool: request of ", request.size(), " bytes is too big"));
        continue;
      }
      if (!SendAll(w.socket.get(), Frame(request))) {
        // Died while idle: nothing was attempted; replace it and retry.
        const std::string how = Reap(w, /*kill_now=*/false);
        if (++idle_deaths > 3) {
          return absl::InternalError(
              absl::StrCat("worker pool: worker ", slot,
                           " keeps dying before its first "
                           "request (last: ",
                           how, ")"));
        }
        ++stats_.restarts;
        if (absl::Status s = spawn(slot); !s.ok()) return s;
        --slot;
        continue;
      }
      idle_deaths = 0;
      started[pick] = true;
      w.job = static_cast<int64_t>(pick);
      w.started = absl::Now();
      w.served.insert(jobs[pick].needs.begin(), jobs[pick].needs.end());
      ++stats_.jobs;
      ++stats_.jobs_per_worker[slot];
    }

    // Emit what is complete, in order.
    while (next_emit < n && results[next_emit].has_value()) {
      on_result(next_emit, std::move(*results[next_emit]));
      results[next_emit].reset();
      ++next_emit;
    }
    if (next_emit >= n) break;

    // Wait for replies (or the earliest job deadline, or an interruption).
    std::vector<pollfd> fds;
    std::vector<size_t> slots;
    absl::Duration wait = absl::InfiniteDuration();
    const absl::Time now = absl::Now();
    for (size_t slot = 0; slot < workers_.size(); ++slot) {
      const Worker& w = workers_[slot];
      if (w.job < 0) continue;
      fds.push_back({w.socket.get(), POLLIN, 0});
      slots.push_back(slot);
      wait = std::min(wait, w.started + options_.job_timeout - now);
    }
    if (fds.empty()) continue;  // only too-big requests were handed out
    if (options_.interrupt_fd >= 0) {
      fds.push_back({options_.interrupt_fd, POLLIN, 0});
    }
    int timeout_ms = -1;
    if (wait != absl::InfiniteDuration()) {
      timeout_ms = static_cast<int>(
          std::clamp<int64_t>(absl::ToInt64Milliseconds(wait) + 1, 0, 1 << 30));
    }
    const int ready = poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("worker pool: poll failed: ", ErrnoText(errno)));
    }
    // Before looking at the workers: a worker that died of the same signal
    // (e.g. Ctrl-C reaches the whole process group) is not replaced.
    if (Interrupted()) return cancel();
    for (size_t k = 0; k < slots.size(); ++k) {
      const size_t slot = slots[k];
      Worker& w = workers_[slot];
      if (fds[k].revents == 0) continue;
      bool dead = false;
      for (;;) {
        char buf[65536];
        const ssize_t got =
            recv(w.socket.get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (got > 0) {
          w.inbox.append(buf, static_cast<size_t>(got));
          continue;
        }
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        dead = true;  // EOF or a socket error
        break;
      }
      // A complete reply?
      std::optional<std::string> problem;
      if (w.inbox.size() >= 4) {
        const uint32_t size = GetU32(w.inbox.data());
        if (size > options_.max_reply_bytes || size == 0) {
          problem = absl::StrCat("sent a malformed reply (length ", size, ")");
        } else if (w.inbox.size() > 4 + size) {
          problem = "sent more than one reply";
        } else if (w.inbox.size() == 4 + size) {
          const uint8_t tag = static_cast<uint8_t>(w.inbox[4]);
          if (tag == kReplyOk) {
            finish(w, w.inbox.substr(5));
          } else if (tag == kReplyError && size >= 5) {
            const auto code =
                static_cast<absl::StatusCode>(GetU32(w.inbox.data() + 5));
            finish(w, absl::Status(code == absl::StatusCode::kOk
                                       ? absl::StatusCode::kUnknown
                                       : code,
                                   w.inbox.substr(9)));
          } else {
            problem = absl::StrCat("sent a reply with unknown tag ", tag);
          }
        }
      }
      if (problem.has_value() || (dead && w.job >= 0)) {
        const std::string what = problem.value_or(
            absl::StrCat("died while handling request ", w.job));
        if (absl::Status s = replace(slot, what, problem.has_value());
            !s.ok()) {
          return s;
        }
      } else if (dead) {
        // Replied, then went away: replace it before it is needed again.
        if (absl::Status s = replace(slot, "exited", false); !s.ok()) {
          return s;
        }
      }
    }
    // Overdue jobs.
    const absl::Time after = absl::Now();
    for (size_t slot = 0; slot < workers_.size(); ++slot) {
      Worker& w = workers_[slot];
      if (w.job < 0 || after - w.started < options_.job_timeout) continue;
      if (absl::Status s =
              replace(slot,
                      absl::StrCat("exceeded the job timeout of ",
                                   absl::FormatDuration(options_.job_timeout),
                                   " and was killed"),
                      /*kill_now=*/true);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace dynahug::sandbox

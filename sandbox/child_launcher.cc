#include "sandbox/child_launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sandbox/syscall_supervisor.h"
#include "sandbox/unique_fd.h"

extern char** environ;

// Landlock definitions newer than Debian 12's kernel headers (ABI 1-2).
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

namespace dynahug::sandbox {
namespace {

// Descriptor layout in the child after fd cleanup. The seccomp listener is
// created when 0-4 are taken and everything above is closed, so the kernel
// gives it the lowest free number, kListenerFd.
constexpr int kEventFd = 3;
constexpr int kSetupFd = 4;
constexpr int kListenerFd = 5;
constexpr int kExitSetupFailed = 121;
// The child died from a fatal signal that its handler reported (see
// EmulateFatalSignals); the signal number is in the status word.
constexpr int kExitFatalSignal = 123;

// Status word shared (MAP_SHARED) between parent and child.
constexpr uint32_t kStatusOutOfMemory = 1u << 0;
constexpr int kStatusSignalShift = 8;  // bits 8-15: fatal signal number

// Scratch mounts: a tmpfs on /tmp and one on /home (holding the user's home
// directory) in the child's own mount namespace.
constexpr char kTmpMount[] = "/tmp";
constexpr char kHomeMount[] = "/home";

// The full Landlock ruleset attribute (ABI 6); older kernels accept it as
// long as the fields they do not know are zero.
struct LandlockRulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

int LandlockAbi() {
  static const int abi = [] {
    const long v = syscall(SYS_landlock_create_ruleset, nullptr, 0,
                           LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : static_cast<int>(v);
  }();
  return abi;
}

uint64_t LandlockWriteRights(int abi) {
  uint64_t rights =
      LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
      LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
      LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
      LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
      LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  return rights;
}

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, " failed: ", strerror(errno)));
}

// Creates and applies (landlock_restrict_self) the Landlock ruleset in the
// child, after its mounts exist: writes are handled (denied) everywhere
// except beneath `writable` (the scratch mounts) and on the harmless device
// nodes; reads are not handled, so they stay allowed. ABI >= 4: TCP
// bind/connect handled with no rule (denied). ABI >= 6: signals and
// abstract unix sockets scoped to the domain. Async-signal-safe enough for
// the child: no allocation.
[[noreturn]] void ChildFail(const char* what, int err);

void ApplyLandlock(int abi, const char* const* writable, size_t n_writable) {
  const uint64_t write_rights = LandlockWriteRights(abi);
  LandlockRulesetAttr attr{};
  attr.handled_access_fs = write_rights;
  if (abi >= 4) {
    attr.handled_access_net =
        LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
  }
  if (abi >= 6) {
    attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
  }
  const size_t attr_size = abi >= 6   ? sizeof attr
                           : abi >= 4 ? 2 * sizeof(uint64_t)
                                      : sizeof(uint64_t);
  const int ruleset = static_cast<int>(
      syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0));
  if (ruleset < 0) ChildFail("landlock_create_ruleset", errno);
  auto add_path = [&](const char* path, uint64_t rights) {
    const int target = open(path, O_PATH | O_CLOEXEC);
    if (target < 0) ChildFail("open(landlock rule path, O_PATH)", errno);
    landlock_path_beneath_attr rule{};
    rule.allowed_access = rights;
    rule.parent_fd = target;
    if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
                &rule, 0) != 0) {
      ChildFail("landlock_add_rule", errno);
    }
    close(target);
  };
  for (size_t i = 0; i < n_writable; ++i) add_path(writable[i], write_rights);
  uint64_t file_rights = LANDLOCK_ACCESS_FS_WRITE_FILE;
  if (abi >= 3) file_rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full"}) {
    add_path(dev, file_rights);
  }
  if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) {
    ChildFail("landlock_restrict_self", errno);
  }
  close(ruleset);
}

// The compiled seccomp program, cached per option set (building it with
// libseccomp costs more than a fork).
absl::StatusOr<std::vector<sock_filter>> CachedFilter(
    const SeccompPolicyOptions& options) {
  static std::mutex mu;
  // The launcher always passes the same channel_fd (kEventFd).
  static std::optional<std::vector<sock_filter>> cache[2];
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[options.allow_hot_syscalls_unrecorded ? 1 : 0];
  if (!slot) {
    absl::StatusOr<std::vector<sock_filter>> program =
        BuildSeccompFilter(options);
    if (!program.ok()) return program.status();
    slot = *std::move(program);
  }
  return *slot;
}

// One empty network namespace shared by the children of this process,
// created once by a short-lived thread (a thread can unshare its own network
// namespace without affecting the process). Joining it with setns() is much
// cheaper than creating and tearing down a namespace per child. Children
// cannot talk to each other through it: its loopback is down, IP sockets are
// denied and bind/connect are denied for every family.
absl::StatusOr<int> SharedEmptyNetns() {
  static std::mutex mu;
  static int netns_fd = -1;
  std::lock_guard<std::mutex> lock(mu);
  if (netns_fd >= 0) return netns_fd;
  int fd = -1;
  int err = 0;
  std::thread maker([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) err = errno;
  });
  maker.join();
  if (fd < 0) {
    errno = err;
    return Errno("creating the shared empty network namespace");
  }
  netns_fd = fd;  // lives as long as the process
  return netns_fd;
}

// The calling process's own pid namespace, to return to after each fork
// into a new one. Opened once; lives as long as the process.
absl::StatusOr<int> OwnPidNamespace() {
  static const int fd = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open(/proc/self/ns/pid)");
  return fd;
}

// The child's home directory: /home/<user> on a tmpfs that hides the
// host's /home, or /tmp (also a private tmpfs) when the host has no /home
// to mount on.
std::string HomeDirectory(const Identity& identity) {
  struct stat st {};
  if (stat(kHomeMount, &st) == 0 && S_ISDIR(st.st_mode)) {
    return absl::StrCat(kHomeMount, "/", identity.user);
  }
  return kTmpMount;
}

// Findings the parent adds when the channel was tampered with, corrupted
// or cut short: INTEGRITY events the child cannot suppress.
void AddChannelFindings(const ChannelStats& channel, uint64_t tamper_attempts,
                        ChildResult* result) {
  auto add = [&](const char* name, uint64_t count, std::string detail) {
    proto::Event event;
    event.set_kind(proto::Event::INTEGRITY);
    event.set_name(name);
    event.set_count(count);
    if (!detail.empty()) {
      proto::Argument* arg = event.add_args();
      arg->set_key("detail");
      arg->set_value(std::move(detail));
    }
    result->events.push_back(std::move(event));
  };
  if (tamper_attempts > 0) {
    add("sandbox.channel.tamper", tamper_attempts,
        "the body wrote to, duplicated, replaced or closed the event "
        "channel descriptor (denied)");
  }
  if (channel.corrupt_records > 0) {
    add("sandbox.channel.corrupt", channel.corrupt_records, channel.error);
  }
  if (channel.out_of_sequence > 0) {
    add("sandbox.channel.out_of_sequence", channel.out_of_sequence,
        "events with a repeated or earlier sequence number (discarded)");
  }
  if (channel.after_end > 0) {
    add("sandbox.channel.after_end", channel.after_end,
        "events after the end marker (discarded)");
  }
  const uint64_t dropped = channel.dropped_by_child + channel.dropped_by_reader;
  if (dropped > 0) {
    add("sandbox.channel.dropped", dropped,
        absl::StrCat(channel.dropped_by_child, " dropped in the child, ",
                     channel.dropped_by_reader, " beyond the reader's limits"));
  }
  if (!channel.end_marker && (result->status == ChildStatus::kOk ||
                              result->status == ChildStatus::kLoadFailed)) {
    // The child ended by itself without the launcher's end marker: the body
    // exited from inside the load (os._exit, exit from native code).
    add("sandbox.channel.no_end_marker", 1,
        "the child exited without closing its event channel: the trace may "
        "be incomplete");
    if (result->status == ChildStatus::kOk) {
      result->status = ChildStatus::kLoadFailed;
      result->reason =
          "exited 0 without closing the event channel (the body exited "
          "from inside the load)";
    }
  }
}

// Kills and reaps the child unless disarmed: no child outlives RunSandboxed.
class ChildReaper {
 public:
  explicit ChildReaper(pid_t pid) : pid_(pid) {}
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;
  ~ChildReaper() {
    if (pid_ <= 0) return;
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, __WALL) < 0 && errno == EINTR) {
    }
  }
  void Disarm() { pid_ = -1; }

 private:
  pid_t pid_;
};

// A MAP_SHARED anonymous page: the child's out-of-band status word.
class SharedStatus {
 public:
  SharedStatus() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    word_ = p == MAP_FAILED ? nullptr : static_cast<volatile uint32_t*>(p);
  }
  ~SharedStatus() {
    if (word_ != nullptr) munmap(const_cast<uint32_t*>(word_), 4096);
  }
  SharedStatus(const SharedStatus&) = delete;
  SharedStatus& operator=(const SharedStatus&) = delete;
  volatile uint32_t* word() const { return word_; }

 private:
  volatile uint32_t* word_ = nullptr;
};

// ---------------------------------------------------------------------------
// Child side. Runs between fork() and the body; reports failures on the
// setup pipe as "E<message>" and exits with kExitSetupFailed.
// ---------------------------------------------------------------------------

volatile uint32_t* g_child_status_word = nullptr;
// Where ChildFail reports: the setup pipe's number as inherited, then
// kSetupFd once the descriptors are rearranged.
int g_child_setup_fd = -1;

void MarkOutOfMemory() {
  if (g_child_status_word != nullptr) {
    __atomic_or_fetch(g_child_status_word, kStatusOutOfMemory,
                      __ATOMIC_SEQ_CST);
  }
}

void ChildNewHandler() {
  MarkOutOfMemory();
  // Let this allocation fail with std::bad_alloc as usual.
  std::set_new_handler(nullptr);
}

void ChildFail(const char* what, int err) {
  char buf[512];
  const int n = snprintf(buf, sizeof buf, "E%s failed: %s", what,
                         err != 0 ? strerrordesc_np(err) : "unexpected state");
  if (n > 0) {
    ssize_t ignored =
        write(g_child_setup_fd, buf, std::min<size_t>(n, sizeof buf - 1));
    (void)ignored;
  }
  _exit(kExitSetupFailed);
}

void ChildCheck(bool ok, const char* what) {
  if (!ok) ChildFail(what, errno);
}

// Reads a small /proc file into `buf` (NUL-terminated); returns its length.
ssize_t ReadSmallFile(const char* path, char* buf, size_t size) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t total = 0;
  while (static_cast<size_t>(total) < size - 1) {
    const ssize_t n = read(fd, buf + total, size - 1 - total);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += n;
  }
  close(fd);
  buf[total] = '\0';
  return total;
}

// True when the child's peak address space came within `headroom` bytes of
// its RLIMIT_AS: an allocation failed at the limit, whatever error the code
// that asked for it turned that into (CPython 3.11's deque raises
// SystemError, threading "can't start new thread", torch a RuntimeError).
bool AddressSpaceNearLimit(uint64_t headroom) {
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY) {
    return false;
  }
  char status[8192];
  if (ReadSmallFile("/proc/self/status", status, sizeof status) <= 0) {
    return false;
  }
  const char* peak = strstr(status, "VmPeak:");
  if (peak == nullptr) return false;
  const uint64_t peak_bytes = strtoull(peak + 7, nullptr, 10) * 1024;
  return peak_bytes + headroom >= as.rlim_cur;
}

// Writes the NUL-separated `items` at the start of [start, end), zero-pads
// the rest, and returns the bytes written.
size_t FillBlock(char* start, char* end,
                 const std::vector<std::string>& items) {
  const size_t size = static_cast<size_t>(end - start);
  size_t pos = 0;
  for (const std::string& item : items) {
    if (pos + item.size() + 1 > size) break;
    memcpy(start + pos, item.c_str(), item.size() + 1);
    pos += item.size() + 1;
  }
  memset(start + pos, 0, size - pos);
  return pos;
}

// Overwrites the blocks the kernel exposes as /proc/self/environ and
// /proc/self/cmdline (inherited from whoever exec'ed the zygote: its
// environment, and a command line naming dynahug and the file) with the
// scrubbed environment and `argv`, then shrinks both to what was written
// (PR_SET_MM, while CAP_SYS_RESOURCE is still held; zero-padded otherwise).
void ScrubKernelBlocks(const std::vector<std::string>& env,
                       const std::vector<std::string>& argv) {
  char stat[4096];
  if (ReadSmallFile("/proc/self/stat", stat, sizeof stat) <= 0) {
    ChildFail("read(/proc/self/stat)", errno);
  }
  const char* p = strrchr(stat, ')');
  ChildCheck(p != nullptr, "parse(/proc/self/stat)");
  // Field 3 starts after ") "; arg_start, arg_end, env_start and env_end
  // are fields 48 to 51.
  unsigned long long fields[52] = {};
  int field = 3;
  p += 2;
  while (*p != '\0' && field <= 51) {
    char* end = nullptr;
    fields[field] = strtoull(p, &end, 10);
    if (end == p) {
      // Non-numeric field (state letter): skip it.
      while (*p != '\0' && *p != ' ') ++p;
    } else {
      p = end;
    }
    while (*p == ' ') ++p;
    ++field;
  }
  ChildCheck(field > 51, "parse(/proc/self/stat) arg/env fields");
  char* arg_start = reinterpret_cast<char*>(fields[48]);
  char* arg_end = reinterpret_cast<char*>(fields[49]);
  char* env_start = reinterpret_cast<char*>(fields[50]);
  char* env_end = reinterpret_cast<char*>(fields[51]);
  if (env_start != nullptr && env_end > env_start) {
    const size_t n = FillBlock(env_start, env_end, env);
    if (n > 0) {
      (void)prctl(PR_SET_MM, PR_SET_MM_ENV_END,
                  reinterpret_cast<unsigned long>(env_start + n), 0, 0);
    }
  }
  if (arg_start != nullptr && arg_end > arg_start) {
    const size_t n = FillBlock(arg_start, arg_end, argv);
    if (n > 0) {
      (void)prctl(PR_SET_MM, PR_SET_MM_ARG_END,
                  reinterpret_cast<unsigned long>(arg_start + n), 0, 0);
    }
  }
}

void SetLimit(int resource, rlim_t soft, rlim_t hard, const char* what) {
  rlimit limit{soft, hard};
  ChildCheck(setrlimit(resource, &limit) == 0, what);
}

// True while the parent still holds the setup pipe's read end: a pipe's
// write end polls POLLERR once no reader is left. (getppid() cannot tell:
// the parent is outside the child's pid namespace, so it reads 0.)
bool ParentAlive(int setup_fd) {
  pollfd pfd{setup_fd, 0, 0};
  return poll(&pfd, 1, 0) == 0 || (pfd.revents & POLLERR) == 0;
}

// Drops every capability and, with `run_as`, switches to that uid/gid.
void DropPrivileges(const std::optional<RunAs>& run_as, int setup_fd) {
  // Bounding set first (needs CAP_SETPCAP), then securebits, then the
  // identity (needs CAP_SETUID/CAP_SETGID), then the capability sets.
  for (int cap = 0; cap <= 63; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      ChildFail("prctl(PR_CAPBSET_DROP)", errno);
    }
  }
  ChildCheck(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0 ||
                 errno == EINVAL,
             "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  ChildCheck(
      prctl(PR_SET_SECUREBITS,
            SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED,
            0, 0, 0) == 0,
      "prctl(PR_SET_SECUREBITS)");
  if (run_as) {
    ChildCheck(setgroups(0, nullptr) == 0, "setgroups(0)");
    ChildCheck(setresgid(run_as->gid, run_as->gid, run_as->gid) == 0,
               "setresgid");
    ChildCheck(setresuid(run_as->uid, run_as->uid, run_as->uid) == 0,
               "setresuid");
    // A credential change clears the parent-death signal: arm it again.
    ChildCheck(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0,
               "prctl(PR_SET_PDEATHSIG)");
    if (!ParentAlive(setup_fd)) _exit(kExitSetupFailed);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  ChildCheck(syscall(SYS_capset, &header, data) == 0, "capset");
}

struct ChildPlan {
  const Policy* policy;
  int event_w;
  int setup_w;
  int stderr_fd;     // -1 unless inherit_stderr
  int netns_fd;      // shared empty network namespace, or -1 for a new one
  int landlock_abi;  // 0: no Landlock layer
  const std::string* home;  // the user's home directory (scratch, cwd)
  // ~/.local/bin and the programs to create in it (absolute paths).
  const std::string* bin_dir;
  const std::vector<std::string>* programs;
  const std::vector<std::string>* env;
  char** envp;
  // Host paths kept visible at their location under the scratch mounts.
  const std::vector<std::string>* visible_paths;
  const std::vector<sock_filter>* filter;
  volatile uint32_t* status_word;
};

}  // namespace

class ChildContextAccess {
 public:
  static ChildContext Make(EventWriter* events, const std::string* scratch,
                           const std::vector<std::string>* env,
                           volatile uint32_t* status_word) {
    ChildContext ctx;
    ctx.events_ = events;
    ctx.scratch_dir_ = scratch;
    ctx.env_ = env;
    ctx.status_word_ = status_word;
    return ctx;
  }
};

void ChildContext::ReportOutOfMemory() {
  if (status_word_ != nullptr) {
    __atomic_or_fetch(status_word_, kStatusOutOfMemory, __ATOMIC_SEQ_CST);
  }
}

namespace {

// Signals whose default action ends the process. The child is the first
// process (pid 1) of its own pid namespace, and the kernel ignores signals
// that pid 1 sends itself or gets from inside its namespace while their
// disposition is SIG_DFL (a real fault, a parent's SIGKILL or the CPU
// hard limit still kill it). A handler makes them fatal again, as for any
// other process: it records the signal and exits, and the parent reports
// the child as killed by that signal.
constexpr int kFatalSignals[] = {
    SIGHUP,    SIGINT,  SIGQUIT,   SIGILL,  SIGTRAP, SIGABRT, SIGBUS,
    SIGFPE,    SIGUSR1, SIGSEGV,   SIGUSR2, SIGPIPE, SIGALRM, SIGTERM,
    SIGSTKFLT, SIGXCPU, SIGVTALRM, SIGPROF, SIGIO,   SIGPWR,  SIGSYS};

void FatalSignalHandler(int sig) {
  if (g_child_status_word != nullptr) {
    __atomic_or_fetch(g_child_status_word,
                      static_cast<uint32_t>(sig & 0xff) << kStatusSignalShift,
                      __ATOMIC_SEQ_CST);
  }
  _exit(kExitFatalSignal);
}

// Step 1: own session, parent-death signal, signal state.
void EnterSession(const ChildPlan& plan) {
  if (setsid() < 0) _exit(kExitSetupFailed);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) _exit(kExitSetupFailed);
  if (!ParentAlive(plan.setup_w)) _exit(kExitSetupFailed);
  g_child_status_word = plan.status_word;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction action {};
    action.sa_handler = sig == SIGXFSZ ? SIG_IGN : SIG_DFL;
    sigaction(sig, &action, nullptr);  // EINVAL for glibc-internal signals
  }
  for (int sig : kFatalSignals) {
    struct sigaction action {};
    action.sa_handler = FatalSignalHandler;
    action.sa_flags = SA_NODEFER;
    sigaction(sig, &action, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Step 2: namespaces. The pid namespace was entered at fork (the child is
// its pid 1); here: network (shared empty one, or new), and new mount, UTS,
// IPC and cgroup namespaces. Time namespaces apply only to children, which
// the child cannot create.
void EnterNamespaces(const ChildPlan& plan) {
  int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
  if (plan.netns_fd >= 0) {
    ChildCheck(setns(plan.netns_fd, CLONE_NEWNET) == 0,
               "setns(shared empty network namespace)");
  } else {
    flags |= CLONE_NEWNET;
  }
  ChildCheck(unshare(flags) == 0,
             "unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWCGROUP)");
  const std::string& hostname = plan.policy->identity.hostname;
  ChildCheck(sethostname(hostname.data(), hostname.size()) == 0, "sethostname");
}

// Step 3: the event channel on kEventFd, the setup pipe on kSetupFd,
// /dev/null (or the parent's stderr) on 0-2, everything else closed.
void ArrangeDescriptors(const ChildPlan& plan) {
  int keep[3] = {plan.event_w, plan.setup_w, plan.stderr_fd};
  for (int& fd : keep) {
    if (fd < 0) continue;
    fd = fcntl(fd, F_DUPFD_CLOEXEC, 64);
    if (fd < 0) _exit(kExitSetupFailed);
  }
  if (dup2(keep[1], kSetupFd) < 0) _exit(kExitSetupFailed);
  g_child_setup_fd = kSetupFd;
  ChildCheck(dup2(keep[0], kEventFd) == kEventFd, "dup2(event channel)");
  const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  ChildCheck(devnull >= 0, "open(/dev/null)");
  ChildCheck(dup2(devnull, 0) == 0 && dup2(devnull, 1) == 1, "dup2(/dev/null)");
  ChildCheck(dup2(keep[2] >= 0 ? keep[2] : devnull, 2) == 2, "dup2(stderr)");
  ChildCheck(syscall(SYS_close_range, kSetupFd + 1, ~0u, 0) == 0,
             "close_range");
  // dup2 clears FD_CLOEXEC; set it again (exec is denied anyway).
  for (int fd = 0; fd <= kSetupFd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
}

void MountTmpfs(const char* target, const char* options, unsigned long flags,
                const char* what) {
  ChildCheck(mount("tmpfs", target, "tmpfs", flags, options) == 0, what);
}

// Creates `path`'s missing parent directories (mode 0755), then `path`
// itself as an empty directory or file to bind-mount on.
bool MakeMountTarget(const std::string& path, bool directory) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    if (mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  if (directory) return mkdir(path.c_str(), 0755) == 0 || errno == EEXIST;
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
  if (fd < 0) return false;
  close(fd);
  return true;
}

// What a desktop program in ~/.local/bin contains (it never runs: the
// seccomp policy denies execve; it only has to exist and be executable).
constexpr char kProgramScript[] = "#!/bin/sh\nexit 0\n";

// Creates `path` (a directory, mode 0755) owned by uid/gid unless it
// exists.
void MakeOwnedDir(const char* path, uid_t uid, gid_t gid) {
  if (mkdir(path, 0755) != 0) {
    ChildCheck(errno == EEXIST, "mkdir(~/.local/bin)");
    return;
  }
  ChildCheck(chown(path, uid, gid) == 0, "chown(~/.local/bin)");
}

// Identity::desktop_programs in ~/.local/bin, on the scratch tmpfs.
void PopulateHome(const ChildPlan& plan, uid_t uid, gid_t gid) {
  if (plan.programs->empty()) return;
  const std::string& bin = *plan.bin_dir;
  const size_t local_end = bin.rfind('/');
  char local[PATH_MAX];
  snprintf(local, sizeof local, "%.*s", static_cast<int>(local_end),
           bin.c_str());
  MakeOwnedDir(local, uid, gid);
  MakeOwnedDir(bin.c_str(), uid, gid);
  for (const std::string& program : *plan.programs) {
    const int fd = open(program.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    ChildCheck(fd >= 0, "open(~/.local/bin program)");
    const ssize_t want = static_cast<ssize_t>(sizeof kProgramScript - 1);
    const bool ok = write(fd, kProgramScript, want) == want &&
                    fchown(fd, uid, gid) == 0 && fchmod(fd, 0755) == 0;
    close(fd);
    ChildCheck(ok, "write(~/.local/bin program)");
  }
}

// Step 4: the filesystem, in the child's own mount namespace:
//   - every host mount private and recursively read-only, nosuid, nodev
//     (metadata changes -- chmod, utimes, xattrs, file flags -- and writes
//     to host files fail with EROFS whatever the child's uid owns);
//   - a fresh read-only procfs for the child's pid namespace (no host
//     process is visible);
//   - /dev: a small read-only tmpfs with null, zero, full, random, urandom
//     (no disks, no host shared memory);
//   - /tmp and /home: fresh tmpfs mounts bounded in bytes and inodes, the
//     only writable places; the user's home directory is in /home. They
//     exist only in this namespace and vanish with the child: nothing is
//     left on the host to remove, whatever the payload wrote;
//   - Identity::desktop_programs in ~/.local/bin (PopulateHome);
//   - Policy::visible_paths that the scratch mounts hid are bind-mounted
//     back, read-only, at their own path.
void BuildFilesystem(const ChildPlan& plan) {
  const Policy& policy = *plan.policy;
  ChildCheck(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
             "mount(/, MS_REC|MS_PRIVATE)");
  // Paths to keep: opened before anything covers them.
  std::vector<int> visible_fds;
  for (const std::string& path : *plan.visible_paths) {
    visible_fds.push_back(open(path.c_str(), O_PATH | O_CLOEXEC));
  }
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  ChildCheck(syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr,
                     sizeof attr) == 0,
             "mount_setattr(/, AT_RECURSIVE, RDONLY|NOSUID|NODEV)");
  ChildCheck(mount("proc", "/proc", "proc",
                   MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
             "mount(proc on /proc)");

  MountTmpfs("/dev", "size=64k,nr_inodes=64,mode=0755", MS_NOSUID | MS_NOEXEC,
             "mount(tmpfs on /dev)");
  struct Node {
    const char* path;
    unsigned minor;
  };
  for (const Node& node :
       {Node{"/dev/null", 3}, Node{"/dev/zero", 5}, Node{"/dev/full", 7},
        Node{"/dev/random", 8}, Node{"/dev/urandom", 9}}) {
    ChildCheck(mknod(node.path, S_IFCHR | 0666, makedev(1, node.minor)) == 0 &&
                   chmod(node.path, 0666) == 0,
               "mknod(/dev/...)");
  }
  ChildCheck(symlink("/proc/self/fd", "/dev/fd") == 0 &&
                 symlink("/proc/self/fd/0", "/dev/stdin") == 0 &&
                 symlink("/proc/self/fd/1", "/dev/stdout") == 0 &&
                 symlink("/proc/self/fd/2", "/dev/stderr") == 0 &&
                 mkdir("/dev/shm", 01777) == 0,
             "populating /dev");
  ChildCheck(
      mount(nullptr, "/dev", nullptr,
            MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr) == 0,
      "mount(/dev, MS_REMOUNT|MS_RDONLY)");

  const uid_t uid = policy.run_as ? policy.run_as->uid : 0;
  const gid_t gid = policy.run_as ? policy.run_as->gid : 0;
  char options[128];
  snprintf(options, sizeof options, "size=%llu,nr_inodes=%llu,mode=1777",
           static_cast<unsigned long long>(policy.limits.scratch_bytes),
           static_cast<unsigned long long>(policy.limits.scratch_inodes));
  MountTmpfs(kTmpMount, options, MS_NOSUID | MS_NODEV, "mount(tmpfs on /tmp)");
  if (plan.home->rfind(kHomeMount, 0) == 0) {
    snprintf(options, sizeof options, "size=%llu,nr_inodes=%llu,mode=0755",
             static_cast<unsigned long long>(policy.limits.scratch_bytes),
             static_cast<unsigned long long>(policy.limits.scratch_inodes));
    MountTmpfs(kHomeMount, options, MS_NOSUID | MS_NODEV,
               "mount(tmpfs on /home)");
    ChildCheck(mkdir(plan.home->c_str(), 0700) == 0 &&
                   chown(plan.home->c_str(), uid, gid) == 0,
               "mkdir(home directory)");
  }

  PopulateHome(plan, uid, gid);

  for (size_t i = 0; i < visible_fds.size(); ++i) {
    const int fd = visible_fds[i];
    if (fd < 0) continue;  // did not exist: nothing to keep
    const std::string& path = (*plan.visible_paths)[i];
    struct stat want {
    }, now{};
    ChildCheck(fstat(fd, &want) == 0, "fstat(visible path)");
    if (stat(path.c_str(), &now) == 0 && now.st_dev == want.st_dev &&
        now.st_ino == want.st_ino) {
      close(fd);
      continue;  // not hidden
    }
    char source[64];
    snprintf(source, sizeof source, "/proc/self/fd/%d", fd);
    ChildCheck(MakeMountTarget(path, S_ISDIR(want.st_mode)) &&
                   mount(source, path.c_str(), nullptr, MS_BIND | MS_REC,
                         nullptr) == 0,
               "bind-mounting a visible path under scratch");
    close(fd);
  }
  ChildCheck(chdir(plan.home->c_str()) == 0, "chdir(home)");
}

// Step 5: rlimits.
void ApplyLimits(const Limits& limits) {
  char statm[256];
  ChildCheck(ReadSmallFile("/proc/self/statm", statm, sizeof statm) > 0,
             "read(/proc/self/statm)");
  const rlim_t vm_bytes =
      strtoull(statm, nullptr, 10) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
  const rlim_t memory = vm_bytes + limits.memory_bytes;
  SetLimit(RLIMIT_AS, memory, memory, "setrlimit(RLIMIT_AS)");
  SetLimit(RLIMIT_DATA, memory, memory, "setrlimit(RLIMIT_DATA)");
  SetLimit(RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1,
           "setrlimit(RLIMIT_CPU)");
  SetLimit(RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes,
           "setrlimit(RLIMIT_FSIZE)");
  SetLimit(RLIMIT_NOFILE, limits.open_files, limits.open_files,
           "setrlimit(RLIMIT_NOFILE)");
  SetLimit(RLIMIT_NPROC, limits.processes, limits.processes,
           "setrlimit(RLIMIT_NPROC)");
  SetLimit(RLIMIT_CORE, 0, 0, "setrlimit(RLIMIT_CORE)");
  SetLimit(RLIMIT_MSGQUEUE, 0, 0, "setrlimit(RLIMIT_MSGQUEUE)");
}

// Step 6: the scrubbed environment, also in the kernel's copy.
void InstallEnvironment(const ChildPlan& plan) {
  ScrubKernelBlocks(*plan.env, {"python3"});
  environ = plan.envp;
  // The process name a payload reads in /proc/self/comm and /proc/1/comm.
  prctl(PR_SET_NAME, "python3", 0, 0, 0);
}

// Step 7: no new privileges, Landlock, not dumpable, no capabilities.
void LockPrivileges(const ChildPlan& plan) {
  ChildCheck(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0,
             "prctl(PR_SET_NO_NEW_PRIVS)");
  if (plan.landlock_abi > 0) {
    const char* writable[] = {kTmpMount, plan.home->c_str()};
    ApplyLandlock(plan.landlock_abi, writable, 2);
  }
  ChildCheck(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0,
             "prctl(PR_SET_DUMPABLE, 0)");
  DropPrivileges(plan.policy->run_as, plan.setup_w);
  std::set_new_handler(ChildNewHandler);
}

// Step 8: the seccomp filter, last. The parent fetches the listener with
// pidfd_getfd() when the child says "R". With the hot set allowed, write()
// does not wait for the supervisor, so "R" is sent once the listener
// exists. When every syscall is notified, "R" must go first and the parent
// retries pidfd_getfd() until the listener appears.
void InstallSeccomp(const ChildPlan& plan) {
  const bool write_is_free = plan.policy->seccomp.allow_hot_syscalls_unrecorded;
  if (!write_is_free) {
    ChildCheck(write(kSetupFd, "R", 1) == 1, "write(setup pipe)");
  }
  sock_fprog prog{static_cast<unsigned short>(plan.filter->size()),
                  const_cast<sock_filter*>(plan.filter->data())};
  const long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  if (listener < 0) ChildFail("seccomp(SECCOMP_SET_MODE_FILTER)", errno);
  // A listener at an unexpected number cannot be fetched by the parent.
  if (listener != kListenerFd) {
    if (write_is_free) ChildFail("seccomp listener descriptor check", 0);
    _exit(kExitSetupFailed);
  }
  if (write_is_free) {
    ChildCheck(write(kSetupFd, "R", 1) == 1, "write(setup pipe)");
  }
  // Waits (as a notified syscall) until the parent holds its own copy.
  close(kListenerFd);
  if (write(kSetupFd, "K", 1) != 1) _exit(kExitSetupFailed);
}

[[noreturn]] void RunChild(const ChildPlan& plan,
                           absl::FunctionRef<int(ChildContext&)> body) {
  const Policy& policy = *plan.policy;
  g_child_setup_fd = plan.setup_w;
  EnterSession(plan);
  EnterNamespaces(plan);
  ArrangeDescriptors(plan);
  ChildPlan arranged = plan;
  arranged.setup_w = kSetupFd;
  BuildFilesystem(arranged);
  ApplyLimits(policy.limits);
  InstallEnvironment(arranged);
  LockPrivileges(arranged);
  InstallSeccomp(arranged);

  EventWriter writer(UniqueFd(kEventFd), policy.channel);
  ChildContext ctx =
      ChildContextAccess::Make(&writer, plan.home, plan.env, plan.status_word);
  // The start marker: the supervisor counts from the next syscall on.
  close(kSetupFd);
  int rc;
  try {
    rc = body(ctx);
  } catch (...) {
    rc = kExitUncaughtException;
  }
  // A failed body whose address space reached the limit hit the memory limit
  // even if nothing reported it (checked only after a failure, so a
  // successful body's syscall counts are unchanged).
  if (rc != 0 && AddressSpaceNearLimit(std::min<uint64_t>(
                     64ull << 20, policy.limits.memory_bytes / 8))) {
    MarkOutOfMemory();
  }
  // The end marker; the channel stays open (closing it is denied) until exit.
  writer.Finish(absl::Seconds(2));
  _exit(rc & 0xff);
}

// ---------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------

std::vector<std::string> BuildEnvironment(const Policy& policy,
                                          const std::string& home) {
  const Identity& id = policy.identity;
  const std::string path =
      id.desktop_programs.empty()
          ? id.path
          : absl::StrCat(home, "/.local/bin", id.path.empty() ? "" : ":",
                         id.path);
  std::vector<std::string> env = {
      absl::StrCat("HOME=", home),
      absl::StrCat("PWD=", home),
      absl::StrCat("USER=", id.user),
      absl::StrCat("LOGNAME=", id.user),
      absl::StrCat("HOSTNAME=", id.hostname),
      absl::StrCat("PATH=", path),
      absl::StrCat("LANG=", id.lang),
      absl::StrCat("SHELL=", id.shell),
  };
  for (const auto& [key, value] :
       {std::pair{"DISPLAY", &id.display}, std::pair{"BROWSER", &id.browser},
        std::pair{"EDITOR", &id.editor}, std::pair{"VISUAL", &id.editor},
        std::pair{"PAGER", &id.pager}}) {
    if (!value->empty()) env.push_back(absl::StrCat(key, "=", *value));
  }
  return env;
}

double ToMs(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e3 +
         static_cast<double>(tv.tv_usec) / 1e3;
}

bool IsSeccompListener(int fd) {
  char link[64];
  char target[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  return strcmp(target, "anon_inode:seccomp notify") == 0;
}

void Classify(const Policy& policy, int wait_status, bool timed_out,
              bool out_of_memory, ChildResult* result) {
  const uint64_t cpu_limit_ms = policy.limits.cpu_seconds * 1000;
  if (timed_out) {
    result->status = ChildStatus::kTimeout;
    result->signal = SIGKILL;
    result->reason = absl::StrCat(
        "wall-clock limit ", absl::ToInt64Milliseconds(policy.limits.wall_time),
        " ms exceeded");
    return;
  }
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    result->signal = sig;
    if (sig == SIGXCPU ||
        (sig == SIGKILL &&
         result->cpu_ms >= static_cast<double>(cpu_limit_ms))) {
      result->status = ChildStatus::kCpuLimit;
      result->reason = absl::StrCat("CPU limit ", policy.limits.cpu_seconds,
                                    " s exceeded (", sigabbrev_np(sig), ")");
    } else if (out_of_memory) {
      result->status = ChildStatus::kMemoryLimit;
      result->reason = absl::StrCat(
          "memory limit reached: allocation failed, "
          "then killed by SIG",
          sigabbrev_np(sig));
    } else if (sig == SIGSYS) {
      result->status = ChildStatus::kViolation;
      result->reason =
          "killed by the seccomp filter (SIGSYS): syscall from a "
          "foreign ABI (i386/x32) or raised SIGSYS";
    } else {
      result->status = ChildStatus::kSignaled;
      result->reason = absl::StrCat("killed by SIG", sigabbrev_np(sig));
      if (sig == SIGKILL) {
        result->reason += " (not sent by the sandbox; e.g. the OOM killer)";
      }
    }
    return;
  }
  result->exit_code = WEXITSTATUS(wait_status);
  if (result->exit_code == 0) {
    result->status = ChildStatus::kOk;
  } else if (out_of_memory) {
    result->status = ChildStatus::kMemoryLimit;
    result->reason = absl::StrCat(
        "memory limit reached: allocation failed, "
        "exit code ",
        result->exit_code);
  } else {
    result->status = ChildStatus::kLoadFailed;
    result->reason = result->exit_code == kExitUncaughtException
                         ? "uncaught C++ exception in the child"
                         : absl::StrCat("exit code ", result->exit_code);
  }
}

// Everything the child needs that can fail or allocate much, made before
// fork(): the filesystem isolation and seccomp filter, the event channel and
// setup pipe, the namespaces to join and to return to, the environment and
// the shared status word. Not movable: Plan() points into it.
struct PreparedChild {
  PreparedChild() = default;
  PreparedChild(const PreparedChild&) = delete;
  PreparedChild& operator=(const PreparedChild&) = delete;

  ChildPlan Plan(const Policy& policy) {
    return ChildPlan{&policy,       event_w.get(),
                     setup_w.get(), policy.inherit_stderr ? STDERR_FILENO : -1,
                     netns_fd,      landlock_abi,
                     &home,         &bin_dir,
                     &programs,     &env,
                     envp.data(),   &policy.visible_paths,
                     &filter,       status_page.word()};
  }

  bool use_landlock = false;
  int landlock_abi = 0;  // 0 without Landlock
  std::vector<sock_filter> filter;
  UniqueFd event_r, event_w;  // the event channel
  UniqueFd setup_r, setup_w;  // the setup pipe
  int netns_fd = -1;          // shared empty network namespace, or -1
  int own_pidns = -1;         // this process's pid namespace
  std::string home;
  std::string bin_dir;                // home + "/.local/bin"
  std::vector<std::string> programs;  // bin_dir + "/" + desktop program
  std::vector<std::string> env;
  std::vector<char*> envp;
  SharedStatus status_page;
};

absl::Status PrepareChild(const Policy& policy, PreparedChild& out) {
  SeccompPolicyOptions seccomp = policy.seccomp;
  seccomp.channel_fd = kEventFd;
  absl::StatusOr<FsIsolation> fs =
      ResolveFsIsolation(policy.fs_isolation, LandlockAbi());
  if (!fs.ok()) return fs.status();
  absl::StatusOr<std::vector<sock_filter>> filter = CachedFilter(seccomp);
  if (!filter.ok()) return filter.status();
  out.filter = std::move(*filter);
  out.use_landlock = *fs == FsIsolation::kLandlock;
  out.landlock_abi = out.use_landlock ? LandlockAbi() : 0;

  UniqueFd channel[2];
  if (auto s = MakeChannel(channel, 1 << 20); !s.ok()) return s;
  out.event_r = std::move(channel[0]);
  out.event_w = std::move(channel[1]);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Errno("pipe2(setup)");
  out.setup_r = UniqueFd(fds[0]);
  out.setup_w = UniqueFd(fds[1]);
  for (int fd : {out.event_r.get(), out.setup_r.get()}) {
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return Errno("fcntl(O_NONBLOCK)");
  }

  if (!policy.fresh_network_namespace) {
    absl::StatusOr<int> shared = SharedEmptyNetns();
    if (!shared.ok()) return shared.status();
    out.netns_fd = *shared;
  }
  absl::StatusOr<int> own_pidns = OwnPidNamespace();
  if (!own_pidns.ok()) return own_pidns.status();
  out.own_pidns = *own_pidns;

  out.home = HomeDirectory(policy.identity);
  out.bin_dir = absl::StrCat(out.home, "/.local/bin");
  out.programs.clear();
  for (const std::string& name : policy.identity.desktop_programs) {
    if (name.empty() || name.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Identity::desktop_programs: \"", name, "\" is not a file name"));
    }
    out.programs.push_back(absl::StrCat(out.bin_dir, "/", name));
  }
  out.env = BuildEnvironment(policy, out.home);
  for (const std::string& kv : out.env) {
    out.envp.push_back(const_cast<char*>(kv.c_str()));
  }
  out.envp.push_back(nullptr);
  if (out.status_page.word() == nullptr) return Errno("mmap(shared status)");
  return absl::OkStatus();
}

// The parent's side of a running child, from fork() until it has exited:
// answers its seccomp notifications (SyscallSupervisor, once the child
// announces its listener), reads its events and setup messages, and kills
// its process group at the wall-clock deadline.
class ChildWatch {
 public:
  ChildWatch(const Policy& policy, pid_t pid, UniqueFd pidfd, UniqueFd setup_r,
             UniqueFd event_r, absl::Time deadline)
      : pid_(pid),
        pidfd_(std::move(pidfd)),
        setup_r_(std::move(setup_r)),
        event_r_(std::move(event_r)),
        deadline_(deadline),
        reader_(policy.channel) {}

  // Serves the child until it has exited. Errors: a syscall of the parent
  // failed, or the supervisor or the event reader broke.
  absl::Status Watch();
  // After Watch(): reads what the child left in its pipes, to EOF.
  absl::Status Drain();

  bool setup_done() const { return setup_done_; }
  bool timed_out() const { return timed_out_; }
  // The child's setup error ("E" message), or "".
  const std::string& setup_error() const { return setup_error_; }
  bool supervised() const { return supervisor_.has_value(); }
  // Syscall counts, the events in order (each BLOCKED event right after the
  // events the child wrote before that syscall), channel statistics and
  // tamper attempts, into `result`.
  void MoveTo(ChildResult& result);

 private:
  void KillGroup();
  // The child announced its filter: fetches the listener as soon as it
  // exists.
  absl::Status TakeListener();
  // Interprets the setup tokens read so far.
  absl::Status ProcessSetup();
  // Reads the setup pipe until it would block; true at EOF.
  bool ReadSetup();
  // Reads the event channel until it would block; closes it at EOF.
  absl::Status ReadEvents();

  const pid_t pid_;
  UniqueFd pidfd_;
  UniqueFd setup_r_;
  UniqueFd event_r_;
  const absl::Time deadline_;
  EventReader reader_;
  std::optional<SyscallSupervisor> supervisor_;
  // The setup pipe carries one-letter tokens: 'R' (listener ready), 'K'
  // (setup complete), or 'E' followed by an error message up to EOF.
  std::string setup_messages_;
  size_t setup_parsed_ = 0;
  std::string setup_error_;
  bool listener_ready_ = false;
  bool setup_done_ = false;
  bool timed_out_ = false;
  // For each BLOCKED event, how many child events precede it: the child is
  // stopped in a notified syscall until it is answered, so every event it
  // wrote before the syscall is already in the pipe. Reading the pipe before
  // answering puts the denial right after the events that led to it.
  std::vector<size_t> blocked_positions_;
};

void ChildWatch::KillGroup() {
  syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  kill(-pid_, SIGKILL);  // the pgid cannot be reused: the child is unreaped
}

absl::Status ChildWatch::TakeListener() {
  // The child cannot proceed past its next notified syscall without us, so
  // this normally takes microseconds.
  while (true) {
    const long fd = syscall(SYS_pidfd_getfd, pidfd_.get(), kListenerFd, 0);
    if (fd >= 0) {
      UniqueFd listener(static_cast<int>(fd));
      if (IsSeccompListener(listener.get())) {
        SupervisorOptions options;
        options.start_marker_fd = kSetupFd;
        options.child = ChildView{/*self_pid=*/1, kEventFd};
        supervisor_.emplace(std::move(listener), options);
        return absl::OkStatus();
      }
    } else if (errno != EBADF) {
      return Errno("pidfd_getfd(seccomp listener)");
    }
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    if (poll(&pfd, 1, 0) > 0) return absl::OkStatus();  // child died
    if (absl::Now() >= deadline_) return absl::OkStatus();
    sched_yield();
  }
}

absl::Status ChildWatch::ProcessSetup() {
  while (setup_parsed_ < setup_messages_.size() && setup_error_.empty()) {
    const char token = setup_messages_[setup_parsed_];
    if (token == 'E') {
      setup_error_ = setup_messages_.substr(setup_parsed_ + 1);
      if (setup_error_.empty()) return absl::OkStatus();  // more to come
      break;
    }
    ++setup_parsed_;
    if (token == 'R') listener_ready_ = true;
    if (token == 'K') setup_done_ = true;
  }
  if (!setup_error_.empty()) {
    setup_error_ = setup_messages_.substr(setup_parsed_ + 1);
    return absl::OkStatus();
  }
  if (listener_ready_ && !supervisor_) return TakeListener();
  return absl::OkStatus();
}

bool ChildWatch::ReadSetup() {
  char buf[512];
  while (true) {
    const ssize_t n = read(setup_r_.get(), buf, sizeof buf);
    if (n > 0) {
      if (setup_messages_.size() < 4096) setup_messages_.append(buf, n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n == 0;
  }
}

absl::Status ChildWatch::ReadEvents() {
  absl::StatusOr<bool> eof = reader_.ReadFrom(event_r_.get());
  if (!eof.ok()) return eof.status();
  if (*eof) event_r_.reset();
  return absl::OkStatus();
}

absl::Status ChildWatch::Watch() {
  bool listener_open = true;
  bool exited = false;
  while (!exited) {
    pollfd pfds[4];
    int n = 0;
    pfds[n++] = {pidfd_.get(), POLLIN, 0};
    const int setup_idx = setup_r_ ? n : -1;
    if (setup_r_) pfds[n++] = {setup_r_.get(), POLLIN, 0};
    const int event_idx = event_r_ ? n : -1;
    if (event_r_) pfds[n++] = {event_r_.get(), POLLIN, 0};
    const int listener_idx = supervisor_ && listener_open ? n : -1;
    if (listener_idx >= 0) pfds[n++] = {supervisor_->fd(), POLLIN, 0};

    int timeout_ms = -1;
    if (!timed_out_) {
      const absl::Duration left = deadline_ - absl::Now();
      timeout_ms = left <= absl::ZeroDuration()
                       ? 0
                       : static_cast<int>(absl::ToInt64Milliseconds(
                             absl::Ceil(left, absl::Milliseconds(1))));
    }
    const int rc = poll(pfds, n, timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Errno("poll(sandboxed child)");
    }
    if (listener_idx >= 0) {
      const short revents = pfds[listener_idx].revents;
      if (revents & POLLIN) {
        // The pipe already held those events when poll() returned.
        if (event_r_ && event_idx >= 0 && pfds[event_idx].revents != 0) {
          if (absl::Status s = ReadEvents(); !s.ok()) return s;
        }
        const size_t blocked_before = supervisor_->blocked_event_count();
        if (auto s = supervisor_->HandleOne(); !s.ok()) return s;
        if (supervisor_->blocked_event_count() > blocked_before) {
          blocked_positions_.push_back(reader_.events().size());
        }
      } else if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
        listener_open = false;  // every task using the filter is gone
      }
    }
    if (setup_idx >= 0 && pfds[setup_idx].revents != 0) {
      if (ReadSetup()) setup_r_.reset();
      if (auto s = ProcessSetup(); !s.ok()) return s;
    }
    if (event_idx >= 0 && event_r_ && pfds[event_idx].revents != 0) {
      if (absl::Status s = ReadEvents(); !s.ok()) return s;
    }
    if (pfds[0].revents != 0) exited = true;
    if (!exited && !timed_out_ && absl::Now() >= deadline_) {
      KillGroup();
      timed_out_ = true;
    }
  }
  return absl::OkStatus();
}

absl::Status ChildWatch::Drain() {
  // The child is gone: its pipe ends are closed, so the rest reads to EOF.
  if (setup_r_) {
    ReadSetup();
    setup_r_.reset();
  }
  if (auto s = ProcessSetup(); !s.ok()) return s;
  if (event_r_) {
    absl::StatusOr<bool> eof = reader_.ReadFrom(event_r_.get());
    if (!eof.ok()) return eof.status();
    event_r_.reset();
  }
  reader_.Finish();
  return absl::OkStatus();
}

void ChildWatch::MoveTo(ChildResult& result) {
  result.channel = reader_.stats();
  std::vector<proto::Event> child_events = reader_.TakeEvents();
  if (supervisor_) {
    result.syscalls = supervisor_->Counts();
    std::vector<proto::Event> blocked = supervisor_->TakeBlockedEvents();
    result.events.reserve(child_events.size() + blocked.size());
    size_t next = 0;
    for (size_t i = 0; i < blocked.size(); ++i) {
      const size_t at =
          std::min(i < blocked_positions_.size() ? blocked_positions_[i]
                                                 : child_events.size(),
                   child_events.size());
      while (next < at)
        result.events.push_back(std::move(child_events[next++]));
      result.events.push_back(std::move(blocked[i]));
    }
    while (next < child_events.size()) {
      result.events.push_back(std::move(child_events[next++]));
    }
  } else {
    result.events = std::move(child_events);
  }
  result.channel_tamper_attempts =
      supervisor_ ? supervisor_->channel_tamper_attempts() : 0;
}

// The error for a child that ended (or was killed) before its setup
// completed.
absl::Status SetupFailure(const Policy& policy, const ChildWatch& watch,
                          int wait_status) {
  if (!watch.setup_error().empty()) {
    return absl::InternalError(absl::StrCat(
        "sandbox setup failed in the child: ", watch.setup_error()));
  }
  if (watch.timed_out()) {
    return absl::DeadlineExceededError(
        absl::StrCat("sandbox setup did not finish within ",
                     absl::FormatDuration(policy.limits.wall_time)));
  }
  return absl::InternalError(absl::StrCat(
      "sandboxed child ended during setup (",
      WIFSIGNALED(wait_status)
          ? absl::StrCat("signal ", WTERMSIG(wait_status))
          : absl::StrCat("exit code ", WEXITSTATUS(wait_status)),
      watch.supervised() ? "" : ", before its seccomp listener was taken",
      ")"));
}

}  // namespace

absl::string_view ChildStatusName(ChildStatus status) {
  switch (status) {
    case ChildStatus::kOk:
      return "OK";
    case ChildStatus::kLoadFailed:
      return "LOAD_FAILED";
    case ChildStatus::kSignaled:
      return "SIGNALED";
    case ChildStatus::kTimeout:
      return "TIMEOUT";
    case ChildStatus::kMemoryLimit:
      return "MEMORY_LIMIT";
    case ChildStatus::kCpuLimit:
      return "CPU_LIMIT";
    case ChildStatus::kViolation:
      return "VIOLATION";
  }
  return "UNKNOWN";
}

absl::StatusOr<ChildResult> RunSandboxed(
    const Policy& policy, absl::FunctionRef<int(ChildContext&)> body) {
  // Everything that can fail or allocate much is prepared before fork().
  PreparedChild prepared;
  if (absl::Status s = PrepareChild(policy, prepared); !s.ok()) return s;
  const ChildPlan plan = prepared.Plan(policy);

  const absl::Time start = absl::Now();
  // The child is the first process of a new pid namespace: unshare() sets
  // the namespace this thread's next child is created in; the thread
  // returns to its own right after the fork.
  if (unshare(CLONE_NEWPID) != 0) return Errno("unshare(CLONE_NEWPID)");
  const pid_t pid = fork();
  const int fork_errno = errno;
  if (pid == 0) RunChild(plan, body);  // never returns
  if (setns(prepared.own_pidns, CLONE_NEWPID) != 0) {
    const int setns_errno = errno;
    if (pid > 0) ChildReaper reap(pid);
    errno = setns_errno;
    return Errno("setns(own pid namespace) after fork");
  }
  if (pid < 0) {
    errno = fork_errno;
    return Errno("fork");
  }

  ChildReaper reaper(pid);
  prepared.event_w.reset();
  prepared.setup_w.reset();
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return Errno("pidfd_open(child)");

  ChildWatch watch(policy, pid, std::move(pidfd), std::move(prepared.setup_r),
                   std::move(prepared.event_r),
                   start + policy.limits.wall_time);
  if (absl::Status s = watch.Watch(); !s.ok()) return s;
  const absl::Time end = absl::Now();
  if (absl::Status s = watch.Drain(); !s.ok()) return s;

  int wait_status = 0;
  rusage usage{};
  pid_t waited;
  do {
    waited = wait4(pid, &wait_status, __WALL, &usage);
  } while (waited < 0 && errno == EINTR);
  if (waited != pid) return Errno("wait4(child)");
  reaper.Disarm();
  if (!watch.setup_done()) return SetupFailure(policy, watch, wait_status);

  ChildResult result;
  result.wall_ms = absl::ToDoubleMilliseconds(end - start);
  result.cpu_ms = ToMs(usage.ru_utime) + ToMs(usage.ru_stime);
  result.max_rss_kib = static_cast<uint64_t>(usage.ru_maxrss);
  result.fs_isolation = prepared.use_landlock ? FsIsolation::kLandlock
                                              : FsIsolation::kMountNamespace;
  result.landlock_abi = prepared.landlock_abi;
  const uint32_t status_word =
      __atomic_load_n(prepared.status_page.word(), __ATOMIC_SEQ_CST);
  const bool out_of_memory = (status_word & kStatusOutOfMemory) != 0;
  const int fatal_signal = (status_word >> kStatusSignalShift) & 0xff;
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == kExitFatalSignal &&
      fatal_signal > 0 && fatal_signal < 65) {
    wait_status = fatal_signal;  // as if killed by it (see kFatalSignals)
  }
  Classify(policy, wait_status, watch.timed_out(), out_of_memory, &result);
  watch.MoveTo(result);
  AddChannelFindings(result.channel, result.channel_tamper_attempts, &result);
  return result;
}

absl::StatusOr<FsIsolation> ResolveFsIsolation(FsIsolation requested,
                                               int landlock_abi) {
  switch (requested) {
    case FsIsolation::kAuto:
      return landlock_abi >= 1 ? FsIsolation::kLandlock
                               : FsIsolation::kMountNamespace;
    case FsIsolation::kLandlock:
      if (landlock_abi < 1) {
        return absl::FailedPreconditionError(
            "Landlock requested but not supported by this kernel");
      }
      return FsIsolation::kLandlock;
    case FsIsolation::kMountNamespace:
      return FsIsolation::kMountNamespace;
  }
  return absl::InvalidArgumentError("unknown FsIsolation");
}

proto::ChildExit ToProto(const ChildResult& result) {
  proto::ChildExit out;
  switch (result.status) {
    case ChildStatus::kOk:
      out.set_status(proto::ChildExit::OK);
      break;
    case ChildStatus::kLoadFailed:
      out.set_status(proto::ChildExit::LOAD_FAILED);
      break;
    case ChildStatus::kSignaled:
      out.set_status(proto::ChildExit::SIGNALED);
      break;
    case ChildStatus::kTimeout:
      out.set_status(proto::ChildExit::TIMEOUT);
      break;
    case ChildStatus::kMemoryLimit:
      out.set_status(proto::ChildExit::MEMORY_LIMIT);
      break;
    case ChildStatus::kCpuLimit:
      out.set_status(proto::ChildExit::CPU_LIMIT);
      break;
    case ChildStatus::kViolation:
      out.set_status(proto::ChildExit::VIOLATION);
      break;
  }
  out.set_exit_code(result.exit_code);
  out.set_signal(result.signal);
  out.set_reason(result.reason);
  out.set_wall_ms(result.wall_ms);
  out.set_cpu_ms(result.cpu_ms);
  out.set_max_rss_kib(result.max_rss_kib);
  return out;
}

SandboxSupport ProbeSandboxSupport() {
  SandboxSupport support;
  support.landlock_abi = LandlockAbi();
  seccomp_notif_sizes sizes{};
  support.user_notification =
      syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0;
  UniqueFd self(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
  support.pidfd = self.valid();
  support.root = geteuid() == 0;
  return support;
}

}  // namespace dynahug::sandbox

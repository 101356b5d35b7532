#include "sandbox/child_launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
#include <sys/time.h>
#include <grp.h>
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
constexpr int kLandlockFd = 5;
constexpr int kListenerFd = 5;
constexpr int kExitSetupFailed = 121;

// Status word shared (MAP_SHARED) between parent and child.
constexpr uint32_t kStatusOutOfMemory = 1u << 0;

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
  uint64_t rights = LANDLOCK_ACCESS_FS_WRITE_FILE |
                    LANDLOCK_ACCESS_FS_REMOVE_DIR |
                    LANDLOCK_ACCESS_FS_REMOVE_FILE |
                    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
                    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                    LANDLOCK_ACCESS_FS_MAKE_FIFO |
                    LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  return rights;
}

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, " failed: ", strerror(errno)));
}

// Builds the Landlock ruleset in the parent: writes are handled (denied)
// everywhere except under `scratch` and on /dev/null; reads are not handled,
// so they stay allowed. ABI >= 4: TCP bind/connect handled with no rule
// (denied). ABI >= 6: signals and abstract unix sockets scoped to the domain.
absl::StatusOr<UniqueFd> BuildLandlockRuleset(int abi,
                                              const std::string& scratch) {
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
  UniqueFd ruleset(static_cast<int>(
      syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0)));
  if (!ruleset) return Errno("landlock_create_ruleset");

  auto add_path = [&](const std::string& path,
                      uint64_t rights) -> absl::Status {
    UniqueFd target(open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!target) return Errno(absl::StrCat("open(", path, ", O_PATH)"));
    landlock_path_beneath_attr rule{};
    rule.allowed_access = rights;
    rule.parent_fd = target.get();
    if (syscall(SYS_landlock_add_rule, ruleset.get(),
                LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) {
      return Errno(absl::StrCat("landlock_add_rule(", path, ")"));
    }
    return absl::OkStatus();
  };
  if (auto s = add_path(scratch, write_rights); !s.ok()) return s;
  uint64_t file_rights = LANDLOCK_ACCESS_FS_WRITE_FILE;
  if (abi >= 3) file_rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (auto s = add_path("/dev/null", file_rights); !s.ok()) return s;
  return ruleset;
}

// The compiled seccomp program, cached per option set (building it with
// libseccomp costs more than a fork).
absl::StatusOr<std::vector<sock_filter>> CachedFilter(
    const SeccompPolicyOptions& options) {
  static std::mutex mu;
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

// A per-child scratch directory, removed (recursively, never following
// symlinks or crossing mounts) on destruction.
class ScratchDir {
 public:
  static absl::StatusOr<ScratchDir> Create(const std::string& parent) {
    std::string tmpl = absl::StrCat(parent, "/dynahug-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      return Errno(absl::StrCat("mkdtemp(", tmpl, ")"));
    }
    return ScratchDir(std::move(tmpl));
  }
  ScratchDir(ScratchDir&& other) noexcept
      : path_(std::exchange(other.path_, "")) {}
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir() {
    if (path_.empty()) return;
    nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int type, FTW*) {
          if (type == FTW_DP) {
            rmdir(p);
          } else {
            unlink(p);
          }
          return 0;
        },
        16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  }
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

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

[[noreturn]] void ChildFail(const char* what, int err) {
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

// Overwrites the environment block the kernel exposes as /proc/self/environ
// (inherited from whoever exec'ed the zygote) with the scrubbed environment,
// zero-padded.
void ScrubKernelEnvironBlock(const std::vector<std::string>& env) {
  char stat[4096];
  if (ReadSmallFile("/proc/self/stat", stat, sizeof stat) <= 0) {
    ChildFail("read(/proc/self/stat)", errno);
  }
  const char* p = strrchr(stat, ')');
  ChildCheck(p != nullptr, "parse(/proc/self/stat)");
  // Field 3 starts after ") "; env_start and env_end are fields 50 and 51.
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
  ChildCheck(field > 51, "parse(/proc/self/stat) env fields");
  char* start = reinterpret_cast<char*>(fields[50]);
  char* end = reinterpret_cast<char*>(fields[51]);
  if (start == nullptr || end <= start) return;
  const size_t size = static_cast<size_t>(end - start);
  size_t pos = 0;
  for (const std::string& kv : env) {
    if (pos + kv.size() + 1 > size) break;
    memcpy(start + pos, kv.c_str(), kv.size() + 1);
    pos += kv.size() + 1;
  }
  memset(start + pos, 0, size - pos);
}

void SetLimit(int resource, rlim_t soft, rlim_t hard, const char* what) {
  rlimit limit{soft, hard};
  ChildCheck(setrlimit(resource, &limit) == 0, what);
}

// Drops every capability and, with `run_as`, switches to that uid/gid.
void DropPrivileges(const std::optional<RunAs>& run_as, pid_t parent_pid) {
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
  ChildCheck(prctl(PR_SET_SECUREBITS,
                   SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                       SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
                       SECBIT_KEEP_CAPS_LOCKED,
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
    if (getppid() != parent_pid) _exit(kExitSetupFailed);
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  ChildCheck(syscall(SYS_capset, &header, data) == 0, "capset");
}

struct ChildPlan {
  const Policy* policy;
  pid_t parent_pid;
  int event_w;
  int setup_w;
  int landlock_fd;  // -1 in mount-namespace mode
  int stderr_fd;    // -1 unless inherit_stderr
  int netns_fd;     // shared empty network namespace, or -1 for a new one
  bool mount_namespace;
  const std::string* scratch;
  const std::vector<std::string>* env;
  char** envp;
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

[[noreturn]] void RunChild(const ChildPlan& plan,
                           absl::FunctionRef<int(ChildContext&)> body) {
  const Policy& policy = *plan.policy;

  g_child_setup_fd = plan.setup_w;
  // 1. Session, parent-death signal, signals.
  if (setsid() < 0) _exit(kExitSetupFailed);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) _exit(kExitSetupFailed);
  if (getppid() != plan.parent_pid) _exit(kExitSetupFailed);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction action {};
    action.sa_handler = sig == SIGXFSZ ? SIG_IGN : SIG_DFL;
    sigaction(sig, &action, nullptr);  // EINVAL for glibc-internal signals
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  // 2. Namespaces (before the descriptor cleanup closes the netns fd).
  int flags = CLONE_NEWUTS;
  if (plan.mount_namespace) flags |= CLONE_NEWNS;
  if (plan.netns_fd >= 0) {
    ChildCheck(setns(plan.netns_fd, CLONE_NEWNET) == 0,
               "setns(shared empty network namespace)");
  } else {
    flags |= CLONE_NEWNET;
  }
  ChildCheck(unshare(flags) == 0, "unshare(CLONE_NEWNET|CLONE_NEWUTS)");
  const std::string& hostname = policy.identity.hostname;
  ChildCheck(sethostname(hostname.data(), hostname.size()) == 0,
             "sethostname");

  // 3. Descriptors: move the kept ones out of the way, then to their fixed
  // numbers, then close everything else.
  int keep[4] = {plan.event_w, plan.setup_w, plan.landlock_fd, plan.stderr_fd};
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
  ChildCheck(dup2(devnull, 0) == 0 && dup2(devnull, 1) == 1,
             "dup2(/dev/null)");
  ChildCheck(dup2(keep[3] >= 0 ? keep[3] : devnull, 2) == 2, "dup2(stderr)");
  if (keep[2] >= 0) {
    ChildCheck(dup2(keep[2], kLandlockFd) == kLandlockFd, "dup2(landlock)");
    ChildCheck(syscall(SYS_close_range, kLandlockFd + 1, ~0u, 0) == 0,
               "close_range");
  } else {
    ChildCheck(syscall(SYS_close_range, kSetupFd + 1, ~0u, 0) == 0,
               "close_range");
  }
  // dup2 clears FD_CLOEXEC; set it again (exec is denied anyway).
  for (int fd = 0; fd <= (keep[2] >= 0 ? kLandlockFd : kSetupFd); ++fd) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
  }

  // 4. Filesystem (mount-namespace mode; Landlock is applied in step 7).
  if (plan.mount_namespace) {
    ChildCheck(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
               "mount(/, MS_REC|MS_PRIVATE)");
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY;
    ChildCheck(syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr,
                       sizeof attr) == 0,
               "mount_setattr(/, AT_RECURSIVE, MOUNT_ATTR_RDONLY)");
    char options[96];
    snprintf(options, sizeof options, "size=%llu,mode=0700,uid=%u,gid=%u",
             static_cast<unsigned long long>(policy.limits.scratch_bytes),
             policy.run_as ? policy.run_as->uid : 0u,
             policy.run_as ? policy.run_as->gid : 0u);
    ChildCheck(mount("tmpfs", plan.scratch->c_str(), "tmpfs",
                     MS_NOSUID | MS_NODEV, options) == 0,
               "mount(tmpfs on scratch)");
  }

  // 5. cwd and limits.
  ChildCheck(chdir(plan.scratch->c_str()) == 0, "chdir(scratch)");
  {
    char statm[256];
    ChildCheck(ReadSmallFile("/proc/self/statm", statm, sizeof statm) > 0,
               "read(/proc/self/statm)");
    const rlim_t vm_bytes = strtoull(statm, nullptr, 10) *
                            static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
    const rlim_t memory = vm_bytes + policy.limits.memory_bytes;
    SetLimit(RLIMIT_AS, memory, memory, "setrlimit(RLIMIT_AS)");
    SetLimit(RLIMIT_DATA, memory, memory, "setrlimit(RLIMIT_DATA)");
  }
  SetLimit(RLIMIT_CPU, policy.limits.cpu_seconds,
           policy.limits.cpu_seconds + 1, "setrlimit(RLIMIT_CPU)");
  SetLimit(RLIMIT_FSIZE, policy.limits.file_size_bytes,
           policy.limits.file_size_bytes, "setrlimit(RLIMIT_FSIZE)");
  SetLimit(RLIMIT_NOFILE, policy.limits.open_files, policy.limits.open_files,
           "setrlimit(RLIMIT_NOFILE)");
  SetLimit(RLIMIT_NPROC, policy.limits.processes, policy.limits.processes,
           "setrlimit(RLIMIT_NPROC)");
  SetLimit(RLIMIT_CORE, 0, 0, "setrlimit(RLIMIT_CORE)");
  SetLimit(RLIMIT_MSGQUEUE, 0, 0, "setrlimit(RLIMIT_MSGQUEUE)");

  // 6. Environment.
  ScrubKernelEnvironBlock(*plan.env);
  environ = plan.envp;

  // 7. Privileges, Landlock, capabilities.
  ChildCheck(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0,
             "prctl(PR_SET_NO_NEW_PRIVS)");
  if (plan.landlock_fd >= 0) {
    ChildCheck(syscall(SYS_landlock_restrict_self, kLandlockFd, 0) == 0,
               "landlock_restrict_self");
    close(kLandlockFd);
  }
  ChildCheck(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0,
             "prctl(PR_SET_DUMPABLE, 0)");
  DropPrivileges(policy.run_as, plan.parent_pid);

  g_child_status_word = plan.status_word;
  std::set_new_handler(ChildNewHandler);

  // 8. Seccomp, last. The parent fetches the listener with pidfd_getfd()
  // when the child says "R". With the hot set allowed, write() does not wait
  // for the supervisor, so "R" is sent once the listener exists. When every
  // syscall is notified, "R" must go first and the parent retries
  // pidfd_getfd() until the listener appears.
  const bool write_is_free = policy.seccomp.allow_hot_syscalls_unrecorded;
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

  EventWriter writer(UniqueFd(kEventFd), policy.channel);
  ChildContext ctx = ChildContextAccess::Make(&writer, plan.scratch, plan.env,
                                              plan.status_word);
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
  writer.Close(absl::Seconds(2));
  _exit(rc & 0xff);
}

// ---------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------

std::vector<std::string> BuildEnvironment(const Policy& policy,
                                          const std::string& scratch) {
  const Identity& id = policy.identity;
  return {
      absl::StrCat("HOME=", scratch),     absl::StrCat("TMPDIR=", scratch),
      absl::StrCat("PWD=", scratch),      absl::StrCat("USER=", id.user),
      absl::StrCat("LOGNAME=", id.user),  absl::StrCat("HOSTNAME=", id.hostname),
      absl::StrCat("PATH=", id.path),     absl::StrCat("LANG=", id.lang),
      absl::StrCat("SHELL=", id.shell),
  };
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
    result->reason =
        absl::StrCat("wall-clock limit ",
                     absl::ToInt64Milliseconds(policy.limits.wall_time),
                     " ms exceeded");
    return;
  }
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    result->signal = sig;
    if (sig == SIGXCPU ||
        (sig == SIGKILL && result->cpu_ms >= static_cast<double>(cpu_limit_ms))) {
      result->status = ChildStatus::kCpuLimit;
      result->reason = absl::StrCat("CPU limit ", policy.limits.cpu_seconds,
                                    " s exceeded (", sigabbrev_np(sig), ")");
    } else if (out_of_memory) {
      result->status = ChildStatus::kMemoryLimit;
      result->reason = absl::StrCat("memory limit reached: allocation failed, "
                                    "then killed by SIG", sigabbrev_np(sig));
    } else if (sig == SIGSYS) {
      result->status = ChildStatus::kViolation;
      result->reason = "killed by the seccomp filter (SIGSYS): syscall from a "
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
    result->reason = absl::StrCat("memory limit reached: allocation failed, "
                                  "exit code ", result->exit_code);
  } else {
    result->status = ChildStatus::kLoadFailed;
    result->reason = result->exit_code == kExitUncaughtException
                         ? "uncaught C++ exception in the child"
                         : absl::StrCat("exit code ", result->exit_code);
  }
}

}  // namespace

absl::string_view ChildStatusName(ChildStatus status) {
  switch (status) {
    case ChildStatus::kOk: return "OK";
    case ChildStatus::kLoadFailed: return "LOAD_FAILED";
    case ChildStatus::kSignaled: return "SIGNALED";
    case ChildStatus::kTimeout: return "TIMEOUT";
    case ChildStatus::kMemoryLimit: return "MEMORY_LIMIT";
    case ChildStatus::kCpuLimit: return "CPU_LIMIT";
    case ChildStatus::kViolation: return "VIOLATION";
  }
  return "UNKNOWN";
}

absl::StatusOr<ChildResult> RunSandboxed(
    const Policy& policy, absl::FunctionRef<int(ChildContext&)> body) {
  // Everything that can fail or allocate much is prepared before fork().
  absl::StatusOr<std::vector<sock_filter>> filter =
      CachedFilter(policy.seccomp);
  if (!filter.ok()) return filter.status();

  const int abi = LandlockAbi();
  bool use_landlock = false;
  switch (policy.fs_isolation) {
    case FsIsolation::kAuto: use_landlock = abi >= 1; break;
    case FsIsolation::kLandlock:
      if (abi < 1) {
        return absl::FailedPreconditionError(
            "Landlock requested but not supported by this kernel");
      }
      use_landlock = true;
      break;
    case FsIsolation::kMountNamespace: use_landlock = false; break;
  }

  absl::StatusOr<ScratchDir> scratch = ScratchDir::Create(policy.scratch_parent);
  if (!scratch.ok()) return scratch.status();
  if (policy.run_as &&
      chown(scratch->path().c_str(), policy.run_as->uid, policy.run_as->gid) !=
          0) {
    return Errno(absl::StrCat("chown(", scratch->path(), ")"));
  }
  UniqueFd landlock;
  if (use_landlock) {
    absl::StatusOr<UniqueFd> ruleset =
        BuildLandlockRuleset(abi, scratch->path());
    if (!ruleset.ok()) return ruleset.status();
    landlock = *std::move(ruleset);
  }

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Errno("pipe2(event channel)");
  UniqueFd event_r(fds[0]), event_w(fds[1]);
  if (pipe2(fds, O_CLOEXEC) != 0) return Errno("pipe2(setup)");
  UniqueFd setup_r(fds[0]), setup_w(fds[1]);
  (void)fcntl(event_r.get(), F_SETPIPE_SZ, 1 << 20);  // best effort
  for (int fd : {event_r.get(), setup_r.get()}) {
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return Errno("fcntl(O_NONBLOCK)");
  }

  int netns_fd = -1;
  if (!policy.fresh_network_namespace) {
    absl::StatusOr<int> shared = SharedEmptyNetns();
    if (!shared.ok()) return shared.status();
    netns_fd = *shared;
  }

  const std::vector<std::string> env = BuildEnvironment(policy, scratch->path());
  std::vector<char*> envp;
  for (const std::string& kv : env) envp.push_back(const_cast<char*>(kv.c_str()));
  envp.push_back(nullptr);
  SharedStatus status_page;
  if (status_page.word() == nullptr) return Errno("mmap(shared status)");

  ChildPlan plan{&policy,
                 getpid(),
                 event_w.get(),
                 setup_w.get(),
                 landlock.get(),
                 policy.inherit_stderr ? STDERR_FILENO : -1,
                 netns_fd,
                 !use_landlock,
                 &scratch->path(),
                 &env,
                 envp.data(),
                 &*filter,
                 status_page.word()};

  const absl::Time start = absl::Now();
  const pid_t pid = fork();
  if (pid < 0) return Errno("fork");
  if (pid == 0) RunChild(plan, body);  // never returns

  ChildReaper reaper(pid);
  event_w.reset();
  setup_w.reset();
  landlock.reset();
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return Errno("pidfd_open(child)");

  EventReader reader(policy.channel);
  std::optional<SyscallSupervisor> supervisor;
  std::string setup_messages;
  bool setup_done = false;
  bool timed_out = false;
  bool exited = false;
  const absl::Time deadline = start + policy.limits.wall_time;

  auto kill_group = [&] {
    syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    kill(-pid, SIGKILL);  // the pgid cannot be reused: the child is unreaped
  };
  auto take_listener = [&]() -> absl::Status {
    // The child announced the filter; fetch the listener as soon as it
    // exists. The child cannot proceed past its next notified syscall
    // without us, so this normally takes microseconds.
    while (true) {
      const long fd = syscall(SYS_pidfd_getfd, pidfd.get(), kListenerFd, 0);
      if (fd >= 0) {
        UniqueFd listener(static_cast<int>(fd));
        if (IsSeccompListener(listener.get())) {
          SupervisorOptions options;
          options.start_marker_fd = kSetupFd;
          supervisor.emplace(std::move(listener), pid, options);
          return absl::OkStatus();
        }
      } else if (errno != EBADF) {
        return Errno("pidfd_getfd(seccomp listener)");
      }
      pollfd pfd{pidfd.get(), POLLIN, 0};
      if (poll(&pfd, 1, 0) > 0) return absl::OkStatus();  // child died
      if (absl::Now() >= deadline) return absl::OkStatus();
      sched_yield();
    }
  };
  // The setup pipe carries one-letter tokens: 'R' (listener ready), 'K'
  // (setup complete), or 'E' followed by an error message up to EOF.
  std::string setup_error;
  bool listener_ready = false;
  size_t setup_parsed = 0;
  auto process_setup = [&]() -> absl::Status {
    while (setup_parsed < setup_messages.size() && setup_error.empty()) {
      const char token = setup_messages[setup_parsed];
      if (token == 'E') {
        setup_error = setup_messages.substr(setup_parsed + 1);
        if (setup_error.empty()) return absl::OkStatus();  // more to come
        break;
      }
      ++setup_parsed;
      if (token == 'R') listener_ready = true;
      if (token == 'K') setup_done = true;
    }
    if (!setup_error.empty()) {
      setup_error = setup_messages.substr(setup_parsed + 1);
      return absl::OkStatus();
    }
    if (listener_ready && !supervisor) return take_listener();
    return absl::OkStatus();
  };
  auto read_setup = [&]() -> bool {  // true at EOF
    char buf[512];
    while (true) {
      const ssize_t n = read(setup_r.get(), buf, sizeof buf);
      if (n > 0) {
        if (setup_messages.size() < 4096) setup_messages.append(buf, n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n == 0;
    }
  };

  bool listener_open = true;
  // For each BLOCKED event, how many child events precede it: the child is
  // stopped in a notified syscall until it is answered, so every event it
  // wrote before the syscall is already in the pipe. Reading the pipe before
  // answering puts the denial right after the events that led to it.
  std::vector<size_t> blocked_positions;
  while (!exited) {
    pollfd pfds[4];
    int n = 0;
    pfds[n++] = {pidfd.get(), POLLIN, 0};
    const int setup_idx = setup_r ? n : -1;
    if (setup_r) pfds[n++] = {setup_r.get(), POLLIN, 0};
    const int event_idx = event_r ? n : -1;
    if (event_r) pfds[n++] = {event_r.get(), POLLIN, 0};
    const int listener_idx = supervisor && listener_open ? n : -1;
    if (listener_idx >= 0) pfds[n++] = {supervisor->fd(), POLLIN, 0};

    int timeout_ms = -1;
    if (!timed_out) {
      const absl::Duration left = deadline - absl::Now();
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
        if (event_r && event_idx >= 0 && pfds[event_idx].revents != 0) {
          absl::StatusOr<bool> eof = reader.ReadFrom(event_r.get());
          if (!eof.ok()) return eof.status();
          if (*eof) event_r.reset();
        }
        const size_t blocked_before = supervisor->blocked_event_count();
        if (auto s = supervisor->HandleOne(); !s.ok()) return s;
        if (supervisor->blocked_event_count() > blocked_before) {
          blocked_positions.push_back(reader.events().size());
        }
      } else if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
        listener_open = false;  // every task using the filter is gone
      }
    }
    if (setup_idx >= 0 && pfds[setup_idx].revents != 0) {
      if (read_setup()) setup_r.reset();
      if (auto s = process_setup(); !s.ok()) return s;
    }
    if (event_idx >= 0 && event_r && pfds[event_idx].revents != 0) {
      absl::StatusOr<bool> eof = reader.ReadFrom(event_r.get());
      if (!eof.ok()) return eof.status();
      if (*eof) event_r.reset();
    }
    if (pfds[0].revents != 0) exited = true;
    if (!exited && !timed_out && absl::Now() >= deadline) {
      kill_group();
      timed_out = true;
    }
  }
  const absl::Time end = absl::Now();

  // The child is gone: its pipe ends are closed, so the rest reads to EOF.
  if (setup_r) {
    read_setup();
    setup_r.reset();
  }
  if (auto s = process_setup(); !s.ok()) return s;
  if (event_r) {
    absl::StatusOr<bool> eof = reader.ReadFrom(event_r.get());
    if (!eof.ok()) return eof.status();
    event_r.reset();
  }
  reader.Finish();

  int wait_status = 0;
  rusage usage{};
  pid_t waited;
  do {
    waited = wait4(pid, &wait_status, __WALL, &usage);
  } while (waited < 0 && errno == EINTR);
  if (waited != pid) return Errno("wait4(child)");
  reaper.Disarm();

  if (!setup_done) {
    if (!setup_error.empty()) {
      return absl::InternalError(
          absl::StrCat("sandbox setup failed in the child: ", setup_error));
    }
    if (timed_out) {
      return absl::DeadlineExceededError(absl::StrCat(
          "sandbox setup did not finish within ",
          absl::FormatDuration(policy.limits.wall_time)));
    }
    return absl::InternalError(absl::StrCat(
        "sandboxed child ended during setup (",
        WIFSIGNALED(wait_status)
            ? absl::StrCat("signal ", WTERMSIG(wait_status))
            : absl::StrCat("exit code ", WEXITSTATUS(wait_status)),
        supervisor ? "" : ", before its seccomp listener was taken", ")"));
  }

  ChildResult result;
  result.wall_ms = absl::ToDoubleMilliseconds(end - start);
  result.cpu_ms = ToMs(usage.ru_utime) + ToMs(usage.ru_stime);
  result.max_rss_kib = static_cast<uint64_t>(usage.ru_maxrss);
  result.fs_isolation =
      use_landlock ? FsIsolation::kLandlock : FsIsolation::kMountNamespace;
  result.landlock_abi = use_landlock ? abi : 0;
  const bool out_of_memory =
      (__atomic_load_n(status_page.word(), __ATOMIC_SEQ_CST) &
       kStatusOutOfMemory) != 0;
  Classify(policy, wait_status, timed_out, out_of_memory, &result);
  result.channel = reader.stats();
  std::vector<proto::Event> child_events = reader.TakeEvents();
  if (supervisor) {
    result.syscalls = supervisor->Counts();
    std::vector<proto::Event> blocked = supervisor->TakeBlockedEvents();
    result.events.reserve(child_events.size() + blocked.size());
    size_t next = 0;
    for (size_t i = 0; i < blocked.size(); ++i) {
      const size_t at = std::min(i < blocked_positions.size()
                                     ? blocked_positions[i]
                                     : child_events.size(),
                                 child_events.size());
      while (next < at) result.events.push_back(std::move(child_events[next++]));
      result.events.push_back(std::move(blocked[i]));
    }
    while (next < child_events.size()) {
      result.events.push_back(std::move(child_events[next++]));
    }
  } else {
    result.events = std::move(child_events);
  }
  return result;
}

proto::ChildExit ToProto(const ChildResult& result) {
  proto::ChildExit out;
  switch (result.status) {
    case ChildStatus::kOk: out.set_status(proto::ChildExit::OK); break;
    case ChildStatus::kLoadFailed:
      out.set_status(proto::ChildExit::LOAD_FAILED);
      break;
    case ChildStatus::kSignaled:
      out.set_status(proto::ChildExit::SIGNALED);
      break;
    case ChildStatus::kTimeout: out.set_status(proto::ChildExit::TIMEOUT); break;
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

// RunSandboxed: runs a callback in a forked, isolated child and reports how it
// ended, what it streamed back, and which system calls it made.
//
// The child is the first process (pid 1) of a new pid namespace, like a
// container's main process, and before `body` runs, in this order:
//   1. setsid() (own session and process group), PR_SET_PDEATHSIG(SIGKILL);
//      signal mask cleared, dispositions reset (SIGXFSZ ignored so that the
//      file-size limit fails writes with EFBIG instead of killing); fatal
//      signals get a handler that ends the child as that signal would
//      (pid 1 would otherwise ignore them).
//   2. An empty network namespace (only a down loopback; shared by this
//      process's children unless Policy::fresh_network_namespace), and new
//      mount, UTS (plausible hostname), IPC and cgroup namespaces.
//   3. Every descriptor closed except the event channel; 0/1/2 on /dev/null
//      (or the parent's stderr on 2 if Policy::inherit_stderr).
//   4. The filesystem in the child's mount namespace: every host mount
//      read-only, nosuid, nodev; a fresh read-only /proc showing only the
//      child; a minimal /dev; private tmpfs mounts on /tmp and /home (the
//      only writable places, bounded in bytes and inodes, gone with the
//      child); Identity::desktop_programs in ~/.local/bin;
//      Policy::visible_paths bound back where those hide them;
//      cwd = the home directory.
//   5. rlimits (CPU, address space, data, file size, open files, processes,
//      core 0, message queues 0).
//   6. A scrubbed, plausible environment (HOME=/home/<user>, PWD, USER,
//      LOGNAME, HOSTNAME, PATH, LANG, SHELL, DISPLAY, BROWSER, EDITOR,
//      VISUAL, PAGER: see Identity; nothing from the parent); the
//      original environment block the kernel exposes in /proc/self/environ
//      is overwritten with the scrubbed one (zero-padded); comm "python3".
//   7. PR_SET_NO_NEW_PRIVS; Landlock when the kernel has it (writes only
//      beneath the scratch mounts; ABI >= 4 also denies TCP bind/connect,
//      ABI >= 6 scopes signals and abstract unix sockets to the sandbox);
//      PR_SET_DUMPABLE 0, all capabilities dropped (effective/permitted/
//      inheritable, bounding set, ambient), securebits locked; with
//      Policy::run_as, an unprivileged uid/gid.
//   8. The seccomp filter (seccomp_policy.h), last, with a user-notification
//      listener that the parent takes with pidfd_getfd() and supervises.
// Any failure in 1-8 is a setup error: RunSandboxed returns a non-OK Status
// carrying the child's message, never a ChildResult.
//
// The parent polls the child's pidfd, the event channel and the seccomp
// listener in the calling thread (no threads are created), kills the whole
// process group at the wall-clock limit and reaps the child with wait4().
// No zombie or child outlives the call, also on error paths, and nothing the
// child wrote outlives it (its scratch is a tmpfs only its mount namespace
// holds).
//
// Preconditions: Linux >= 5.12 with seccomp user notification, pidfd_open,
// pidfd_getfd and mount_setattr; CAP_SYS_ADMIN/CAP_SYS_PTRACE (run as root)
// for the namespaces and pidfd_getfd on a non-dumpable child. The caller
// must not reap children it did not create (no waitpid(-1) /
// SIGCHLD=SIG_IGN in other threads).
//
// Thread safety: RunSandboxed may be called from several threads at once;
// each call owns its child. fork() in a multithreaded parent copies only the
// calling thread: the child-side code before `body` avoids locks other than
// glibc malloc's (which fork() resets).
#ifndef DYNAHUG_SANDBOX_CHILD_LAUNCHER_H_
#define DYNAHUG_SANDBOX_CHILD_LAUNCHER_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/dynahug.pb.h"
#include "sandbox/event_channel.h"
#include "sandbox/seccomp_policy.h"

namespace dynahug::sandbox {

// Filesystem confinement. The read-only mount namespace with tmpfs scratch
// is always used; Landlock is a second layer on top of it.
enum class FsIsolation {
  kAuto,            // mount namespace, plus Landlock if the kernel has it
  kLandlock,        // mount namespace plus Landlock; fail setup without it
  kMountNamespace,  // mount namespace only (what a kernel without Landlock
                    // gets; also for testing what it still guarantees)
};

// What `requested` means on a kernel with Landlock ABI `landlock_abi` (0:
// none): kLandlock (both layers) or kMountNamespace, or an error when
// Landlock is required but missing. Landlock's ABI level does not change
// the guarantees: the read-only mounts already cover what ABI < 3 lacks
// (truncate) and what no ABI covers (chmod, utimes, xattrs, file flags).
absl::StatusOr<FsIsolation> ResolveFsIsolation(FsIsolation requested,
                                               int landlock_abi);

struct Limits {
  // Wall-clock limit from fork to exit, including sandbox setup.
  absl::Duration wall_time = absl::Seconds(10);
  // RLIMIT_CPU soft limit, seconds (SIGXCPU); the hard limit is one more
  // second (SIGKILL).
  uint64_t cpu_seconds = 10;
  // Address-space headroom: RLIMIT_AS and RLIMIT_DATA are set to the
  // child's address-space size at setup plus this many bytes, so the
  // libraries a warm zygote already mapped do not count against the load.
  uint64_t memory_bytes = 2ull << 30;
  // RLIMIT_FSIZE, bytes.
  uint64_t file_size_bytes = 64ull << 20;
  // RLIMIT_NOFILE.
  uint64_t open_files = 1024;
  // RLIMIT_NPROC. Note: the kernel exempts uid 0 from it; the seccomp policy
  // is what stops process creation.
  uint64_t processes = 512;
  // Size of each scratch tmpfs (/tmp, /home), bytes.
  uint64_t scratch_bytes = 64ull << 20;
  // Files and directories each scratch tmpfs can hold.
  uint64_t scratch_inodes = 16384;
};

// What the child's environment claims to be: an ordinary desktop user's
// session, so that code looking for a browser, an editor or a pager finds
// one and tries to run it (an exec the seccomp policy denies and records)
// instead of giving up quietly.
struct Identity {
  std::string user = "user";
  std::string hostname = "workstation";
  std::string lang = "C.UTF-8";
  // PATH; ~/.local/bin is put first when desktop_programs is not empty.
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  std::string shell = "/bin/bash";
  // DISPLAY, BROWSER, EDITOR (and VISUAL), PAGER; empty: not set.
  std::string display = ":0";
  std::string browser = "xdg-open";
  std::string editor = "editor";
  std::string pager = "pager";
  // Executables created in ~/.local/bin (on the home tmpfs, so nothing on
  // the host changes): small shell scripts that exit 0, found by
  // shutil.which, webbrowser's browser registration and similar lookups.
  std::vector<std::string> desktop_programs = {
      "xdg-open",        "x-www-browser",   "www-browser",
      "sensible-browser", "sensible-editor", "sensible-pager",
      "editor",          "pager"};
};

// An unprivileged identity for the child.
struct RunAs {
  uid_t uid = 65534;  // nobody
  gid_t gid = 65534;  // nogroup
};

struct Policy {
  Limits limits;
  FsIsolation fs_isolation = FsIsolation::kAuto;
  Identity identity;
  // Host paths (files or directories) the child must still see at their
  // own location although a scratch mount (/tmp, /home) hides them, e.g.
  // the model file being loaded. Bound back read-only; paths that do not
  // exist or are not hidden are ignored.
  std::vector<std::string> visible_paths;
  EventChannelLimits channel;
  SeccompPolicyOptions seccomp;
  // false: children join one empty network namespace that this process
  // creates once (fast). true: each child unshares a new one (slower: about
  // 0.4 ms more per child here, plus asynchronous teardown work).
  bool fresh_network_namespace = false;
  // Run the child under this uid/gid (supplementary groups cleared) instead
  // of uid 0 without capabilities. Then it can read only what that identity
  // can (the model file must be readable by it) and cannot signal or inspect
  // any root process. The scratch directory is owned by it.
  std::optional<RunAs> run_as;
  // Keep the parent's stderr on fd 2 (debugging); /dev/null otherwise.
  bool inherit_stderr = false;
};

// What the body can use inside the child.
class ChildContext {
 public:
  // Events to stream to the parent.
  EventWriter& events() { return *events_; }
  // Absolute path of the child's home directory (also cwd): writable, on a
  // private tmpfs, like /tmp.
  const std::string& scratch_dir() const { return *scratch_dir_; }
  // The scrubbed environment, "KEY=value" (already installed in `environ`;
  // an embedded interpreter should rebuild os.environ from it).
  const std::vector<std::string>& environment() const { return *env_; }
  // Tells the parent that the body ran out of memory (for an allocator that
  // does not go through operator new, e.g. Python's MemoryError). The
  // launcher's own std::new_handler calls it too.
  void ReportOutOfMemory();

 private:
  friend class ChildContextAccess;
  ChildContext() = default;
  EventWriter* events_ = nullptr;
  const std::string* scratch_dir_ = nullptr;
  const std::vector<std::string>* env_ = nullptr;
  volatile uint32_t* status_word_ = nullptr;
};

enum class ChildStatus {
  kOk,           // exited 0
  kLoadFailed,   // exited non-zero
  kSignaled,     // died from a signal (crash, abort, ...)
  kTimeout,      // killed by the parent at the wall-clock limit
  kMemoryLimit,  // ran out of its address-space budget (see README)
  kCpuLimit,     // hit RLIMIT_CPU
  kViolation,    // killed by the seccomp filter (foreign syscall ABI)
};

absl::string_view ChildStatusName(ChildStatus status);

struct ChildResult {
  ChildStatus status = ChildStatus::kOk;
  int exit_code = 0;  // when exited
  int signal = 0;     // when killed by a signal
  std::string reason;
  double wall_ms = 0;
  double cpu_ms = 0;
  uint64_t max_rss_kib = 0;
  // Events from the body, in order, with the supervisor's BLOCKED events
  // (each denied syscall with its arguments, bounded) placed after the body
  // events that were in the pipe when the syscall was answered, i.e. after
  // the events the body wrote before making it (single-threaded bodies:
  // exactly; events a full channel held back in the child's buffer come
  // later), then the parent's INTEGRITY findings about the channel itself
  // ("sandbox.channel.*": tamper, corrupt, out_of_sequence, after_end,
  // dropped, no_end_marker), which the body cannot suppress.
  std::vector<proto::Event> events;
  ChannelStats channel;
  // Syscalls the body made (see seccomp_policy.h for what is counted).
  std::vector<SyscallCount> syscalls;
  // Which filesystem confinement was used (kLandlock or kMountNamespace).
  FsIsolation fs_isolation = FsIsolation::kAuto;
  int landlock_abi = 0;
  // Denied attempts of the body to write to, replace or close the event
  // channel (also reported as INTEGRITY "sandbox.channel.tamper").
  uint64_t channel_tamper_attempts = 0;
};

// Runs `body` in a sandboxed child (see the file comment). The body's return
// value is the child's exit code (0-255). Exceptions escaping `body` end the
// child with exit code kExitUncaughtException.
absl::StatusOr<ChildResult> RunSandboxed(
    const Policy& policy, absl::FunctionRef<int(ChildContext&)> body);

// Exit codes the launcher itself uses in the child.
inline constexpr int kExitUncaughtException = 120;
inline constexpr int kExitOutOfMemory = 122;

proto::ChildExit ToProto(const ChildResult& result);

// What this kernel/process supports (for logging and test skips).
struct SandboxSupport {
  int landlock_abi = 0;  // 0: none
  bool user_notification = false;
  bool pidfd = false;
  bool root = false;
};
SandboxSupport ProbeSandboxSupport();

}  // namespace dynahug::sandbox

#endif  // DYNAHUG_SANDBOX_CHILD_LAUNCHER_H_

#include "sandbox/seccomp_policy.h"

#include <errno.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "sandbox/unique_fd.h"

namespace dynahug::sandbox {
namespace {

// Syscalls that fail with EPERM whatever their arguments. Each is something a
// model load never needs and a payload uses to escape, persist, spy or
// tamper. The list is deliberately broad: with deny-and-record, a false
// positive costs one failed call that shows up in the trace, not a crash.
struct DenyRule {
  int nr;
  const char* why;
};
constexpr DenyRule kDenied[] = {
    // Process creation: the payload's commands must not run. Threads are
    // allowed (clone with CLONE_THREAD, handled in DecideSyscall).
    {SYS_fork, "process creation"},
    {SYS_vfork, "process creation"},
    {SYS_execve, "program execution"},
    {SYS_execveat, "program execution"},
    // Debugging/inspecting other processes, or the parent.
    {SYS_ptrace, "tracing other processes"},
    {SYS_process_vm_readv, "reading another process's memory"},
    {SYS_process_vm_writev, "writing another process's memory"},
    {SYS_kcmp, "comparing other processes' kernel objects"},
    {SYS_pidfd_open, "handles on other processes"},
    {SYS_pidfd_getfd, "stealing other processes' descriptors"},
    {SYS_pidfd_send_signal, "signalling through pidfds"},
    {SYS_process_madvise, "advising other processes' memory"},
    {SYS_migrate_pages, "moving other processes' memory"},
    {SYS_move_pages, "moving other processes' memory"},
    // Filesystem and namespace tampering (capabilities are dropped too; the
    // denial makes the attempt visible).
    {SYS_mount, "mounting"},
    {SYS_umount2, "unmounting"},
    {SYS_pivot_root, "changing the root"},
    {SYS_chroot, "changing the root"},
    {SYS_open_tree, "new mount API"},
    {SYS_move_mount, "new mount API"},
    {SYS_fsopen, "new mount API"},
    {SYS_fsconfig, "new mount API"},
    {SYS_fsmount, "new mount API"},
    {SYS_fspick, "new mount API"},
    {SYS_mount_setattr, "new mount API"},
    {SYS_unshare, "leaving the sandbox's namespaces"},
    {SYS_setns, "joining other namespaces"},
    {SYS_open_by_handle_at, "opening files by handle (bypasses paths)"},
    // Kernel attack surface with a history of exploits, not needed by loads.
    {SYS_init_module, "loading kernel modules"},
    {SYS_finit_module, "loading kernel modules"},
    {SYS_delete_module, "unloading kernel modules"},
    {SYS_bpf, "eBPF programs"},
    {SYS_perf_event_open, "performance counters (side channels, exploits)"},
    {SYS_userfaultfd, "userfaultfd (race-widening for exploits)"},
    {SYS_io_uring_setup, "io_uring (bypasses seccomp per-operation checks)"},
    {SYS_io_uring_enter, "io_uring"},
    {SYS_io_uring_register, "io_uring"},
    {SYS_keyctl, "kernel keyrings"},
    {SYS_add_key, "kernel keyrings"},
    {SYS_request_key, "kernel keyrings"},
    {SYS_kexec_load, "replacing the kernel"},
    {SYS_kexec_file_load, "replacing the kernel"},
    {SYS_reboot, "rebooting"},
    {SYS_swapon, "swap configuration"},
    {SYS_swapoff, "swap configuration"},
    {SYS_syslog, "kernel log"},
    {SYS_acct, "process accounting"},
    {SYS_quotactl, "disk quotas"},
    {SYS_vhangup, "terminal hangup"},
    {SYS_iopl, "raw I/O port access"},
    {SYS_ioperm, "raw I/O port access"},
    {SYS_uselib, "obsolete library loader"},
    {SYS_lookup_dcookie, "kernel profiling"},
    {SYS_fanotify_init, "filesystem-wide monitoring"},
    {SYS_sethostname, "host identity"},
    {SYS_setdomainname, "host identity"},
    // Clock changes affect the whole machine.
    {SYS_settimeofday, "setting the clock"},
    {SYS_clock_settime, "setting the clock"},
    {SYS_clock_adjtime, "adjusting the clock"},
    {SYS_adjtimex, "adjusting the clock"},
    // Network: the namespace is empty; these make attempts visible.
    {SYS_connect, "network connection"},
    {SYS_bind, "binding a socket"},
    {SYS_listen, "listening on a socket"},
    // sendmsg's destination address and SCM_RIGHTS descriptors live in
    // memory: a datagram to a host socket path (/dev/log, a daemon's socket)
    // or passing the event channel to a new descriptor number cannot be told
    // apart race-free. Loaders never need it.
    {SYS_sendmsg, "sendmsg (destination and descriptors not inspectable)"},
    // System V IPC and POSIX message queues name host-wide objects (the
    // child also has its own IPC namespace; the denial makes attempts
    // visible and covers kernels or setups where the namespace is shared).
    {SYS_shmget, "System V shared memory"},
    {SYS_shmat, "System V shared memory"},
    {SYS_shmctl, "System V shared memory"},
    {SYS_shmdt, "System V shared memory"},
    {SYS_msgget, "System V message queues"},
    {SYS_msgsnd, "System V message queues"},
    {SYS_msgrcv, "System V message queues"},
    {SYS_msgctl, "System V message queues"},
    {SYS_semget, "System V semaphores"},
    {SYS_semop, "System V semaphores"},
    {SYS_semtimedop, "System V semaphores"},
    {SYS_semctl, "System V semaphores"},
    {SYS_mq_open, "POSIX message queues"},
    {SYS_mq_unlink, "POSIX message queues"},
    {SYS_mq_timedsend, "POSIX message queues"},
    {SYS_mq_timedreceive, "POSIX message queues"},
    {SYS_mq_notify, "POSIX message queues"},
    {SYS_mq_getsetattr, "POSIX message queues"},
};

bool IsDenied(int nr) {
  for (const DenyRule& rule : kDenied) {
    if (rule.nr == nr) return true;
  }
  return false;
}

constexpr SyscallDecision kAllow{true, 0, false, false};
constexpr SyscallDecision kDenyEperm{false, EPERM, true, false};
constexpr SyscallDecision kChannelTamper{false, EPERM, true, true};

// Signal delivery is allowed only inside the child's own thread group / its
// process group (pid == child_pid, pgid == child_pid after setsid()).
SyscallDecision DecideSignalTarget(int64_t target, pid_t child_pid) {
  if (target == -1) return kDenyEperm;  // every process it may signal
  if (target == 0 || target == child_pid || target == -child_pid) return kAllow;
  return kDenyEperm;
}

bool IsFd(uint64_t arg, int fd) {
  return fd >= 0 && static_cast<int>(static_cast<uint32_t>(arg)) == fd;
}

// Calls that would let the body write to, replace, duplicate or close the
// event channel descriptor. Reads of it are harmless (nothing is ever sent
// to the child) and stay allowed.
bool TouchesChannel(int nr, const std::array<uint64_t, 6>& a, int fd) {
  if (fd < 0) return false;
  switch (nr) {
    case SYS_write:
    case SYS_writev:
    case SYS_pwrite64:
    case SYS_pwritev:
    case SYS_pwritev2:
    case SYS_sendto:
    case SYS_sendmsg:
    case SYS_vmsplice:
    case SYS_sendfile:  // out_fd first
    case SYS_close:
    case SYS_shutdown:
    case SYS_dup:
    case SYS_fcntl:
    case SYS_ioctl:
    case SYS_setsockopt:
    case SYS_fchmod:
    case SYS_fchown:
    case SYS_ftruncate:
    case SYS_fallocate:
      return IsFd(a[0], fd);
    case SYS_dup2:
    case SYS_dup3:
      return IsFd(a[0], fd) || IsFd(a[1], fd);
    case SYS_tee:
      return IsFd(a[1], fd);
    case SYS_splice:
    case SYS_copy_file_range:
      return IsFd(a[2], fd);
    case SYS_close_range: {
      const uint64_t first = static_cast<uint32_t>(a[0]);
      const uint64_t last = static_cast<uint32_t>(a[1]);
      return first <= static_cast<uint64_t>(fd) &&
             static_cast<uint64_t>(fd) <= last;
    }
    default:
      return false;
  }
}

}  // namespace

SyscallDecision DecideSyscall(const SyscallRequest& request,
                              const ChildView& child) {
  const int nr = request.nr;
  const auto& a = request.args;
  const pid_t child_pid = child.self_pid;
  if (TouchesChannel(nr, a, child.channel_fd)) return kChannelTamper;
  if (IsDenied(nr)) return kDenyEperm;
  switch (nr) {
    case SYS_clone:
      // Threads (CLONE_THREAD) are fine: torch and OpenMP need them. Any
      // other clone creates a process.
      return (a[0] & CLONE_THREAD) ? kAllow : kDenyEperm;
    case SYS_clone3:
      // clone3's flags live in memory (struct clone_args), which cannot be
      // inspected race-free. ENOSYS makes glibc fall back to clone(), whose
      // flags are in a register.
      return SyscallDecision{false, ENOSYS, false};
    case SYS_socket:
    case SYS_socketpair:
      // AF_UNIX stream/seqpacket only (local IPC some libraries set up); no
      // IP, netlink, packet or vsock sockets. No datagram sockets: they are
      // the one kind that can send to a host socket path without connect()
      // (sendto with an address, sendmsg with msg_name), and the mount
      // namespace does not hide socket files (/dev/log, daemons' sockets).
      return (static_cast<int>(a[0]) == AF_UNIX &&
              (static_cast<int>(a[1]) & 0xf) != SOCK_DGRAM)
                 ? kAllow
                 : kDenyEperm;
    case SYS_sendmmsg:
      // The launcher's event writer sends on the channel with sendmmsg (the
      // kernel filter lets that through without a round trip). Anywhere else
      // it has sendmsg's problems.
      return IsFd(a[0], child.channel_fd) ? kAllow : kDenyEperm;
    case SYS_sendto:
      // sendto with a destination address is a connectionless send to
      // somewhere; on connected sockets the address is NULL.
      return a[4] == 0 ? kAllow : kDenyEperm;
    case SYS_kill:
      return DecideSignalTarget(static_cast<int32_t>(a[0]), child_pid);
    case SYS_tgkill:
    case SYS_rt_sigqueueinfo:
    case SYS_rt_tgsigqueueinfo:
      // The thread-group id must be the child's own.
      return static_cast<int32_t>(a[0]) == child_pid ? kAllow : kDenyEperm;
    case SYS_tkill:
      // Obsolete; glibc uses tgkill. Allowed only for the main thread.
      return static_cast<int32_t>(a[0]) == child_pid ? kAllow : kDenyEperm;
    case SYS_personality:
      // Querying (0xffffffff) is harmless; changing the execution domain
      // (e.g. ADDR_NO_RANDOMIZE) weakens the process.
      return static_cast<uint32_t>(a[0]) == 0xffffffffu ? kAllow : kDenyEperm;
    case SYS_prlimit64:
      // Only the child's own limits; lowering is harmless, raising needs
      // CAP_SYS_RESOURCE, which is dropped.
      return (a[0] == 0 || static_cast<int32_t>(a[0]) == child_pid)
                 ? kAllow
                 : kDenyEperm;
    default:
      return kAllow;
  }
}

const std::vector<int>& HotSyscalls() {
  // Memory management, plain I/O on descriptors the child already has,
  // synchronisation and time: thousands of calls per load, no capability
  // beyond what the descriptors/mappings already give. Path-based calls
  // (openat, stat...), ioctl, and everything else stay recorded.
  static const std::vector<int>* const kHot = new std::vector<int>{
      SYS_read,
      SYS_write,
      SYS_pread64,
      SYS_pwrite64,
      SYS_readv,
      SYS_writev,
      SYS_lseek,
      SYS_fstat,
      SYS_munmap,
      SYS_brk,
      SYS_madvise,
      SYS_mremap,
      SYS_futex,
      SYS_sched_yield,
      SYS_rt_sigprocmask,
      SYS_getpid,
      SYS_gettid,
      SYS_clock_gettime,
      SYS_gettimeofday,
      SYS_clock_nanosleep,
      SYS_nanosleep,
      SYS_rseq,
      SYS_set_robust_list,
      SYS_poll,
      SYS_ppoll,
      SYS_epoll_wait,
      SYS_epoll_pwait,
      SYS_sched_getaffinity,
  };
  return *kHot;
}

absl::StatusOr<std::vector<sock_filter>> BuildSeccompFilter(
    const SeccompPolicyOptions& options) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_NOTIFY);
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  struct CtxGuard {
    scmp_filter_ctx ctx;
    ~CtxGuard() { seccomp_release(ctx); }
  } guard{ctx};

  auto check = [](int rc, const char* what) -> absl::Status {
    if (rc < 0) {
      return absl::InternalError(
          absl::StrCat("libseccomp: ", what, " failed: ", strerror(-rc)));
    }
    return absl::OkStatus();
  };
  // Another ABI (i386 int 0x80, x32) would slip past x86-64 syscall numbers.
  if (auto s = check(
          seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
          "seccomp_attr_set(ACT_BADARCH)");
      !s.ok()) {
    return s;
  }
  // The child sets PR_SET_NO_NEW_PRIVS itself; the program is only exported.
  if (auto s = check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0),
                     "seccomp_attr_set(CTL_NNP)");
      !s.ok()) {
    return s;
  }
  // Exit paths and signal returns never need a decision.
  for (int nr :
       {SYS_exit, SYS_exit_group, SYS_rt_sigreturn, SYS_restart_syscall}) {
    if (auto s = check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0),
                       "seccomp_rule_add(exit path)");
        !s.ok()) {
      return s;
    }
  }
  const int channel = options.channel_fd;
  if (channel >= 0 && options.allow_hot_syscalls_unrecorded) {
    // The event writer's syscall: no round trip per event.
    if (auto s =
            check(seccomp_rule_add(
                      ctx, SCMP_ACT_ALLOW, SCMP_SYS(sendmmsg), 1,
                      SCMP_A0(SCMP_CMP_EQ, static_cast<uint32_t>(channel), 0)),
                  "seccomp_rule_add(sendmmsg on the channel)");
        !s.ok()) {
      return s;
    }
  }
  if (options.allow_hot_syscalls_unrecorded) {
    for (int nr : HotSyscalls()) {
      const bool writes =
          nr == SYS_write || nr == SYS_writev || nr == SYS_pwrite64;
      // Writes to the channel descriptor fall through to NOTIFY, where
      // DecideSyscall denies them as tampering.
      const int rc =
          writes && channel >= 0
              ? seccomp_rule_add(
                    ctx, SCMP_ACT_ALLOW, nr, 1,
                    SCMP_A0(SCMP_CMP_NE, static_cast<uint32_t>(channel), 0))
              : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
      if (auto s = check(rc, "seccomp_rule_add(hot syscall)"); !s.ok()) {
        return s;
      }
    }
    // mmap/mprotect without PROT_EXEC: allowed silently. With PROT_EXEC
    // (loading native code, JIT, shellcode) they fall through to NOTIFY.
    if (auto s =
            check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                                   SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
                  "seccomp_rule_add(mmap)");
        !s.ok()) {
      return s;
    }
    if (auto s =
            check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                                   SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
                  "seccomp_rule_add(mprotect)");
        !s.ok()) {
      return s;
    }
  }

  // libseccomp 2.5 exports only to a descriptor: go through a memfd.
  UniqueFd memfd(static_cast<int>(
      syscall(SYS_memfd_create, "dynahug-seccomp", MFD_CLOEXEC)));
  if (!memfd) {
    return absl::InternalError(
        absl::StrCat("memfd_create failed: ", strerror(errno)));
  }
  if (auto s =
          check(seccomp_export_bpf(ctx, memfd.get()), "seccomp_export_bpf");
      !s.ok()) {
    return s;
  }
  struct stat st {};
  if (fstat(memfd.get(), &st) != 0) {
    return absl::InternalError(
        absl::StrCat("fstat(memfd) failed: ", strerror(errno)));
  }
  if (st.st_size <= 0 || st.st_size % sizeof(sock_filter) != 0 ||
      st.st_size / sizeof(sock_filter) > BPF_MAXINSNS) {
    return absl::InternalError(absl::StrCat("seccomp_export_bpf produced ",
                                            st.st_size,
                                            " bytes, not a valid BPF program"));
  }
  std::vector<sock_filter> program(st.st_size / sizeof(sock_filter));
  const ssize_t n =
      pread(memfd.get(), program.data(), static_cast<size_t>(st.st_size), 0);
  if (n != st.st_size) {
    return absl::InternalError(absl::StrCat(
        "pread(memfd) failed: ", n < 0 ? strerror(errno) : "short read"));
  }
  return program;
}

std::string SyscallName(int nr) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, nr);
  if (name == nullptr) return absl::StrCat("syscall_", nr);
  std::string result(name);
  free(name);
  return result;
}

proto::SyscallCount ToProto(const SyscallCount& count) {
  proto::SyscallCount out;
  out.set_name(count.name);
  out.set_number(static_cast<uint32_t>(count.number));
  out.set_count(count.count);
  out.set_denied(count.denied);
  return out;
}

}  // namespace dynahug::sandbox

// The seccomp-bpf policy of the sandboxed child, as data and a pure decision
// function.
//
// Split of responsibilities:
//  * The BPF filter (BuildSeccompFilter) is deliberately simple: a small set of
//    hot, harmless syscalls is allowed in the kernel without a round trip
//    (these are NOT counted, or counted only partially, see below); exit paths
//    are allowed; every other x86-64 syscall returns SECCOMP_RET_USER_NOTIF;
//    a syscall from another ABI (i386 `int 0x80`, x32) kills the process
//    (SIGSYS), which the launcher classifies as VIOLATION.
//  * The supervisor in the parent receives each notification and asks
//    DecideSyscall() whether to let it run (SECCOMP_USER_NOTIF_FLAG_CONTINUE)
//    or to fail it with an errno. Denied syscalls therefore cost one round
//    trip, are always recorded, and the load goes on.
//
// DecideSyscall looks only at register arguments (numbers, flags, pids),
// which the kernel copied into the notification: it is immune to the
// time-of-check/time-of-use races that make CONTINUE unsafe for decisions on
// pointer arguments. Pointer arguments (paths, sockaddrs) are never used for
// decisions; the namespaces and Landlock enforce those.
//
// Thread safety: all functions are pure or const; safe from any thread.
#ifndef DYNAHUG_SANDBOX_SECCOMP_POLICY_H_
#define DYNAHUG_SANDBOX_SECCOMP_POLICY_H_

#include <linux/filter.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/dynahug.pb.h"

namespace dynahug::sandbox {

// One syscall as the kernel reports it in a seccomp notification.
struct SyscallRequest {
  int nr = -1;
  std::array<uint64_t, 6> args{};
};

// The supervisor's answer.
struct SyscallDecision {
  // True: let the kernel run the syscall. False: fail it with `error`.
  bool allow = true;
  // errno returned to the child when !allow (EPERM, or ENOSYS for clone3).
  int error = 0;
  // Whether the attempt counts as a policy denial (SyscallCount::denied and a
  // BLOCKED event). False for clone3 -> ENOSYS, which only steers glibc to
  // its clone() fallback so that thread creation can be inspected.
  bool denied = false;
  // True when the call tried to use, duplicate, replace or close the event
  // channel descriptor: the body tampering with its own recording.
  bool channel_tamper = false;
};

// What the decisions need to know about the child.
struct ChildView {
  // The child's thread-group id as the child itself sees it: 1 when it is
  // the first process of its own pid namespace (the launcher's default).
  // kill/tgkill/prlimit targets are compared with it.
  pid_t self_pid = 1;
  // The event channel's descriptor number in the child, or -1. Only the
  // launcher's EventWriter may use it, and only through sendmmsg(2), which
  // the Python standard library does not expose: every other write to it,
  // and every close, dup, dup2/dup3 onto it, fcntl, ioctl, shutdown or
  // setsockopt of it, is denied and flagged as channel tampering.
  int channel_fd = -1;
};

// Decides one notified syscall of the child described by `child`.
SyscallDecision DecideSyscall(const SyscallRequest& request,
                              const ChildView& child);

// Options for the kernel-side filter.
struct SeccompPolicyOptions {
  // When false, every syscall except the exit paths is notified and counted
  // (exact counts, slower: one supervisor round trip per syscall).
  bool allow_hot_syscalls_unrecorded = true;
  // The event channel descriptor (ChildView::channel_fd), or -1. The hot
  // write syscalls (write, writev, pwrite64) are allowed in the kernel only
  // on other descriptors, so that a write to the channel is notified and
  // denied; sendmmsg(2) is allowed in the kernel only on the channel.
  int channel_fd = -1;
};

// The syscalls the filter allows without notification when
// `allow_hot_syscalls_unrecorded` is set; their counts are absent from the
// recording. mmap and mprotect are only partially in this set: calls WITHOUT
// PROT_EXEC are allowed silently, calls that request executable memory are
// notified, so their recorded counts mean "mmap/mprotect with PROT_EXEC".
const std::vector<int>& HotSyscalls();

// The x86-64 BPF program (see the file comment). Fails when libseccomp
// rejects a rule or the export fails.
absl::StatusOr<std::vector<sock_filter>> BuildSeccompFilter(
    const SeccompPolicyOptions& options);

// Kernel name of an x86-64 syscall ("openat"), or "syscall_<nr>".
std::string SyscallName(int nr);

// Per-syscall counts of the load phase.
struct SyscallCount {
  std::string name;
  int number = 0;
  // Times the child attempted the syscall (as seen by the supervisor).
  uint64_t count = 0;
  // Times the policy denied it.
  uint64_t denied = 0;
};

proto::SyscallCount ToProto(const SyscallCount& count);

}  // namespace dynahug::sandbox

#endif  // DYNAHUG_SANDBOX_SECCOMP_POLICY_H_

#include "sandbox/syscall_supervisor.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

// Linux 6.6: wake the notifying task on the supervisor's CPU (much lower
// round-trip latency). Older kernels reject it; that is harmless.
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

namespace dynahug::sandbox {
namespace {

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

SyscallSupervisor::SyscallSupervisor(UniqueFd listener,
                                     const SupervisorOptions& options)
    : listener_(std::move(listener)),
      options_(options),
      recording_(options.start_marker_fd < 0),
      start_ns_(MonotonicNs()),
      counts_(kMaxSyscall, 0),
      denied_(kMaxSyscall, 0) {
  if (listener_) {
    (void)ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
  }
}

absl::Status SyscallSupervisor::HandleOne() {
  seccomp_notif request;
  std::memset(&request, 0, sizeof request);
  while (ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, &request) != 0) {
    if (errno == EINTR) continue;
    // ENOENT: the task was killed between poll() and RECV.
    if (errno == ENOENT) return absl::OkStatus();
    return absl::InternalError(absl::StrCat(
        "ioctl(SECCOMP_IOCTL_NOTIF_RECV) failed: ", strerror(errno)));
  }
  ++notifications_;
  SyscallRequest call;
  call.nr = request.data.nr;
  for (int i = 0; i < 6; ++i) call.args[i] = request.data.args[i];
  const SyscallDecision decision = DecideSyscall(call, options_.child);
  if (decision.channel_tamper) ++channel_tamper_;

  const bool in_range = call.nr >= 0 && call.nr < kMaxSyscall;
  if (recording_ && in_range) {
    ++counts_[call.nr];
    if (decision.denied) ++denied_[call.nr];
    if (decision.denied &&
        blocked_events_.size() < options_.max_blocked_events) {
      proto::Event event;
      event.set_kind(proto::Event::BLOCKED);
      event.set_name(SyscallName(call.nr));
      event.set_blocked(true);
      event.set_count(1);
      event.set_timestamp_ns(static_cast<uint64_t>(MonotonicNs() - start_ns_));
      for (int i = 0; i < 6; ++i) {
        proto::Argument* arg = event.add_args();
        arg->set_key(absl::StrCat("arg", i));
        arg->set_value(absl::StrFormat("0x%x", call.args[i]));
      }
      proto::Argument* err = event.add_args();
      err->set_key("errno");
      err->set_value(strerrorname_np(decision.error));
      if (decision.channel_tamper) {
        proto::Argument* why = event.add_args();
        why->set_key("rule");
        why->set_value("event channel tampering");
      }
      blocked_events_.push_back(std::move(event));
    }
  }

  seccomp_notif_resp response;
  std::memset(&response, 0, sizeof response);
  response.id = request.id;
  if (decision.allow) {
    response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  } else {
    response.error = -decision.error;
  }
  while (ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &response) != 0) {
    if (errno == EINTR) continue;
    if (errno == ENOENT) break;  // the task died or was signalled meanwhile
    return absl::InternalError(absl::StrCat(
        "ioctl(SECCOMP_IOCTL_NOTIF_SEND) failed: ", strerror(errno)));
  }

  // The marker is counted from the next syscall on: the close() itself is
  // the launcher's, not the body's.
  if (!recording_ && call.nr == SYS_close &&
      static_cast<int>(call.args[0]) == options_.start_marker_fd) {
    recording_ = true;
    start_ns_ = MonotonicNs();
  }
  return absl::OkStatus();
}

std::vector<SyscallCount> SyscallSupervisor::Counts() const {
  std::vector<SyscallCount> out;
  for (int nr = 0; nr < kMaxSyscall; ++nr) {
    if (counts_[nr] == 0) continue;
    out.push_back(SyscallCount{SyscallName(nr), nr, counts_[nr], denied_[nr]});
  }
  return out;
}

}  // namespace dynahug::sandbox

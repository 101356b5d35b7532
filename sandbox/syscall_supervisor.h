// SyscallSupervisor: the parent's end of the seccomp user-notification
// listener of one sandboxed child.
//
// Each notification is one syscall the child is blocked in. The supervisor
// counts it, asks DecideSyscall(), and answers CONTINUE or an errno. Because
// the child cannot make a notified syscall without this round trip, the
// recording cannot be switched off from inside the child (the child can only
// add stricter filters; a dead supervisor makes notified syscalls fail with
// ENOSYS, it does not let them through).
//
// Recording starts at the "start marker": the first close(start_marker_fd)
// the child makes, which the launcher issues right before the body runs;
// syscalls before it (the launcher's own hand-off) are decided but not
// counted. Without a marker (start_marker_fd < 0) everything is counted.
//
// Thread safety: not thread-safe; one thread drives HandleOne().
#ifndef DYNAHUG_SANDBOX_SYSCALL_SUPERVISOR_H_
#define DYNAHUG_SANDBOX_SYSCALL_SUPERVISOR_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "proto/dynahug.pb.h"
#include "sandbox/seccomp_policy.h"
#include "sandbox/unique_fd.h"

namespace dynahug::sandbox {

struct SupervisorOptions {
  // Descriptor number (in the child) whose close() starts the recording.
  int start_marker_fd = -1;
  // Denied syscalls are also reported as BLOCKED events (with their register
  // arguments), up to this many; counts stay exact beyond it.
  size_t max_blocked_events = 256;
  // The child as the policy sees it (its own pid, the channel descriptor).
  ChildView child;
};

class SyscallSupervisor {
 public:
  // `listener` is the child's SECCOMP_FILTER_FLAG_NEW_LISTENER descriptor.
  SyscallSupervisor(UniqueFd listener, const SupervisorOptions& options);

  // The listener descriptor, to poll for POLLIN (a notification is pending)
  // and POLLHUP (every task using the filter is gone).
  int fd() const { return listener_.get(); }

  // Receives and answers one pending notification; blocks when none is
  // pending. Stale notifications (the child was killed meanwhile) are
  // ignored. Returns an error only when the listener itself fails.
  absl::Status HandleOne();

  // Per-syscall counts since the start marker, ordered by syscall number.
  std::vector<SyscallCount> Counts() const;
  std::vector<proto::Event> TakeBlockedEvents() {
    return std::move(blocked_events_);
  }
  // BLOCKED events recorded so far (not yet taken).
  size_t blocked_event_count() const { return blocked_events_.size(); }
  bool recording() const { return recording_; }
  // Denied attempts to use, replace or close the event channel, counted
  // whether or not recording had started and beyond max_blocked_events.
  uint64_t channel_tamper_attempts() const { return channel_tamper_; }
  // Notifications answered (including before the marker).
  uint64_t notifications() const { return notifications_; }

 private:
  static constexpr int kMaxSyscall = 1024;

  UniqueFd listener_;
  SupervisorOptions options_;
  bool recording_;
  int64_t start_ns_ = 0;
  uint64_t notifications_ = 0;
  uint64_t channel_tamper_ = 0;
  std::vector<uint64_t> counts_;
  std::vector<uint64_t> denied_;
  std::vector<proto::Event> blocked_events_;
};

}  // namespace dynahug::sandbox

#endif  // DYNAHUG_SANDBOX_SYSCALL_SUPERVISOR_H_

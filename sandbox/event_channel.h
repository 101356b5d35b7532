// The child -> parent event channel: length-delimited proto::Event messages
// over a connected AF_UNIX SOCK_SEQPACKET socket (the launcher's channel) or
// a pipe (tests, tools).
//
// Wire format: each message is a base-128 varint byte length followed by the
// serialized Event, exactly what protobuf's SerializeDelimitedToOstream and
// ParseDelimitedFromZeroCopyStream (google/protobuf/util/
// delimited_message_util.h) write and read. On a SOCK_SEQPACKET socket every
// event is its own record (sent with sendmmsg(2), in batches); on a pipe the
// messages form one byte stream. The writer ends a clean stream with an end
// marker: an Event {kind: LOG, name: kEndMarkerName, count: <events the
// writer dropped>}; the reader consumes it.
//
// Why records on a socket: the child runs attacker code. A byte stream is
// blinded by one garbage write (every later length prefix is misread); a
// record that does not parse is rejected alone and counted
// (ChannelStats::corrupt_records) while the reader goes on with the next one.
// A socket also cannot be reopened through /proc/self/fd (a pipe can), and
// the seccomp policy (seccomp_policy.h, ChildView::channel_fd) denies every
// write, dup, close or replacement of the channel descriptor except the
// writer's sendmmsg, which Python's standard library does not expose.
//
// The child side (EventWriter) never blocks indefinitely: the descriptor is
// used non-blocking, records the socket cannot take are kept in a bounded
// buffer, and events that do not fit are dropped and counted
// (Event.sequence has a gap). The parent side (EventReader) parses
// whatever it read, concurrently with the child, so the child never waits on
// a full socket for long. It is hostile-input safe. Limits bound memory;
// once a limit is hit the reader keeps consuming (and discarding) bytes so
// the child is not blocked, and reports what it discarded.
//
// Thread safety: neither class is thread-safe; use each from one thread.
#ifndef DYNAHUG_SANDBOX_EVENT_CHANNEL_H_
#define DYNAHUG_SANDBOX_EVENT_CHANNEL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/dynahug.pb.h"
#include "sandbox/unique_fd.h"

namespace dynahug::sandbox {

inline constexpr absl::string_view kEndMarkerName =
    "dynahug.sandbox.channel_end";

struct EventChannelLimits {
  // Child side: bytes buffered while the pipe is full. Beyond this, events
  // are dropped.
  size_t writer_buffer_bytes = 1 << 20;
  // Largest serialized event, bytes. The writer drops larger events; the
  // reader treats a larger length prefix as corruption.
  size_t max_message_bytes = 256 << 10;
  // Parent side: total payload bytes kept.
  size_t max_total_bytes = 64 << 20;
  // Parent side: events kept.
  size_t max_events = 200000;
};

// Child side. Owns the pipe's write end.
class EventWriter {
 public:
  // Takes ownership of `fd` and makes it non-blocking. An invalid `fd` gives
  // a writer that drops everything (counted).
  EventWriter(UniqueFd fd, const EventChannelLimits& limits);
  ~EventWriter();  // Close(absl::Seconds(1)) unless already closed.
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // Stamps `event.sequence` with the next sequence number, queues it and
  // pushes as much as the pipe takes without blocking. Returns false when the
  // event was dropped (buffer full, too large, channel closed or broken).
  bool Write(proto::Event event);

  // Pushes buffered bytes, waiting at most `timeout` for the reader. Returns
  // true when nothing is left buffered.
  bool Flush(absl::Duration timeout);

  // Writes the end marker and flushes (waiting at most `timeout`), leaving
  // the descriptor open: in the sandboxed child, closing the channel is
  // denied by the policy, and the process is about to exit. Idempotent; no
  // event is written afterwards.
  void Finish(absl::Duration timeout);

  // Finish(), then closes the descriptor. Idempotent.
  void Close(absl::Duration timeout);

  uint64_t written() const { return written_; }
  uint64_t dropped() const { return dropped_; }
  // The descriptor (for the launcher's keep-list); -1 after Close.
  int fd() const { return fd_.get(); }

 private:
  // Writes without blocking; false when the channel is broken.
  bool PushNonBlocking();
  bool PushRecords();
  bool Enqueue(const proto::Event& event, bool force);
  size_t Pending() const;

  UniqueFd fd_;
  EventChannelLimits limits_;
  bool records_ = false;  // SOCK_SEQPACKET: one record per event
  bool finished_ = false;
  std::string buffer_;  // pending bytes start at buffer_offset_
  size_t buffer_offset_ = 0;
  // Record mode: end offsets (in buffer_) of the pending records.
  std::vector<size_t> record_ends_;
  size_t record_next_ = 0;
  uint64_t next_sequence_ = 0;
  uint64_t written_ = 0;
  uint64_t dropped_ = 0;
  bool broken_ = false;
};

// What the reader saw, beyond the events themselves.
struct ChannelStats {
  // Events parsed and kept.
  uint64_t events = 0;
  // Bytes consumed from the pipe.
  uint64_t bytes = 0;
  // Events the child reported dropping (end marker), or, without a marker,
  // the gaps in the sequence numbers.
  uint64_t dropped_by_child = 0;
  // Well-formed events the reader discarded because a limit was reached.
  uint64_t dropped_by_reader = 0;
  // Bytes of an incomplete last message (the child died mid-write; byte
  // streams only: records arrive whole or not at all).
  uint64_t torn_bytes = 0;
  // True when the child closed the stream with an end marker.
  bool end_marker = false;
  // Records that were not exactly one well-formed event (record mode). Each
  // is discarded alone; parsing goes on. Only code running in the child
  // other than the launcher's writer can produce them.
  uint64_t corrupt_records = 0;
  // Events received after the end marker (record mode; discarded). Only
  // code other than the writer can produce them.
  uint64_t after_end = 0;
  // Events whose sequence number went backwards or repeated (discarded).
  uint64_t out_of_sequence = 0;
  // Byte streams: non-empty when the stream was malformed (bad varint,
  // oversized length, unparseable message); everything after that point is
  // discarded. Records: a description of the first corrupt record.
  std::string error;
};

// Parent side. Incremental parser of the byte stream.
class EventReader {
 public:
  explicit EventReader(const EventChannelLimits& limits);

  // Consumes the next bytes of a byte stream, in any chunking.
  void Feed(absl::string_view bytes);

  // Consumes one record (SOCK_SEQPACKET message): exactly one delimited
  // event, else it is counted in corrupt_records and discarded.
  void FeedRecord(absl::string_view record);

  // Reads from `fd` (non-blocking) until it would block or reaches EOF:
  // records from a SOCK_SEQPACKET socket, bytes from anything else.
  // Returns true at EOF. Read errors other than EAGAIN/EINTR are returned.
  absl::StatusOr<bool> ReadFrom(int fd);

  // Declares the end of the stream: leftover bytes become torn_bytes.
  void Finish();

  const std::vector<proto::Event>& events() const { return events_; }
  std::vector<proto::Event> TakeEvents() { return std::move(events_); }
  const ChannelStats& stats() const { return stats_; }

 private:
  void Parse();
  void Accept(proto::Event event, bool record);
  void NoteCorrupt(std::string why);

  EventChannelLimits limits_;
  std::vector<proto::Event> events_;
  ChannelStats stats_;
  std::string pending_;
  uint64_t payload_bytes_ = 0;
  uint64_t expected_sequence_ = 0;
  uint64_t sequence_gaps_ = 0;
  bool finished_ = false;
  bool saw_sequence_zero_ = false;
  int fd_kind_ = -1;  // ReadFrom's descriptor: 1 seqpacket, 0 other, -1 unknown
  std::string record_buf_;
};

// Creates the launcher's channel: a connected AF_UNIX SOCK_SEQPACKET pair,
// close-on-exec. `[0]` is the parent's (read) end, `[1]` the child's; the
// child's send buffer is raised to `send_buffer_bytes` where permitted.
absl::Status MakeChannel(UniqueFd (&ends)[2], int send_buffer_bytes);

}  // namespace dynahug::sandbox

#endif  // DYNAHUG_SANDBOX_EVENT_CHANNEL_H_

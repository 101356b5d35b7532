#include "sandbox/event_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"

namespace dynahug::sandbox {
namespace {

using google::protobuf::io::CodedOutputStream;

// Decodes a varint32 length prefix at the start of `data`. Returns the number
// of prefix bytes (0 when more bytes are needed, -1 when malformed).
int DecodeLength(absl::string_view data, uint32_t* value) {
  uint64_t result = 0;
  for (size_t i = 0; i < data.size() && i < 5; ++i) {
    const uint8_t byte = static_cast<uint8_t>(data[i]);
    result |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      if (result > UINT32_MAX) return -1;
      *value = static_cast<uint32_t>(result);
      return static_cast<int>(i + 1);
    }
  }
  return data.size() >= 5 ? -1 : 0;
}

bool IsSeqpacket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
         type == SOCK_SEQPACKET;
}

// Record mode: consecutive pending events are sent together, up to this many
// bytes per record (a single larger event is sent alone), and up to
// kMaxBatch records per sendmmsg. Coalescing keeps the receiver's queue
// (net.unix.max_dgram_qlen records) from filling when events come fast.
constexpr size_t kRecordBytes = 64 << 10;
constexpr unsigned kMaxBatch = 32;

}  // namespace

// ---------------------------------------------------------------------------
// EventWriter
// ---------------------------------------------------------------------------

EventWriter::EventWriter(UniqueFd fd, const EventChannelLimits& limits)
    : fd_(std::move(fd)), limits_(limits) {
  if (fd_ && IsSeqpacket(fd_.get())) {
    records_ = true;  // sends use MSG_DONTWAIT; no fcntl on the channel
  } else if (fd_) {
    const int flags = fcntl(fd_.get(), F_GETFL);
    if (flags < 0 || fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
      broken_ = true;
    }
  } else {
    broken_ = true;
  }
}

EventWriter::~EventWriter() { Close(absl::Seconds(1)); }

bool EventWriter::Enqueue(const proto::Event& event, bool force) {
  const size_t size = event.ByteSizeLong();
  if (size > limits_.max_message_bytes) return false;
  const size_t framed =
      CodedOutputStream::VarintSize32(static_cast<uint32_t>(size)) + size;
  if (!force && Pending() + framed > limits_.writer_buffer_bytes) return false;
  if (buffer_offset_ > 0 && buffer_offset_ == buffer_.size()) {
    buffer_.clear();
    buffer_offset_ = 0;
    record_ends_.clear();
    record_next_ = 0;
  } else if (buffer_offset_ > (1u << 16) &&
             buffer_offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, buffer_offset_);
    if (records_) {
      record_ends_.erase(
          record_ends_.begin(),
          record_ends_.begin() + static_cast<std::ptrdiff_t>(record_next_));
      record_next_ = 0;
      for (size_t& end : record_ends_) end -= buffer_offset_;
    }
    buffer_offset_ = 0;
  }
  const size_t old = buffer_.size();
  buffer_.resize(old + framed);
  auto* out = reinterpret_cast<uint8_t*>(&buffer_[old]);
  out =
      CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(size), out);
  event.SerializeWithCachedSizesToArray(out);
  if (records_) record_ends_.push_back(buffer_.size());
  return true;
}

size_t EventWriter::Pending() const { return buffer_.size() - buffer_offset_; }

bool EventWriter::PushRecords() {
  while (record_next_ < record_ends_.size()) {
    mmsghdr msgs[kMaxBatch];
    iovec iov[kMaxBatch];
    size_t group_last[kMaxBatch];  // index of the last record in each group
    unsigned n = 0;
    size_t start = buffer_offset_;
    size_t r = record_next_;
    while (n < kMaxBatch && r < record_ends_.size()) {
      size_t last = r;
      while (last + 1 < record_ends_.size() &&
             record_ends_[last + 1] - start <= kRecordBytes) {
        ++last;
      }
      iov[n] = {buffer_.data() + start, record_ends_[last] - start};
      msgs[n] = {};
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      group_last[n] = last;
      start = record_ends_[last];
      r = last + 1;
      ++n;
    }
    const int sent =
        ::sendmmsg(fd_.get(), msgs, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent > 0) {
      record_next_ = group_last[sent - 1] + 1;
      buffer_offset_ = record_ends_[record_next_ - 1];
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EAGAIN) return true;
    if (sent < 0 && errno == EMSGSIZE) {
      // One event larger than the socket can carry: drop it, keep going.
      ++dropped_;
      record_next_ += 1;
      buffer_offset_ = record_ends_[record_next_ - 1];
      continue;
    }
    return false;  // EPIPE, EBADF, ...
  }
  buffer_.clear();
  buffer_offset_ = 0;
  record_ends_.clear();
  record_next_ = 0;
  return true;
}

bool EventWriter::PushNonBlocking() {
  if (records_) return PushRecords();
  while (buffer_offset_ < buffer_.size()) {
    const ssize_t n = ::write(fd_.get(), buffer_.data() + buffer_offset_,
                              buffer_.size() - buffer_offset_);
    if (n > 0) {
      buffer_offset_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    return false;  // EPIPE, EBADF (the body closed our fd), ...
  }
  buffer_.clear();
  buffer_offset_ = 0;
  return true;
}

bool EventWriter::Write(proto::Event event) {
  event.set_sequence(next_sequence_++);
  if (broken_ || finished_ || !fd_ || !Enqueue(event, /*force=*/false)) {
    ++dropped_;
    return false;
  }
  if (!PushNonBlocking()) {
    broken_ = true;
    ++dropped_;
    return false;
  }
  ++written_;
  return true;
}

bool EventWriter::Flush(absl::Duration timeout) {
  if (!fd_ || broken_) return Pending() == 0;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (!PushNonBlocking()) {
      broken_ = true;
      return false;
    }
    if (Pending() == 0) return true;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd{fd_.get(), POLLOUT, 0};
    const int rc =
        ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left) + 1));
    if (rc < 0 && errno != EINTR) return false;
  }
}

void EventWriter::Finish(absl::Duration timeout) {
  if (!fd_ || finished_) return;
  finished_ = true;
  if (!broken_) {
    proto::Event marker;
    marker.set_kind(proto::Event::LOG);
    marker.set_name(std::string(kEndMarkerName));
    marker.set_sequence(next_sequence_);
    marker.set_count(dropped_);
    Enqueue(marker, /*force=*/true);
    Flush(timeout);
  }
}

void EventWriter::Close(absl::Duration timeout) {
  Finish(timeout);
  fd_.reset();
}

// ---------------------------------------------------------------------------
// EventReader
// ---------------------------------------------------------------------------

EventReader::EventReader(const EventChannelLimits& limits) : limits_(limits) {}

void EventReader::Feed(absl::string_view bytes) {
  stats_.bytes += bytes.size();
  if (!stats_.error.empty() || finished_) return;  // discarding
  pending_.append(bytes.data(), bytes.size());
  Parse();
}

void EventReader::Parse() {
  size_t pos = 0;
  while (stats_.error.empty()) {
    absl::string_view rest(pending_.data() + pos, pending_.size() - pos);
    uint32_t length = 0;
    const int prefix = DecodeLength(rest, &length);
    if (prefix < 0) {
      stats_.error = absl::StrCat(
          "event channel: malformed length prefix at "
          "byte ",
          stats_.bytes - rest.size());
      break;
    }
    if (prefix == 0) break;  // need more bytes
    if (length > limits_.max_message_bytes) {
      stats_.error = absl::StrCat("event channel: message length ", length,
                                  " exceeds limit ", limits_.max_message_bytes);
      break;
    }
    if (rest.size() < static_cast<size_t>(prefix) + length) break;
    proto::Event event;
    if (!event.ParseFromArray(rest.data() + prefix, static_cast<int>(length))) {
      stats_.error =
          absl::StrCat("event channel: unparseable message of ", length,
                       " bytes after ", stats_.events, " events");
      break;
    }
    pos += static_cast<size_t>(prefix) + length;
    Accept(std::move(event), /*record=*/false);
  }
  if (!stats_.error.empty()) {
    pending_.clear();
    return;
  }
  pending_.erase(0, pos);
}

void EventReader::NoteCorrupt(std::string why) {
  ++stats_.corrupt_records;
  if (stats_.error.empty()) stats_.error = std::move(why);
}

void EventReader::FeedRecord(absl::string_view record) {
  stats_.bytes += record.size();
  if (finished_) return;
  std::vector<proto::Event> parsed;
  size_t pos = 0;
  while (pos < record.size()) {
    absl::string_view rest = record.substr(pos);
    uint32_t length = 0;
    const int prefix = DecodeLength(rest, &length);
    if (prefix <= 0 || length > limits_.max_message_bytes ||
        rest.size() < static_cast<size_t>(prefix) + length) {
      return NoteCorrupt(
          absl::StrCat("event channel: record of ", record.size(),
                       " bytes with a bad length prefix at offset ", pos,
                       " (after ", stats_.events, " events)"));
    }
    proto::Event event;
    if (!event.ParseFromArray(rest.data() + prefix, static_cast<int>(length))) {
      return NoteCorrupt(absl::StrCat(
          "event channel: unparseable event in a "
          "record of ",
          record.size(), " bytes (after ", stats_.events, " events)"));
    }
    parsed.push_back(std::move(event));
    pos += static_cast<size_t>(prefix) + length;
  }
  if (parsed.empty()) {
    return NoteCorrupt(absl::StrCat("event channel: empty record (after ",
                                    stats_.events, " events)"));
  }
  for (proto::Event& event : parsed) Accept(std::move(event), /*record=*/true);
}

void EventReader::Accept(proto::Event event, bool record) {
  if (record && stats_.end_marker) {
    ++stats_.after_end;
    return;
  }
  if (record && (event.sequence() < expected_sequence_ ||
                 (event.sequence() == 0 && saw_sequence_zero_))) {
    ++stats_.out_of_sequence;
    return;
  }
  if (event.sequence() == 0) saw_sequence_zero_ = true;
  if (event.kind() == proto::Event::LOG && event.name() == kEndMarkerName) {
    stats_.end_marker = true;
    stats_.dropped_by_child = event.count();
    return;
  }
  if (event.sequence() > expected_sequence_) {
    sequence_gaps_ += event.sequence() - expected_sequence_;
  }
  if (event.sequence() >= expected_sequence_) {
    expected_sequence_ = event.sequence() + 1;
  }
  if (!stats_.end_marker) stats_.dropped_by_child = sequence_gaps_;
  const size_t size = event.ByteSizeLong();
  if (events_.size() >= limits_.max_events ||
      payload_bytes_ + size > limits_.max_total_bytes) {
    ++stats_.dropped_by_reader;
    return;
  }
  payload_bytes_ += size;
  events_.push_back(std::move(event));
  ++stats_.events;
}

absl::StatusOr<bool> EventReader::ReadFrom(int fd) {
  if (fd_kind_ < 0) fd_kind_ = IsSeqpacket(fd) ? 1 : 0;
  if (fd_kind_ == 1) {
    // One record per recv; MSG_TRUNC reports a record longer than any the
    // writer sends.
    record_buf_.resize(std::max(limits_.max_message_bytes, kRecordBytes) + 16);
    while (true) {
      const ssize_t n = ::recv(fd, record_buf_.data(), record_buf_.size(),
                               MSG_DONTWAIT | MSG_TRUNC);
      if (n > static_cast<ssize_t>(record_buf_.size())) {
        stats_.bytes += static_cast<uint64_t>(n);
        NoteCorrupt(
            absl::StrCat("event channel: oversized record of ", n, " bytes"));
        continue;
      }
      if (n > 0) {
        FeedRecord(
            absl::string_view(record_buf_.data(), static_cast<size_t>(n)));
        continue;
      }
      if (n == 0) {
        // End of stream, or an empty record (which the writer never sends).
        pollfd pfd{fd, POLLIN | POLLRDHUP, 0};
        if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLRDHUP))) {
          return true;
        }
        NoteCorrupt(absl::StrCat("event channel: empty record (after ",
                                 stats_.events, " events)"));
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return false;
      return absl::InternalError(
          absl::StrCat("recv(event channel) failed: ", strerror(errno)));
    }
  }
  char buf[64 << 10];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      Feed(absl::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return false;
    return absl::InternalError(
        absl::StrCat("read(event channel) failed: ", strerror(errno)));
  }
}

void EventReader::Finish() {
  if (finished_) return;
  finished_ = true;
  if (stats_.error.empty()) stats_.torn_bytes = pending_.size();
  pending_.clear();
}

absl::Status MakeChannel(UniqueFd (&ends)[2], int send_buffer_bytes) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::InternalError(absl::StrCat(
        "socketpair(AF_UNIX, SOCK_SEQPACKET) failed: ", strerror(errno)));
  }
  ends[0] = UniqueFd(fds[0]);
  ends[1] = UniqueFd(fds[1]);
  // SO_SNDBUFFORCE needs CAP_NET_ADMIN; SO_SNDBUF is capped by wmem_max.
  if (setsockopt(fds[1], SOL_SOCKET, SO_SNDBUFFORCE, &send_buffer_bytes,
                 sizeof send_buffer_bytes) != 0) {
    (void)setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &send_buffer_bytes,
                     sizeof send_buffer_bytes);
  }
  if (shutdown(fds[0], SHUT_WR) != 0) {
    return absl::InternalError(absl::StrCat(
        "shutdown(event channel, SHUT_WR) failed: ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace dynahug::sandbox

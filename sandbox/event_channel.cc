#include "sandbox/event_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

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

}  // namespace

// ---------------------------------------------------------------------------
// EventWriter
// ---------------------------------------------------------------------------

EventWriter::EventWriter(UniqueFd fd, const EventChannelLimits& limits)
    : fd_(std::move(fd)), limits_(limits) {
  if (fd_) {
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
  const size_t framed = CodedOutputStream::VarintSize32(
                            static_cast<uint32_t>(size)) + size;
  const size_t pending = buffer_.size() - buffer_offset_;
  if (!force && pending + framed > limits_.writer_buffer_bytes) return false;
  if (buffer_offset_ > 0 && buffer_offset_ == buffer_.size()) {
    buffer_.clear();
    buffer_offset_ = 0;
  } else if (buffer_offset_ > (1u << 16) && buffer_offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, buffer_offset_);
    buffer_offset_ = 0;
  }
  const size_t old = buffer_.size();
  buffer_.resize(old + framed);
  auto* out = reinterpret_cast<uint8_t*>(&buffer_[old]);
  out = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(size),
                                                out);
  event.SerializeWithCachedSizesToArray(out);
  return true;
}

bool EventWriter::PushNonBlocking() {
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
  if (broken_ || !fd_ || !Enqueue(event, /*force=*/false)) {
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
  if (!fd_ || broken_) return buffer_offset_ == buffer_.size();
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (!PushNonBlocking()) {
      broken_ = true;
      return false;
    }
    if (buffer_offset_ == buffer_.size()) return true;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd{fd_.get(), POLLOUT, 0};
    const int rc = ::poll(
        &pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left) + 1));
    if (rc < 0 && errno != EINTR) return false;
  }
}

void EventWriter::Close(absl::Duration timeout) {
  if (!fd_) return;
  if (!broken_) {
    proto::Event marker;
    marker.set_kind(proto::Event::LOG);
    marker.set_name(std::string(kEndMarkerName));
    marker.set_sequence(next_sequence_);
    marker.set_count(dropped_);
    Enqueue(marker, /*force=*/true);
    Flush(timeout);
  }
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
      stats_.error = absl::StrCat("event channel: malformed length prefix at "
                                  "byte ", stats_.bytes - rest.size());
      break;
    }
    if (prefix == 0) break;  // need more bytes
    if (length > limits_.max_message_bytes) {
      stats_.error = absl::StrCat("event channel: message length ", length,
                                  " exceeds limit ",
                                  limits_.max_message_bytes);
      break;
    }
    if (rest.size() < static_cast<size_t>(prefix) + length) break;
    proto::Event event;
    if (!event.ParseFromArray(rest.data() + prefix, static_cast<int>(length))) {
      stats_.error = absl::StrCat("event channel: unparseable message of ",
                                  length, " bytes after ", stats_.events,
                                  " events");
      break;
    }
    pos += static_cast<size_t>(prefix) + length;
    Accept(std::move(event));
  }
  if (!stats_.error.empty()) {
    pending_.clear();
    return;
  }
  pending_.erase(0, pos);
}

void EventReader::Accept(proto::Event event) {
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

}  // namespace dynahug::sandbox

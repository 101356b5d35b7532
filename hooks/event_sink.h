// The narrow interface through which every in-interpreter observer reports:
// an EventSink takes proto::Event messages one at a time. The sandbox
// implements it over the event pipe; tests use MemoryEventSink.
//
// Threading: observers emit while holding the GIL, so a sink sees one Emit at
// a time from the interpreter; sinks must not call into Python.
#ifndef DYNAHUG_HOOKS_EVENT_SINK_H_
#define DYNAHUG_HOOKS_EVENT_SINK_H_

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "proto/dynahug.pb.h"

namespace dynahug::hooks {

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Takes one event. Must not call into Python; must not throw.
  virtual void Emit(proto::Event event) = 0;
};

// An INTEGRITY event `name` with `args` (key, value) in order.
proto::Event IntegrityFinding(
    std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string>> args);

// In-memory sink for tests. `capacity` events are kept; later ones are
// counted in dropped() (the switch that forces the "sink full" path).
class MemoryEventSink final : public EventSink {
 public:
  explicit MemoryEventSink(size_t capacity = std::numeric_limits<size_t>::max())
      : capacity_(capacity) {}
  void Emit(proto::Event event) override {
    if (events_.size() >= capacity_) {
      ++dropped_;
      return;
    }
    events_.push_back(std::move(event));
  }
  const std::vector<proto::Event>& events() const { return events_; }
  uint64_t dropped() const { return dropped_; }
  void Clear() {
    events_.clear();
    dropped_ = 0;
  }

 private:
  size_t capacity_;
  std::vector<proto::Event> events_;
  uint64_t dropped_ = 0;
};

struct RecorderLimits {
  // Events forwarded per load (after folding); later ones are dropped.
  uint64_t max_events = 200000;
  // Events forwarded per (kind, name); later ones with that key are dropped.
  uint64_t max_events_per_name = 2000;
};

// The per-load front of a sink: stamps `sequence` (0, 1, ...; a dropped event
// still consumes its number, so gaps mean drops) and `timestamp_ns` (since
// construction, monotonic), folds consecutive identical events (same kind,
// name, args, offset, member) into one with `count` summed, and enforces
// RecorderLimits. The folded event is held back until a different event
// arrives or Flush() is called (the destructor flushes). `out` must outlive
// the recorder. Not thread-safe (callers hold the GIL).
class EventRecorder final : public EventSink {
 public:
  explicit EventRecorder(EventSink* out, RecorderLimits limits = {});
  ~EventRecorder() override;
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  void Emit(proto::Event event) override;
  // Forwards the held-back event, if any.
  void Flush();
  // Events dropped because of RecorderLimits.
  uint64_t dropped() const { return dropped_; }
  // Events forwarded so far (after folding).
  uint64_t forwarded() const { return forwarded_; }

 private:
  EventSink* out_;
  RecorderLimits limits_;
  std::chrono::steady_clock::time_point start_;
  std::optional<proto::Event> pending_;
  absl::flat_hash_map<std::string, uint64_t> per_name_;
  uint64_t next_sequence_ = 0;
  uint64_t forwarded_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_EVENT_SINK_H_

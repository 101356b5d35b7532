#include "hooks/event_sink.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace dynahug::hooks {
namespace {

bool SameArgs(const proto::Event& a, const proto::Event& b) {
  if (a.args_size() != b.args_size()) return false;
  for (int i = 0; i < a.args_size(); ++i) {
    if (a.args(i).key() != b.args(i).key() ||
        a.args(i).value() != b.args(i).value()) {
      return false;
    }
  }
  return true;
}

// Identical for folding purposes: everything but time, sequence and count.
bool Foldable(const proto::Event& a, const proto::Event& b) {
  return a.kind() == b.kind() && a.name() == b.name() &&
         a.has_pickle_offset() == b.has_pickle_offset() &&
         a.pickle_offset() == b.pickle_offset() && a.member() == b.member() &&
         a.blocked() == b.blocked() && a.stack_size() == 0 &&
         b.stack_size() == 0 && SameArgs(a, b);
}

}  // namespace

proto::Event IntegrityFinding(
    std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string>> args) {
  proto::Event e;
  e.set_kind(proto::Event::INTEGRITY);
  e.set_name(std::string(name));
  for (const auto& [k, v] : args) {
    proto::Argument* a = e.add_args();
    a->set_key(std::string(k));
    a->set_value(v);
  }
  return e;
}

EventRecorder::EventRecorder(EventSink* out, RecorderLimits limits)
    : out_(out), limits_(limits), start_(std::chrono::steady_clock::now()) {}

EventRecorder::~EventRecorder() { Flush(); }

void EventRecorder::Emit(proto::Event event) {
  const uint64_t count = event.count() == 0 ? 1 : event.count();
  if (pending_.has_value() && Foldable(*pending_, event)) {
    pending_->set_count(pending_->count() + count);
    return;
  }
  Flush();
  const uint64_t sequence = next_sequence_++;
  uint64_t& seen = per_name_[absl::StrCat(static_cast<int>(event.kind()), ":",
                                          event.name())];
  if (forwarded_ >= limits_.max_events || seen >= limits_.max_events_per_name) {
    ++dropped_;
    return;
  }
  ++seen;
  event.set_sequence(sequence);
  event.set_count(count);
  event.set_timestamp_ns(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now() - start_)
          .count()));
  pending_ = std::move(event);
}

void EventRecorder::Flush() {
  if (!pending_.has_value()) return;
  ++forwarded_;
  out_->Emit(std::move(*pending_));
  pending_.reset();
}

}  // namespace dynahug::hooks

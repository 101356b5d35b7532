// EventRecorder: sequence numbers, folding of identical consecutive events,
// limits; MemoryEventSink capacity.
#include "gtest/gtest.h"
#include "hooks/event_sink.h"

namespace dynahug::hooks {
namespace {

proto::Event Ev(const std::string& name, const std::string& arg = "") {
  proto::Event e;
  e.set_kind(proto::Event::AUDIT);
  e.set_name(name);
  if (!arg.empty()) {
    auto* a = e.add_args();
    a->set_key("k");
    a->set_value(arg);
  }
  return e;
}

TEST(ObserverEventSinkTest, FoldsIdenticalConsecutiveEvents) {
  MemoryEventSink out;
  {
    EventRecorder rec(&out);
    for (int i = 0; i < 5; ++i) rec.Emit(Ev("open", "tmp"));
    rec.Emit(Ev("open", "scratch"));
    rec.Emit(Ev("open", "tmp"));
  }  // destructor flushes
  ASSERT_EQ(out.events().size(), 3u);
  EXPECT_EQ(out.events()[0].count(), 5u);
  EXPECT_EQ(out.events()[1].count(), 1u);
  EXPECT_EQ(out.events()[2].count(), 1u);
  EXPECT_EQ(out.events()[0].sequence(), 0u);
  EXPECT_EQ(out.events()[1].sequence(), 1u);
  EXPECT_EQ(out.events()[2].sequence(), 2u);
  EXPECT_LE(out.events()[0].timestamp_ns(), out.events()[2].timestamp_ns());
}

TEST(ObserverEventSinkTest, DifferentOffsetsDoNotFold) {
  MemoryEventSink out;
  EventRecorder rec(&out);
  proto::Event a = Ev("x"), b = Ev("x");
  a.set_pickle_offset(1);
  b.set_pickle_offset(2);
  rec.Emit(a);
  rec.Emit(b);
  rec.Flush();
  EXPECT_EQ(out.events().size(), 2u);
}

TEST(ObserverEventSinkTest, LimitsDropAndLeaveSequenceGaps) {
  struct Case {
    RecorderLimits limits;
    size_t want_forwarded;
  } cases[] = {{{/*max_events=*/3, /*max_events_per_name=*/100}, 3},
               {{100, 2}, 4}};  // two names x 2
  for (const Case& c : cases) {
    MemoryEventSink out;
    EventRecorder rec(&out, c.limits);
    for (int i = 0; i < 10; ++i) {
      rec.Emit(Ev(i % 2 ? "a" : "b", std::to_string(i)));
    }
    rec.Flush();
    EXPECT_EQ(out.events().size(), c.want_forwarded);
    EXPECT_EQ(rec.dropped(), 10 - c.want_forwarded);
    EXPECT_EQ(rec.forwarded(), c.want_forwarded);
  }
  MemoryEventSink out;
  EventRecorder rec(&out, {100, 1});
  rec.Emit(Ev("a", "1"));
  rec.Emit(Ev("a", "2"));  // dropped, consumes sequence 1
  rec.Emit(Ev("b", "3"));
  rec.Flush();
  ASSERT_EQ(out.events().size(), 2u);
  EXPECT_EQ(out.events()[1].sequence(), 2u);
}

TEST(ObserverEventSinkTest, MemorySinkCapacity) {
  MemoryEventSink sink(2);
  for (int i = 0; i < 5; ++i) sink.Emit(Ev("e"));
  EXPECT_EQ(sink.events().size(), 2u);
  EXPECT_EQ(sink.dropped(), 3u);
  sink.Clear();
  EXPECT_TRUE(sink.events().empty());
  EXPECT_EQ(sink.dropped(), 0u);
}

}  // namespace
}  // namespace dynahug::hooks

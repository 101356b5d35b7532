#include "sandbox/event_channel.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "gtest/gtest.h"

namespace dynahug::sandbox {
namespace {

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    r.reset(fds[0]);
    w.reset(fds[1]);
    fcntl(r.get(), F_SETFL, O_NONBLOCK);
  }
};

proto::Event MakeEvent(const std::string& name, size_t padding = 0) {
  proto::Event e;
  e.set_kind(proto::Event::AUDIT);
  e.set_name(name);
  if (padding > 0) {
    proto::Argument* a = e.add_args();
    a->set_key("pad");
    a->set_value(std::string(padding, 'x'));
  }
  return e;
}

// Serialises events the way the writer does, via protobuf's own helper.
std::string Delimited(const std::vector<proto::Event>& events) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    for (const proto::Event& e : events) {
      EXPECT_TRUE(google::protobuf::util::SerializeDelimitedToZeroCopyStream(
          e, &stream));
    }
  }
  return out;
}

TEST(EventChannelTest, RoundTripThroughAPipeWithEndMarker) {
  Pipe p;
  EventChannelLimits limits;
  EventReader reader(limits);
  {
    EventWriter writer(std::move(p.w), limits);
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(writer.Write(MakeEvent("e" + std::to_string(i))));
    }
    EXPECT_EQ(writer.written(), 100u);
    writer.Close(absl::Seconds(1));
    EXPECT_EQ(writer.fd(), -1);
  }
  absl::StatusOr<bool> eof = reader.ReadFrom(p.r.get());
  ASSERT_TRUE(eof.ok());
  EXPECT_TRUE(*eof);
  reader.Finish();
  ASSERT_EQ(reader.events().size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(reader.events()[i].name(), "e" + std::to_string(i));
    EXPECT_EQ(reader.events()[i].sequence(), static_cast<uint64_t>(i));
  }
  EXPECT_TRUE(reader.stats().end_marker);
  EXPECT_EQ(reader.stats().dropped_by_child, 0u);
  EXPECT_EQ(reader.stats().torn_bytes, 0u);
  EXPECT_TRUE(reader.stats().error.empty());
}

TEST(EventChannelTest, WriterOutputParsesWithProtobufDelimitedReader) {
  Pipe p;
  EventChannelLimits limits;
  EventWriter writer(std::move(p.w), limits);
  ASSERT_TRUE(writer.Write(MakeEvent("first", 300)));  // 2-byte varint
  ASSERT_TRUE(writer.Write(MakeEvent("second")));
  char buf[4096];
  const ssize_t n = read(p.r.get(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  google::protobuf::io::ArrayInputStream in(buf, static_cast<int>(n));
  proto::Event e;
  bool clean_eof = false;
  ASSERT_TRUE(google::protobuf::util::ParseDelimitedFromZeroCopyStream(
      &e, &in, &clean_eof));
  EXPECT_EQ(e.name(), "first");
  ASSERT_TRUE(google::protobuf::util::ParseDelimitedFromZeroCopyStream(
      &e, &in, &clean_eof));
  EXPECT_EQ(e.name(), "second");
  EXPECT_EQ(e.sequence(), 1u);
}

TEST(EventChannelTest, ReaderAcceptsAnyChunking) {
  std::vector<proto::Event> events;
  for (int i = 0; i < 20; ++i) {
    events.push_back(MakeEvent("c" + std::to_string(i), i * 20));
    events.back().set_sequence(i);
  }
  const std::string bytes = Delimited(events);
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{7}, bytes.size()}) {
    EventReader reader(EventChannelLimits{});
    for (size_t pos = 0; pos < bytes.size(); pos += chunk) {
      reader.Feed(absl::string_view(bytes).substr(pos, chunk));
    }
    reader.Finish();
    ASSERT_EQ(reader.events().size(), events.size()) << "chunk " << chunk;
    EXPECT_EQ(reader.events()[19].name(), "c19");
    EXPECT_EQ(reader.stats().torn_bytes, 0u);
    EXPECT_EQ(reader.stats().bytes, bytes.size());
    // No end marker: drops come from sequence gaps, and there are none.
    EXPECT_FALSE(reader.stats().end_marker);
    EXPECT_EQ(reader.stats().dropped_by_child, 0u);
  }
}

TEST(EventChannelTest, TornLastMessageIsReportedAndEarlierOnesKept) {
  std::vector<proto::Event> events = {MakeEvent("a"), MakeEvent("b", 100)};
  const std::string bytes = Delimited(events);
  const size_t first = Delimited({events[0]}).size();
  EventReader reader(EventChannelLimits{});
  reader.Feed(absl::string_view(bytes).substr(0, bytes.size() - 10));
  reader.Finish();
  ASSERT_EQ(reader.events().size(), 1u);
  EXPECT_EQ(reader.events()[0].name(), "a");
  EXPECT_EQ(reader.stats().torn_bytes, bytes.size() - 10 - first);
  EXPECT_TRUE(reader.stats().error.empty());
  // Bytes after Finish are counted but ignored.
  reader.Feed("zz");
  EXPECT_EQ(reader.events().size(), 1u);
}

struct MalformedCase {
  const char* label;
  std::string bytes;
  const char* error_substring;
};

class MalformedStreamTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedStreamTest, StopsParsingAndReportsError) {
  const MalformedCase& c = GetParam();
  EventChannelLimits limits;
  limits.max_message_bytes = 1000;
  EventReader reader(limits);
  const std::string good = Delimited({MakeEvent("good")});
  reader.Feed(good + c.bytes);
  reader.Feed(good);  // discarded: the stream cannot be resynchronised
  reader.Finish();
  ASSERT_EQ(reader.events().size(), 1u) << c.label;
  EXPECT_NE(reader.stats().error.find(c.error_substring), std::string::npos)
      << c.label << ": " << reader.stats().error;
  EXPECT_EQ(reader.stats().torn_bytes, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Table, MalformedStreamTest,
    ::testing::Values(
        MalformedCase{"overlong varint", std::string(6, '\xff'),
                      "malformed length prefix"},
        MalformedCase{"varint above 2^32",
                      std::string("\xff\xff\xff\xff\x7f", 5),
                      "malformed length prefix"},
        MalformedCase{"length above limit", std::string("\xe9\x07", 2),
                      "exceeds limit"},
        MalformedCase{"garbage message",
                      std::string("\x03\xff\xff\xff", 4), "unparseable"}));

TEST(EventChannelTest, ReaderLimitsDropAndCount) {
  std::vector<proto::Event> events;
  for (int i = 0; i < 10; ++i) {
    events.push_back(MakeEvent("x"));
    events.back().set_sequence(i);
  }
  EventChannelLimits limits;
  limits.max_events = 4;
  EventReader reader(limits);
  reader.Feed(Delimited(events));
  reader.Finish();
  EXPECT_EQ(reader.events().size(), 4u);
  EXPECT_EQ(reader.stats().dropped_by_reader, 6u);

  EventChannelLimits bytes_limit;
  bytes_limit.max_total_bytes = 50;
  EventReader small(bytes_limit);
  small.Feed(Delimited({MakeEvent("a", 30), MakeEvent("b", 30)}));
  EXPECT_EQ(small.events().size(), 1u);
  EXPECT_EQ(small.stats().dropped_by_reader, 1u);
}

TEST(EventChannelTest, SequenceGapsCountAsChildDropsWithoutMarker) {
  std::vector<proto::Event> events = {MakeEvent("a"), MakeEvent("b"),
                                      MakeEvent("c")};
  events[0].set_sequence(0);
  events[1].set_sequence(3);
  events[2].set_sequence(7);
  EventReader reader(EventChannelLimits{});
  reader.Feed(Delimited(events));
  reader.Finish();
  EXPECT_EQ(reader.stats().dropped_by_child, 5u);
}

TEST(EventChannelTest, WriterDropsWhenPipeAndBufferAreFullThenRecovers) {
  Pipe p;
  fcntl(p.w.get(), F_SETPIPE_SZ, 4096);
  EventChannelLimits limits;
  limits.writer_buffer_bytes = 8192;
  EventWriter writer(std::move(p.w), limits);
  int accepted = 0;
  for (int i = 0; i < 200; ++i) {
    if (writer.Write(MakeEvent("flood", 200))) ++accepted;
  }
  EXPECT_GT(writer.dropped(), 0u);
  EXPECT_EQ(writer.dropped() + writer.written(), 200u);
  EXPECT_EQ(static_cast<uint64_t>(accepted), writer.written());
  // Nobody reads: Flush gives up after its timeout instead of hanging.
  const absl::Time t0 = absl::Now();
  EXPECT_FALSE(writer.Flush(absl::Milliseconds(50)));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));

  // Drain concurrently (in this thread, alternating) and close.
  EventReader reader(limits);
  for (int round = 0; round < 100 && !writer.Flush(absl::ZeroDuration());
       ++round) {
    ASSERT_TRUE(reader.ReadFrom(p.r.get()).ok());
  }
  writer.Close(absl::Seconds(1));
  absl::StatusOr<bool> eof = reader.ReadFrom(p.r.get());
  ASSERT_TRUE(eof.ok());
  EXPECT_TRUE(*eof);
  reader.Finish();
  EXPECT_EQ(reader.events().size(), writer.written());
  EXPECT_TRUE(reader.stats().end_marker);
  EXPECT_EQ(reader.stats().dropped_by_child, writer.dropped());
}

TEST(EventChannelTest, WriterDropsOversizedEvents) {
  Pipe p;
  EventChannelLimits limits;
  limits.max_message_bytes = 64;
  EventWriter writer(std::move(p.w), limits);
  EXPECT_FALSE(writer.Write(MakeEvent("big", 100)));
  EXPECT_TRUE(writer.Write(MakeEvent("small")));
  EXPECT_EQ(writer.dropped(), 1u);
}

TEST(EventChannelTest, WriterWithoutDescriptorDropsEverything) {
  EventWriter writer(UniqueFd(), EventChannelLimits{});
  EXPECT_FALSE(writer.Write(MakeEvent("x")));
  EXPECT_EQ(writer.dropped(), 1u);
  writer.Close(absl::Milliseconds(10));
}

TEST(EventChannelTest, WriterSurvivesAClosedReader) {
  signal(SIGPIPE, SIG_IGN);
  Pipe p;
  EventWriter writer(std::move(p.w), EventChannelLimits{});
  p.r.reset();
  EXPECT_FALSE(writer.Write(MakeEvent("x")));
  EXPECT_FALSE(writer.Write(MakeEvent("y")));
  EXPECT_EQ(writer.dropped(), 2u);
  writer.Close(absl::Milliseconds(10));
}

TEST(EventChannelTest, ReadFromReportsReadErrors) {
  EventReader reader(EventChannelLimits{});
  absl::StatusOr<bool> result = reader.ReadFrom(-1);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("read(event channel)"),
            std::string::npos);
}

}  // namespace
}  // namespace dynahug::sandbox

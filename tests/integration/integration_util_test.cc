// Unit tests of the integration-test helpers: the trace-document parser,
// the command runner and the directory snapshots, including their error
// paths (a helper that silently accepted bad output would make the
// integration tests unable to fail).
#include "tests/integration/integration_util.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace dynahug::integration {
namespace {

namespace fs = std::filesystem;

TEST(ParseTraceDocumentTest, ParsesEveryTraceInOrder) {
  const std::string doc =
      "{\"traces\": [\n"
      "{\"version\":1,\"file\":{\"path\":\"a.pkl\",\"size\":\"7\"},"
      "\"loaded_type\":\"builtins.dict\",\"exit\":{\"status\":\"OK\"},"
      "\"events\":[{\"kind\":\"OPCODE\",\"name\":\"PROTO\","
      "\"pickle_offset\":\"0\"}]},\n"
      "{\"file\":{\"path\":\"b.pkl\"},\"exit\":{\"status\":\"TIMEOUT\","
      "\"reason\":\"wall-clock limit\"}}\n]}\n";
  absl::StatusOr<std::vector<proto::Trace>> traces = ParseTraceDocument(doc);
  ASSERT_TRUE(traces.ok()) << traces.status();
  ASSERT_EQ(traces->size(), 2u);
  EXPECT_EQ((*traces)[0].file().path(), "a.pkl");
  EXPECT_EQ((*traces)[0].file().size(), 7u);
  EXPECT_EQ((*traces)[0].loaded_type(), "builtins.dict");
  ASSERT_EQ((*traces)[0].events_size(), 1);
  EXPECT_EQ((*traces)[0].events(0).kind(), proto::Event::OPCODE);
  EXPECT_TRUE((*traces)[0].events(0).has_pickle_offset());
  EXPECT_EQ((*traces)[1].exit().status(), proto::ChildExit::TIMEOUT);
  EXPECT_EQ((*traces)[1].exit().reason(), "wall-clock limit");
}

TEST(ParseTraceDocumentTest, EmptyListIsNoTraces) {
  absl::StatusOr<std::vector<proto::Trace>> traces =
      ParseTraceDocument("{\"traces\": [\n]}\n");
  ASSERT_TRUE(traces.ok()) << traces.status();
  EXPECT_TRUE(traces->empty());
}

struct BadDocument {
  const char* name;
  const char* json;
  const char* message;  // substring of the error
};

void PrintTo(const BadDocument& d, std::ostream* os) { *os << d.name; }

class ParseTraceDocumentErrorTest : public testing::TestWithParam<BadDocument> {
};

TEST_P(ParseTraceDocumentErrorTest, IsAnError) {
  absl::StatusOr<std::vector<proto::Trace>> traces =
      ParseTraceDocument(GetParam().json);
  ASSERT_FALSE(traces.ok());
  EXPECT_NE(std::string(traces.status().message()).find(GetParam().message),
            std::string::npos)
      << traces.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseTraceDocumentErrorTest,
    testing::Values(
        BadDocument{"Empty", "", "not a JSON object"},
        BadDocument{"Truncated", "{\"traces\": [{\"file\":", "not a JSON"},
        BadDocument{"NotAnObject", "[1, 2]", "not a JSON object"},
        BadDocument{"NoTraces", "{\"results\": []}", "no \"traces\" list"},
        BadDocument{"TracesNotAList", "{\"traces\": {}}", "no \"traces\""},
        BadDocument{"UnknownField", "{\"traces\": [{\"bogus\": 1}]}",
                    "traces[0] is not a dynahug.proto.Trace"},
        BadDocument{"WrongType",
                    "{\"traces\": [{}, {\"exit\": {\"status\": \"NOPE\"}}]}",
                    "traces[1] is not a dynahug.proto.Trace"}),
    [](const testing::TestParamInfo<BadDocument>& info) {
      return info.param.name;
    });

TEST(RunCommandTest, CapturesOutputsAndExitCode) {
  absl::StatusOr<CommandResult> r =
      RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->signal, 0);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  EXPECT_GE(r->wall_ms, 0.0);
}

TEST(RunCommandTest, ReportsTheKillingSignal) {
  absl::StatusOr<CommandResult> r = RunCommand({"/bin/sh", "-c", "kill -9 $$"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_EQ(r->signal, 9);
}

TEST(RunCommandTest, MissingProgramIsAnError) {
  EXPECT_FALSE(RunCommand({"/nonexistent/dynahug"}).ok());
  EXPECT_FALSE(RunCommand({}).ok());
}

TEST(SnapshotTest, SeesNewAndChangedFilesButNotUnchangedOnes) {
  char tmpl[] = "/tmp/dynahug_snapshot_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path dir = tmpl;
  std::ofstream(dir / "old") << "x";
  const auto before = SnapshotTree(dir.string());
  EXPECT_EQ(DiffSnapshots(before, SnapshotTree(dir.string())), "");

  fs::create_directory(dir / "sub");
  std::ofstream(dir / "sub" / "marker") << "pwned";
  std::ofstream(dir / "old", std::ios::app) << "y";
  const std::string diff = DiffSnapshots(before, SnapshotTree(dir.string()));
  EXPECT_NE(diff.find("new: sub/marker"), std::string::npos) << diff;
  EXPECT_NE(diff.find("changed: old"), std::string::npos) << diff;
  fs::remove_all(dir);
}

TEST(SnapshotTest, MissingDirectoryIsEmptyAndItsCreationIsSeen) {
  const std::string dir =
      "/tmp/dynahug_snapshot_missing." + std::to_string(getpid());
  const auto before = SnapshotTree(dir);
  EXPECT_TRUE(before.empty());
  fs::create_directory(dir);
  EXPECT_NE(DiffSnapshots(before, SnapshotTree(dir))
                .find("new: <the directory itself>"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(EventHelpersTest, ArgsAndLoadResult) {
  proto::Trace trace;
  proto::Event* e = trace.add_events();
  e->set_kind(proto::Event::LOG);
  e->set_name("dynahug.load_result");
  auto* arg = e->add_args();
  arg->set_key("type");
  arg->set_value("builtins.dict");
  EXPECT_EQ(ArgValue(*e, "type"), "builtins.dict");
  EXPECT_EQ(ArgValue(*e, "missing"), "");
  EXPECT_TRUE(HasArg(*e, "type"));
  EXPECT_FALSE(HasArg(*e, "missing"));
  EXPECT_EQ(LoadResultEvent(trace), e);
  EXPECT_EQ(LoadResultEvent(trace, "member.pt"), nullptr);
}

TEST(PayloadPickleTest, UnicodeArgumentIsEscapedToOneLine) {
  EXPECT_EQ(PickleUnicode("a\\b\nc"), "Va\\u005cb\\u000ac\n");
  EXPECT_EQ(ExecPickle("x = 1\n"),
            "cbuiltins\nexec\n(Vx = 1\\u000a\n(dtR.");
}

}  // namespace
}  // namespace dynahug::integration

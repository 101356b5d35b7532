// Analyst mode: `dynahug trace --opcodes` on benign pickles (protocols 0, 2,
// 4, 5) and a malicious one (fixture `integ_abuse`, gen_abuse_inputs.py).
//
//   - The OPCODE events (name, pickle_offset) equal pickletools.genops of the
//     same bytes (computed by the fixture; genops decodes, never executes).
//   - Events interleave after the opcode that caused them: every event that
//     carries a pickle_offset follows the OPCODE event at that offset, with
//     no other opcode in between; the payload's AUDIT and BLOCKED events
//     sit between its REDUCE and the next opcode.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

std::string Dir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/integration/analyst";
}

const std::vector<std::string>& Names() {
  static const auto* names = new std::vector<std::string>{
      "benign-p0", "benign-p2", "benign-p4", "benign-p5", "malicious-p2"};
  return *names;
}

using OpList = std::vector<std::pair<std::string, uint64_t>>;

// genops.json: {name: [[opcode, offset], ...]}.
std::map<std::string, OpList> ReadGenops() {
  std::map<std::string, OpList> out;
  absl::StatusOr<std::string> text = ReadFileToString(Dir() + "/genops.json");
  if (!text.ok()) return out;
  absl::StatusOr<google::protobuf::Struct> doc = ParseJsonObject(*text);
  if (!doc.ok()) return out;
  for (const auto& [name, ops] : doc->fields()) {
    for (const auto& op : ops.list_value().values()) {
      const auto& pair = op.list_value().values();
      out[name].emplace_back(pair[0].string_value(),
                             static_cast<uint64_t>(pair[1].number_value()));
    }
  }
  return out;
}

OpList Opcodes(const proto::Trace& trace) {
  OpList ops;
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::OPCODE) {
      ops.emplace_back(
          e.name(), e.has_pickle_offset() ? e.pickle_offset() : ~uint64_t{0});
    }
  }
  return ops;
}

std::string Show(const OpList& ops, size_t at) {
  if (at >= ops.size()) return "<end>";
  return absl::StrCat(ops[at].first, "@", ops[at].second);
}

// Index of the OPCODE event with `name` at `offset`, or -1.
int FindOpcode(const proto::Trace& trace, const std::string& name,
               uint64_t offset) {
  for (int i = 0; i < trace.events_size(); ++i) {
    const auto& e = trace.events(i);
    if (e.kind() == proto::Event::OPCODE && e.name() == name &&
        e.pickle_offset() == offset) {
      return i;
    }
  }
  return -1;
}

// Events strictly between OPCODE event `i` and the next OPCODE event.
std::vector<const proto::Event*> CausedBy(const proto::Trace& trace, int i) {
  std::vector<const proto::Event*> out;
  for (int j = i + 1; j < trace.events_size(); ++j) {
    if (trace.events(j).kind() == proto::Event::OPCODE) break;
    out.push_back(&trace.events(j));
  }
  return out;
}

bool Contains(const std::vector<const proto::Event*>& events,
              proto::Event::Kind kind, const std::string& name) {
  for (const proto::Event* e : events) {
    if (e->kind() == kind && e->name() == name) return true;
  }
  return false;
}

class AnalystModeTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    genops_ = new std::map<std::string, OpList>(ReadGenops());
    std::vector<std::string> argv = {DYNAHUG_BIN, "trace", "--opcodes",
                                     "--format", "json"};
    for (const std::string& name : Names()) {
      argv.push_back(Dir() + "/" + name + ".pkl");
    }
    absl::StatusOr<CommandResult> run = RunCommand(argv);
    traces_ = new std::map<std::string, proto::Trace>;
    if (!run.ok()) {
      error_ = new std::string(run.status().ToString());
      return;
    }
    absl::StatusOr<std::vector<proto::Trace>> traces =
        ParseTraceDocument(run->out);
    if (!traces.ok() || traces->size() != Names().size()) {
      error_ = new std::string(absl::StrCat(
          "exit ", run->exit_code, ": ",
          traces.ok() ? "wrong trace count" : traces.status().ToString(), "\n",
          run->err.substr(0, 2000)));
      return;
    }
    for (size_t i = 0; i < Names().size(); ++i) {
      (*traces_)[Names()[i]] = std::move((*traces)[i]);
    }
  }
  static void TearDownTestSuite() {
    delete genops_;
    delete traces_;
    delete error_;
    error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(error_, nullptr) << *error_;
    ASSERT_EQ(genops_->size(), Names().size())
        << "genops.json missing or incomplete (did fixture integ_abuse run?)";
  }

  static std::map<std::string, OpList>* genops_;
  static std::map<std::string, proto::Trace>* traces_;
  static std::string* error_;
};

std::map<std::string, OpList>* AnalystModeTest::genops_ = nullptr;
std::map<std::string, proto::Trace>* AnalystModeTest::traces_ = nullptr;
std::string* AnalystModeTest::error_ = nullptr;

TEST_F(AnalystModeTest, OpcodesEqualPickletoolsGenops) {
  for (const std::string& name : Names()) {
    SCOPED_TRACE(name);
    const proto::Trace& trace = traces_->at(name);
    EXPECT_EQ(trace.exit().status(), proto::ChildExit::OK)
        << trace.exit().reason() << "\n"
        << DescribeEvents(trace);
    const OpList got = Opcodes(trace);
    const OpList& want = genops_->at(name);
    EXPECT_EQ(got.size(), want.size());
    for (size_t i = 0; i < std::max(got.size(), want.size()); ++i) {
      if (i >= got.size() || i >= want.size() || got[i] != want[i]) {
        ADD_FAILURE() << "opcode #" << i << ": dynahug " << Show(got, i)
                      << ", pickletools " << Show(want, i);
        break;
      }
    }
  }
}

TEST_F(AnalystModeTest, EveryEventFollowsTheOpcodeThatCausedIt) {
  for (const std::string& name : Names()) {
    SCOPED_TRACE(name);
    const proto::Trace& trace = traces_->at(name);
    const proto::Event* last_opcode = nullptr;
    int with_offset = 0;
    for (const auto& e : trace.events()) {
      if (e.kind() == proto::Event::OPCODE) {
        last_opcode = &e;
        continue;
      }
      if (!e.has_pickle_offset()) continue;
      ++with_offset;
      ASSERT_NE(last_opcode, nullptr)
          << e.name() << " @" << e.pickle_offset() << " before any opcode";
      EXPECT_EQ(e.pickle_offset(), last_opcode->pickle_offset())
          << proto::Event::Kind_Name(e.kind()) << " " << e.name()
          << " claims offset " << e.pickle_offset() << " but follows "
          << last_opcode->name() << "@" << last_opcode->pickle_offset();
    }
    if (name.rfind("malicious", 0) == 0) {
      EXPECT_GT(with_offset, 0) << "no event carries a pickle offset";
    }
  }
}

TEST_F(AnalystModeTest, PayloadEventsSitBetweenTheirReduceAndTheNextOpcode) {
  const proto::Trace& trace = traces_->at("malicious-p2");
  const OpList& ops = genops_->at("malicious-p2");
  std::vector<uint64_t> reduces;
  for (const auto& [op, offset] : ops) {
    if (op == "REDUCE") reduces.push_back(offset);
  }
  // The payload's two REDUCEs come first (a third one, _codecs.encode for
  // the bytes value, belongs to the benign dict after them).
  ASSERT_GE(reduces.size(), 2u);

  // REDUCE #1: os.system('/bin/true') -- the call, the audit event and the
  // sandbox's denial of the process creation.
  const int first = FindOpcode(trace, "REDUCE", reduces[0]);
  ASSERT_GE(first, 0) << DescribeEvents(trace);
  const auto system_events = CausedBy(trace, first);
  EXPECT_TRUE(Contains(system_events, proto::Event::PICKLE_CALL, "os.system"));
  EXPECT_TRUE(Contains(system_events, proto::Event::AUDIT, "os.system"));
  bool blocked_process = false;
  for (const proto::Event* e : system_events) {
    if (e->kind() == proto::Event::BLOCKED &&
        (e->name() == "clone" || e->name() == "fork" || e->name() == "vfork" ||
         e->name() == "execve")) {
      blocked_process = true;
    }
  }
  EXPECT_TRUE(blocked_process)
      << "the denied process creation is not between REDUCE@" << reduces[0]
      << " and the next opcode\n"
      << DescribeEvents(trace);

  // REDUCE #2: exec(source) that opens a probe file for writing.
  const int second = FindOpcode(trace, "REDUCE", reduces[1]);
  ASSERT_GE(second, 0);
  const auto exec_events = CausedBy(trace, second);
  EXPECT_TRUE(
      Contains(exec_events, proto::Event::PICKLE_CALL, "builtins.exec"));
  EXPECT_TRUE(Contains(exec_events, proto::Event::AUDIT, "exec"));
  bool write_open = false;
  for (const proto::Event* e : exec_events) {
    if (e->kind() == proto::Event::AUDIT && e->name() == "open" &&
        ArgValue(*e, "mode").find('w') != std::string::npos) {
      write_open = true;
    }
  }
  EXPECT_TRUE(write_open) << DescribeEvents(trace);

  // Nothing of the payload leaks before its REDUCE: the first os.system
  // audit event comes after the first REDUCE opcode.
  for (int i = 0; i < first; ++i) {
    EXPECT_FALSE(trace.events(i).kind() == proto::Event::AUDIT &&
                 trace.events(i).name() == "os.system");
    EXPECT_NE(trace.events(i).kind(), proto::Event::BLOCKED);
  }
  EXPECT_EQ(trace.loaded_type(), "builtins.dict");
}

}  // namespace
}  // namespace dynahug::integration

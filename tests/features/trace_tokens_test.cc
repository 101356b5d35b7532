#include "features/internal/trace_tokens.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dynahug::features::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

TEST(HierarchyTokensTest, BacksOffAlongTheModulePathWithUnitNorm) {
  std::vector<WeightedToken> t =
      HierarchyTokens("g:", "sklearn.ensemble.NewThing", 0.5);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].token, "g:sklearn");
  EXPECT_EQ(t[1].token, "g:sklearn.ensemble");
  EXPECT_EQ(t[2].token, "g:sklearn.ensemble.NewThing");
  const double norm = std::sqrt(1 + 0.25 + 0.0625);
  EXPECT_DOUBLE_EQ(t[0].weight, 1 / norm);
  EXPECT_DOUBLE_EQ(t[1].weight, 0.5 / norm);
  EXPECT_DOUBLE_EQ(t[2].weight, 0.25 / norm);
}

TEST(HierarchyTokensTest, CapsLevelsButKeepsTheFullName) {
  std::vector<WeightedToken> t = HierarchyTokens("", "a.b.c.d.e.f", 1.0);
  EXPECT_THAT(t, ElementsAre(Field(&WeightedToken::token, "a"),
                             Field(&WeightedToken::token, "a.b"),
                             Field(&WeightedToken::token, "a.b.c"),
                             Field(&WeightedToken::token, "a.b.c.d.e.f")));
  for (const WeightedToken& w : t) EXPECT_DOUBLE_EQ(w.weight, 0.5);
}

TEST(HierarchyTokensTest, SingleComponentHasWeightOne) {
  EXPECT_THAT(HierarchyTokens("p:", "persistent_load", 0.5),
              ElementsAre(WeightedToken{"p:persistent_load", 1.0}));
}

struct Case {
  std::string input;
  std::string expected;
};

class ArgTypeTest : public ::testing::TestWithParam<Case> {};

TEST_P(ArgTypeTest, SummaryMapsToItsType) {
  EXPECT_EQ(ArgType(GetParam().input), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    LoaderSummaries, ArgTypeTest,
    ::testing::Values(
        Case{"str:storage", "str"},
        Case{"str:import os; os.system('x')", "str.code"},
        Case{"str:/bin/true", "str.path"},
        Case{"str:http://127.0.0.1:9/x", "str.url"}, Case{"bytes[12]", "bytes"},
        Case{"bytearray[0]", "bytearray"}, Case{"tuple[2]", "tuple"},
        Case{"dict[0]", "dict"}, Case{"frozenset[3]", "frozenset"},
        Case{"12", "int"}, Case{"-3", "int"}, Case{"int[70 bits]", "int"},
        Case{"1.5", "float"}, Case{"inf", "float"}, Case{"True", "bool"},
        Case{"None", "None"},
        Case{"obj:torch.storage.TypedStorage", "torch.storage.TypedStorage"},
        Case{"type:builtins.int", "type:builtins.int"},
        Case{"function:posix.system", "function:posix.system"},
        Case{"<weird>", "?"}));

struct ArgCase {
  std::string event;
  std::string key;
  std::string value;
  std::string expected;
};

class NormalizeArgValueTest : public ::testing::TestWithParam<ArgCase> {};

TEST_P(NormalizeArgValueTest, ValueIsNormalised) {
  const ArgCase& c = GetParam();
  EXPECT_EQ(NormalizeArgValue(c.event, c.key, c.value), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    AuditArguments, NormalizeArgValueTest,
    ::testing::Values(
        ArgCase{"exec", "sha256", "c5d5be8585ca88fd", ""},
        ArgCase{"exec", "size", "74", "2^6"}, ArgCase{"exec", "size", "1", "1"},
        ArgCase{"exec", "size", "0", "0"},
        ArgCase{"open", "path", "python-lib", "python-lib"},
        ArgCase{"open", "path_rel", "sub/dir/file.bin", ""},
        ArgCase{"open", "mode", "rb", "rb"},
        ArgCase{"socket.connect", "address", "127.0.0.1:9", "loopback:9"},
        ArgCase{"socket.connect", "address", "8.8.8.8:4444", "public:high"},
        ArgCase{"socket.connect", "address", "tmp", "tmp"},
        ArgCase{"socket.getaddrinfo", "host", "10.1.2.3", "private"},
        ArgCase{"socket.getaddrinfo", "host", "evil.example", "name"},
        ArgCase{"urllib.Request", "url", "HTTP://x/y", "http"},
        ArgCase{"os.system", "executable", "/bin/true", "true"},
        ArgCase{"ctypes.call_function", "function", "0x7f00", ""},
        ArgCase{"os.kill", "pid", "1234", ""},
        ArgCase{"os.mkdir", "1", "511", "2^8"},
        ArgCase{"os.mkdir", "2", "-1", "neg"},
        ArgCase{"x", "0", "0xdeadbeef", "hex"},
        ArgCase{"x", "0", "worker-17 at 0x1f", "worker-# at 0x#"},
        ArgCase{"clone", "arg0", "0x4111", ""},
        ArgCase{"clone", "errno", "EPERM", "EPERM"}));

TEST(NormalizeTextTest, CutsLongTextAtTheLimit) {
  EXPECT_EQ(NormalizeText(std::string(200, 'x')).size(), kMaxValueBytes);
}

TEST(CountBucketTest, PowersOfTwo) {
  EXPECT_EQ(CountBucket(0), "0");
  EXPECT_EQ(CountBucket(1), "1");
  EXPECT_EQ(CountBucket(2), "2^1");
  EXPECT_EQ(CountBucket(3), "2^1");
  EXPECT_EQ(CountBucket(4), "2^2");
  EXPECT_EQ(CountBucket(1023), "2^9");
}

// --- provenance -------------------------------------------------------------

proto::Event Ev(proto::Event::Kind kind, std::string name,
                std::optional<uint64_t> offset,
                std::vector<std::pair<std::string, std::string>> args = {}) {
  proto::Event e;
  e.set_kind(kind);
  e.set_name(std::move(name));
  if (offset.has_value()) e.set_pickle_offset(*offset);
  for (auto& [k, v] : args) {
    proto::Argument* a = e.add_args();
    a->set_key(k);
    a->set_value(v);
  }
  return e;
}

constexpr auto kAudit = proto::Event::AUDIT;
constexpr auto kCall = proto::Event::PICKLE_CALL;
constexpr auto kGlobal = proto::Event::GLOBAL;

// Each event with the provenance the tracker must give it.
struct Step {
  proto::Event event;
  Provenance expected;
};

void ExpectProvenance(const std::vector<Step>& steps) {
  ProvenanceTracker tracker;
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(tracker.Observe(steps[i].event), steps[i].expected)
        << "event " << i << ": " << steps[i].event.name();
  }
}

TEST(ProvenanceTrackerTest, ImportMachineryAtAGlobalOpcodeIsLib) {
  ExpectProvenance({
      {Ev(kAudit, "pickle.find_class", 2), Provenance::kPickle},
      {Ev(kAudit, "import", 2, {{"module", "webbrowser"}}), Provenance::kLib},
      {Ev(kAudit, "open", 2,
          {{"path", "python-lib"}, {"path_ext", ".pyc"}, {"mode", "r"}}),
       Provenance::kLib},
      {Ev(kAudit, "marshal.loads", 2, {{"size", "32728"}}), Provenance::kLib},
      {Ev(kAudit, "exec", 2,
          {{"name", "<module>"}, {"filename", "python-lib"}}),
       Provenance::kLib},
      {Ev(kGlobal, "webbrowser.get", 2), Provenance::kLib},
  });
}

TEST(ProvenanceTrackerTest, ModuleBodyCodeRunWhileResolvingAGlobalIsLib) {
  // webbrowser's imports run a namedtuple factory: compile and exec of
  // "<string>" inside the import system, at the GLOBAL's offset.
  ExpectProvenance({
      {Ev(kAudit, "pickle.find_class", 2), Provenance::kPickle},
      {Ev(kAudit, "import", 2, {{"module", "lzma"}}), Provenance::kLib},
      {Ev(kAudit, "compile", 2, {{"filename", "<string>"}}), Provenance::kLib},
      {Ev(kAudit, "exec", 2, {{"name", "<module>"}, {"filename", "<string>"}}),
       Provenance::kLib},
      {Ev(kAudit, "object.__setattr__", 2), Provenance::kLib},
      {Ev(kGlobal, "webbrowser.get", 2), Provenance::kLib},
  });
}

TEST(ProvenanceTrackerTest, InstCallAfterItsGlobalIsPickle) {
  ExpectProvenance({
      {Ev(kAudit, "pickle.find_class", 7), Provenance::kPickle},
      {Ev(kGlobal, "builtins.eval", 7), Provenance::kLib},
      {Ev(kCall, "builtins.eval", 7, {{"op", "INST"}}), Provenance::kLib},
      {Ev(kAudit, "compile", 7, {{"filename", "<string>"}}),
       Provenance::kPickle},
  });
}

TEST(ProvenanceTrackerTest, NestedUnpicklerOfAReduceCalleeIsPickle) {
  // REDUCE pickle.loads(inner): the inner C unpickler keeps the outer
  // offset, so its find_class does not make the context a global one.
  ExpectProvenance({
      {Ev(kCall, "_pickle.loads", 30, {{"op", "REDUCE"}}), Provenance::kLib},
      {Ev(kAudit, "pickle.find_class", 30), Provenance::kPickle},
      {Ev(kAudit, "exec", 30, {{"name", "<module>"}, {"filename", "<string>"}}),
       Provenance::kPickle},
  });
}

TEST(ProvenanceTrackerTest, CodeRunByAReduceCalleeIsPickle) {
  ExpectProvenance({
      {Ev(kCall, "builtins.exec", 116, {{"op", "REDUCE"}}), Provenance::kLib},
      {Ev(kAudit, "compile", 116, {{"filename", "<string>"}}),
       Provenance::kPickle},
      {Ev(kAudit, "exec", 116,
          {{"name", "<module>"}, {"filename", "<string>"}}),
       Provenance::kPickle},
      {Ev(kAudit, "open", 116, {{"path", "tmp"}, {"mode", "w"}}),
       Provenance::kPickle},
  });
}

TEST(ProvenanceTrackerTest, EventsOutsideAnyOpcodeAreLib) {
  ExpectProvenance({
      {Ev(kAudit, "exec", std::nullopt,
          {{"name", "<module>"}, {"filename", "<string>"}}),
       Provenance::kLib},
      {Ev(kAudit, "open", std::nullopt, {{"path", "model-file"}}),
       Provenance::kLib},
  });
}

TEST(ProvenanceTrackerTest, PayloadMarshalAfterAnImportIsStillPickle) {
  // exec("import x; exec(marshal.loads(b))") in one REDUCE: the import's
  // own machinery is lib, the payload's marshal.loads (no .pyc read right
  // before it) and its "<string>" code are not.
  ExpectProvenance({
      {Ev(kCall, "builtins.exec", 40, {{"op", "REDUCE"}}), Provenance::kLib},
      {Ev(kAudit, "compile", 40, {{"filename", "<string>"}}),
       Provenance::kPickle},
      {Ev(kAudit, "import", 40, {{"module", "shlex"}}), Provenance::kLib},
      {Ev(kAudit, "open", 40,
          {{"path", "python-lib"}, {"path_ext", ".pyc"}, {"mode", "r"}}),
       Provenance::kLib},
      {Ev(kAudit, "marshal.loads", 40), Provenance::kLib},
      {Ev(kAudit, "exec", 40,
          {{"name", "<module>"}, {"filename", "python-lib"}}),
       Provenance::kLib},
      {Ev(kAudit, "marshal.loads", 40), Provenance::kPickle},
      {Ev(kAudit, "exec", 40, {{"name", "evil"}, {"filename", "python-lib"}}),
       Provenance::kPickle},
      {Ev(kAudit, "open", 40, {{"path", "tmp"}, {"mode", "w"}}),
       Provenance::kPickle},
  });
}

TEST(ProvenanceTrackerTest, ANewOffsetStartsAFreshContext) {
  ExpectProvenance({
      {Ev(kAudit, "import", 2, {{"module", "os"}}), Provenance::kLib},
      {Ev(kCall, "posix.system", 9, {{"op", "REDUCE"}}), Provenance::kLib},
      // Same shape as import machinery, but no import in this context.
      {Ev(kAudit, "exec", 9, {{"name", "<module>"}, {"filename", "system"}}),
       Provenance::kPickle},
  });
}

TEST(ProvenanceTrackerTest, RemembersTheCalleeOfTheCurrentOpcode) {
  ProvenanceTracker tracker;
  tracker.Observe(Ev(kCall, "posix.system", 9, {{"op", "REDUCE"}}));
  // Events without an offset (BLOCKED, PYTHON_CALL) do not end the context.
  proto::Event blocked = Ev(proto::Event::BLOCKED, "clone", std::nullopt);
  tracker.Observe(blocked);
  EXPECT_EQ(tracker.callee(), "posix.system");
  tracker.Observe(Ev(kAudit, "pickle.find_class", 20));
  EXPECT_EQ(tracker.callee(), "");
}

}  // namespace
}  // namespace dynahug::features::internal

#include "features/feature_extractor.h"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dynahug::features {
namespace {

using ::testing::Contains;
using ::testing::IsEmpty;
using ::testing::Not;

// --- trace builders
// -----------------------------------------------------------

proto::Event* AddEvent(
    proto::Trace& t, proto::Event::Kind kind, std::string name,
    std::optional<uint64_t> offset,
    std::vector<std::pair<std::string, std::string>> args = {},
    uint64_t count = 1) {
  proto::Event* e = t.add_events();
  e->set_kind(kind);
  e->set_name(std::move(name));
  if (offset.has_value()) e->set_pickle_offset(*offset);
  for (auto& [k, v] : args) {
    proto::Argument* a = e->add_args();
    a->set_key(k);
    a->set_value(v);
  }
  e->set_count(count);
  return e;
}

void AddGlobal(proto::Trace& t, const std::string& module,
               const std::string& name, bool stub, uint64_t offset) {
  AddEvent(t, proto::Event::GLOBAL, module + "." + name, offset,
           {{"module", module},
            {"name", name},
            {"resolved", stub ? "stub" : "real"},
            {"type", "builtins.type"}});
}

void AddSyscall(proto::Trace& t, const std::string& name, uint64_t count,
                uint64_t denied = 0) {
  proto::SyscallCount* s = t.add_syscalls();
  s->set_name(name);
  s->set_count(count);
  s->set_denied(denied);
}

proto::PickleSummary* AddStream(proto::Member& m, const std::string& member,
                                uint64_t offset, uint64_t length) {
  proto::PickleSummary* p = m.add_pickles();
  if (!member.empty()) p->mutable_location()->add_member_path(member);
  p->mutable_location()->set_offset(offset);
  p->set_length(length);
  p->set_complete(true);
  p->set_protocol(2);
  return p;
}

void AddStaticGlobal(proto::PickleSummary& p, const std::string& module,
                     const std::string& name, uint64_t offset) {
  proto::GlobalRef* g = p.add_globals();
  g->set_module(module);
  g->set_name(name);
  g->set_offset(offset);
  g->set_opcode("GLOBAL");
  g->set_source("inline");
}

double Value(const SparseVector& v, Family f, const std::string& token) {
  return v.Get(f, token);
}

std::vector<std::string> AllTokens(const SparseVector& v) {
  std::vector<std::string> out;
  for (const Feature& f : v.entries()) {
    for (const std::string& t : f.tokens) {
      out.push_back(std::string(FamilyName(FamilyOfIndex(f.index))) + "/" + t);
    }
  }
  return out;
}

proto::Trace GlobalTrace(const std::string& module, const std::string& name) {
  proto::Trace t;
  AddGlobal(t, module, name, /*stub=*/false, 2);
  return t;
}

// --- families
// -----------------------------------------------------------------

TEST(FeatureExtractorTest, SyscallsGivePresenceBitsAndLogCounts) {
  proto::Trace t;
  AddSyscall(t, "openat", 9);
  AddSyscall(t, "read", 0);
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_DOUBLE_EQ(Value(v, Family::kSyscall, "present:openat"), 1.0);
  EXPECT_DOUBLE_EQ(Value(v, Family::kSyscall, "count:openat"), std::log1p(9));
  EXPECT_EQ(Value(v, Family::kSyscall, "present:read"), 0);
}

TEST(FeatureExtractorTest, SyscallOnlySelectionLeavesEveryOtherFamilyZero) {
  proto::Trace t;
  AddSyscall(t, "clone", 1, 1);
  AddGlobal(t, "os", "system", false, 2);
  t.mutable_exit()->set_status(proto::ChildExit::OK);
  SparseVector v =
      FeatureExtractor({.families = FamilySet::SyscallOnly()}).Extract(t);
  ASSERT_FALSE(v.empty());
  for (const Feature& f : v.entries()) {
    EXPECT_EQ(FamilyOfIndex(f.index), Family::kSyscall) << v.Name(f.index);
  }
  SparseVector all = FeatureExtractor().Extract(t);
  EXPECT_GT(all.size(), v.size());
  EXPECT_GT(Value(all, Family::kBlocked, "denied:clone"), 0);
}

TEST(FeatureExtractorTest, EveryFeatureIsNamedAndInItsFamilyBlock) {
  proto::Trace t;
  AddSyscall(t, "openat", 3);
  AddGlobal(t, "collections", "OrderedDict", false, 2);
  AddEvent(t, proto::Event::AUDIT, "open", std::nullopt,
           {{"path", "model-file"}, {"mode", "r"}});
  SparseVector v = FeatureExtractor().Extract(t);
  for (const Feature& f : v.entries()) {
    ASSERT_EQ(f.tokens.size(), 1u) << v.Name(f.index);
    EXPECT_EQ(FeatureIndex(FamilyOfIndex(f.index), f.tokens[0]), f.index);
    EXPECT_TRUE(std::isfinite(f.value));
    EXPECT_GT(f.value, 0);
  }
  EXPECT_THAT(AllTokens(v), Contains("audit/open:path=model-file"));
}

TEST(FeatureExtractorTest, NamesCanBeLeftOutWithoutChangingTheNumbers) {
  proto::Trace t = GlobalTrace("os", "system");
  SparseVector named = FeatureExtractor().Extract(t);
  SparseVector bare = FeatureExtractor({.keep_names = false}).Extract(t);
  ASSERT_EQ(named.size(), bare.size());
  EXPECT_DOUBLE_EQ(SparseVector::SquaredDistance(named, bare), 0);
  for (const Feature& f : bare.entries()) EXPECT_THAT(f.tokens, IsEmpty());
}

TEST(FeatureExtractorTest, ExtractionIsDeterministic) {
  proto::Trace t = GlobalTrace("torch._utils", "_rebuild_tensor_v2");
  AddSyscall(t, "mmap", 12);
  SparseVector a = FeatureExtractor().Extract(t);
  SparseVector b = FeatureExtractor().Extract(t);
  EXPECT_EQ(SparseVector::SquaredDistance(a, b), 0);
  EXPECT_EQ(a.size(), b.size());
}

TEST(FeatureExtractorTest, UnseenGlobalsKeepANamedFeature) {
  // A vocabulary fitted on benign traces would drop these; hashing keeps
  // them, with their names.
  SparseVector v = FeatureExtractor().Extract(GlobalTrace("posix", "system"));
  EXPECT_GT(Value(v, Family::kGlobal, "posix.system"), 0);
  EXPECT_THAT(AllTokens(v), Contains("global/posix.system"));
  EXPECT_THAT(AllTokens(v), Contains("global/posix"));
}

TEST(FeatureExtractorTest, StubGlobalsAreMarked) {
  proto::Trace t;
  AddGlobal(t, "transformers.training_args", "TrainingArguments", true, 2);
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_GT(Value(v, Family::kGlobal, "stub:transformers"), 0);
  EXPECT_GT(Value(v, Family::kGlobal, "resolved:stub"), 0);
  EXPECT_EQ(Value(v, Family::kGlobal, "resolved:real"), 0);
}

TEST(FeatureExtractorTest, UnseenClassInKnownPackageIsCloserThanUnseenModule) {
  FeatureExtractor x({.families = FamilySet::Of({Family::kGlobal})});
  SparseVector known = x.Extract(GlobalTrace("sklearn.ensemble", "Forest"));
  SparseVector new_class =
      x.Extract(GlobalTrace("sklearn.ensemble", "NewThing"));
  SparseVector new_module =
      x.Extract(GlobalTrace("idlelib.pyshell", "PyShell"));
  SparseVector webbrowser = x.Extract(GlobalTrace("webbrowser", "open"));
  const double d_class = SparseVector::SquaredDistance(known, new_class);
  const double d_module = SparseVector::SquaredDistance(known, new_module);
  const double d_web = SparseVector::SquaredDistance(known, webbrowser);
  EXPECT_GT(d_class, 0);
  EXPECT_LT(d_class * 4, d_module);
  EXPECT_LT(d_class * 4, d_web);
}

TEST(FeatureExtractorTest, FlatWeightsMakeTheBackOffWeaker) {
  // decay 1 spreads mass evenly: an unseen leaf costs more than with 0.5.
  auto distance = [](double decay) {
    FeatureExtractor x({.families = FamilySet::Of({Family::kGlobal}),
                        .hierarchy_decay = decay});
    return SparseVector::SquaredDistance(
        x.Extract(GlobalTrace("sklearn.ensemble", "Forest")),
        x.Extract(GlobalTrace("sklearn.ensemble", "NewThing")));
  };
  EXPECT_LT(distance(0.5), distance(1.0));
}

TEST(FeatureExtractorTest, PickleCallsRecordArgumentTypes) {
  proto::Trace t;
  AddEvent(t, proto::Event::PICKLE_CALL, "builtins.exec", 116,
           {{"op", "REDUCE"}, {"0", "str:import os; os.system('true')"}});
  AddEvent(t, proto::Event::PICKLE_CALL, "collections.OrderedDict.__dict__",
           485,
           {{"op", "BUILD"}, {"kw:_metadata", "obj:collections.OrderedDict"}});
  AddEvent(t, proto::Event::PICKLE_CALL, "torch._utils._rebuild_tensor_v2",
           std::nullopt, {{"op", "more"}}, 300);
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_GT(Value(v, Family::kPickleCall, "sig:builtins.exec(str.code)"), 0);
  EXPECT_GT(Value(v, Family::kPickleCall, "arg:str.code"), 0);
  EXPECT_GT(Value(v, Family::kPickleCall, "op:REDUCE"), 0);
  EXPECT_GT(Value(v, Family::kPickleCall,
                  "sig:collections.OrderedDict.__dict__(_metadata="
                  "collections.OrderedDict)"),
            0);
  EXPECT_GT(Value(v, Family::kPickleCall, "kwarg:collections.OrderedDict"), 0);
  EXPECT_GT(Value(v, Family::kPickleCall, "callee:builtins"), 0);
  EXPECT_DOUBLE_EQ(Value(v, Family::kPickleCall, "op:more"), std::log1p(300));
  // The overflow count names no arguments.
  EXPECT_EQ(
      Value(v, Family::kPickleCall, "sig:torch._utils._rebuild_tensor_v2()"),
      0);
}

TEST(FeatureExtractorTest, CallsOfStubsWithCodeArgumentsAreVisible) {
  proto::Trace t;
  AddEvent(t, proto::Event::PICKLE_CALL, "notinstalled.Runner", 30,
           {{"op", "REDUCE"}, {"stub", "true"}, {"0", "str:__import__('os')"}});
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_GT(Value(v, Family::kPickleCall, "stub:notinstalled"), 0);
  EXPECT_GT(Value(v, Family::kPickleCall, "sig:notinstalled.Runner(str.code)"),
            0);
}

TEST(FeatureExtractorTest, ExecCausedByAnOpcodeDiffersFromExecInAnImport) {
  proto::Trace payload;
  AddEvent(payload, proto::Event::PICKLE_CALL, "builtins.exec", 116,
           {{"op", "REDUCE"}, {"0", "str:print(1)"}});
  AddEvent(payload, proto::Event::AUDIT, "exec", 116,
           {{"sha256", "c5d5be8585ca88fd"},
            {"name", "<module>"},
            {"filename", "<string>"}});
  proto::Trace library;
  AddEvent(library, proto::Event::AUDIT, "import", 2,
           {{"module", "webbrowser"}});
  AddEvent(library, proto::Event::AUDIT, "exec", 2,
           {{"name", "<module>"}, {"filename", "python-lib"}});
  FeatureExtractor x;
  SparseVector p = x.Extract(payload);
  SparseVector l = x.Extract(library);
  EXPECT_GT(Value(p, Family::kAudit, "exec@pickle"), 0);
  EXPECT_EQ(Value(p, Family::kAudit, "exec@lib"), 0);
  EXPECT_GT(Value(p, Family::kAudit, "exec@pickle:via=builtins.exec"), 0);
  EXPECT_GT(Value(p, Family::kAudit, "exec@pickle:filename=<string>"), 0);
  EXPECT_GT(Value(l, Family::kAudit, "exec@lib"), 0);
  EXPECT_EQ(Value(l, Family::kAudit, "exec@pickle"), 0);
  // Both still share the plain event token.
  EXPECT_GT(Value(p, Family::kAudit, "exec"), 0);
  EXPECT_GT(Value(l, Family::kAudit, "exec"), 0);
  // Code hashes never become tokens.
  EXPECT_THAT(AllTokens(p),
              Not(Contains("audit/exec:sha256=c5d5be8585ca88fd")));
}

TEST(FeatureExtractorTest, ImportsBackOffAlongTheModulePath) {
  proto::Trace t;
  AddEvent(t, proto::Event::AUDIT, "import", 2,
           {{"module", "email.mime.text"}});
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_GT(Value(v, Family::kAudit, "import:module=email"), 0);
  EXPECT_GT(Value(v, Family::kAudit, "import:module=email.mime.text"), 0);
  EXPECT_GT(Value(v, Family::kAudit, "import:module=email"),
            Value(v, Family::kAudit, "import:module=email.mime.text"));
}

TEST(FeatureExtractorTest, CallEdgesAreNamedAndAggregated) {
  proto::Trace t;
  AddEvent(t, proto::Event::PYTHON_CALL, "builtins.isinstance", std::nullopt,
           {{"caller", "torch.storage.TypedStorage.__init__"}}, 16);
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_DOUBLE_EQ(
      Value(v, Family::kCallEdge,
            "torch.storage.TypedStorage.__init__ -> builtins.isinstance"),
      std::log1p(16));
  EXPECT_DOUBLE_EQ(Value(v, Family::kCallEdge, "mod:torch -> builtins"),
                   std::log1p(16));
  EXPECT_GT(Value(v, Family::kCallEdge, "callee:builtins"), 0);
}

struct FindingCase {
  std::string name;
  std::vector<std::pair<std::string, std::string>> args;
  std::vector<std::string> expected_tokens;
};

class IntegrityFindingTest : public ::testing::TestWithParam<FindingCase> {};

TEST_P(IntegrityFindingTest, FindingBecomesHierarchicalTokens) {
  proto::Trace t;
  AddEvent(t, proto::Event::INTEGRITY, GetParam().name, std::nullopt,
           GetParam().args, 3);
  SparseVector v = FeatureExtractor().Extract(t);
  for (const std::string& token : GetParam().expected_tokens) {
    EXPECT_GT(Value(v, Family::kIntegrity, token), 0) << token;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Findings, IntegrityFindingTest,
    ::testing::Values(
        FindingCase{"sandbox.channel.tamper",
                    {{"detail", "the body wrote to ..."}},
                    {"sandbox", "sandbox.channel", "sandbox.channel.tamper"}},
        FindingCase{"loader.hook.replaced",
                    {{"hook", "unpickler.find_class"}, {"type", "x.Unpickler"}},
                    {"loader", "loader.hook.replaced",
                     "loader.hook.replaced:hook=unpickler.find_class"}},
        FindingCase{"module.attr.rebound",
                    {{"module", "os"}, {"attr", "system"}, {"old", "b"}},
                    {"module.attr.rebound", "module.attr.rebound:os.system"}},
        FindingCase{"sys.modules.added",
                    {{"module", "webbrowser"}, {"origin", "import"}},
                    {"sys.modules.added:module=webbrowser",
                     "sys.modules.added:origin=import"}},
        FindingCase{"class.attr.rebound",
                    {{"class", "torch.nn.modules.linear.Linear"},
                     {"attr", "forward"},
                     {"old", "a"}},
                    {"class", "class.attr.rebound",
                     "class.attr.rebound:torch.nn.modules.linear.Linear."
                     "forward"}},
        FindingCase{"function.attr.rebound",
                    {{"function", "sklearn.utils.validation.check_array"},
                     {"attr", "__code__"}},
                    {"function.attr.rebound",
                     "function.attr.rebound:sklearn.utils.validation."
                     "check_array.__code__"}}));

TEST(FeatureExtractorTest, NativeEventsCarryProvenanceAndTarget) {
  proto::Trace t;
  AddEvent(t, proto::Event::PICKLE_CALL, "ctypes.CFUNCTYPE", 50,
           {{"op", "REDUCE"}});
  AddEvent(t, proto::Event::NATIVE, "ctypes.call_function", 50,
           {{"function", "0x7f0011"},
            {"target", "anon-exec"},
            {"target_prot", "rwxp"},
            {"code_hex", "c3"}});
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_GT(Value(v, Family::kNative, "ctypes.call_function@pickle"), 0);
  EXPECT_GT(Value(v, Family::kNative, "ctypes.call_function:target=anon-exec"),
            0);
  EXPECT_GT(Value(v, Family::kNative, "ctypes.call_function:target_prot=rwxp"),
            0);
  EXPECT_THAT(AllTokens(v),
              Not(Contains("native/ctypes.call_function:code_hex=c3")));
}

TEST(FeatureExtractorTest, BlockedActionsAreCountedBySyscall) {
  proto::Trace t;
  AddEvent(t, proto::Event::BLOCKED, "clone", std::nullopt,
           {{"arg0", "0x4111"}, {"errno", "EPERM"}}, 2);
  AddEvent(t, proto::Event::BLOCKED, "write", std::nullopt,
           {{"errno", "EPERM"}, {"rule", "event channel tampering"}});
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_DOUBLE_EQ(Value(v, Family::kBlocked, "clone"), std::log1p(2));
  EXPECT_DOUBLE_EQ(Value(v, Family::kBlocked, "any"), std::log1p(3));
  EXPECT_GT(Value(v, Family::kBlocked, "clone:errno=EPERM"), 0);
  EXPECT_GT(Value(v, Family::kBlocked, "write:rule=event channel tampering"),
            0);
  EXPECT_THAT(AllTokens(v), Not(Contains("blocked/clone:arg0=hex")));
}

struct ExitCase {
  proto::ChildExit::Status status;
  int signal;
  std::string expected;
};

class ExitStatusTest : public ::testing::TestWithParam<ExitCase> {};

TEST_P(ExitStatusTest, StatusIsAPresenceBit) {
  proto::Trace t;
  t.mutable_exit()->set_status(GetParam().status);
  t.mutable_exit()->set_signal(GetParam().signal);
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_DOUBLE_EQ(Value(v, Family::kExit, GetParam().expected), 1.0);
}

INSTANTIATE_TEST_SUITE_P(
    Statuses, ExitStatusTest,
    ::testing::Values(ExitCase{proto::ChildExit::OK, 0, "status:OK"},
                      ExitCase{proto::ChildExit::TIMEOUT, 9, "status:TIMEOUT"},
                      ExitCase{proto::ChildExit::TIMEOUT, 9, "signal:9"},
                      ExitCase{proto::ChildExit::SIGNALED, 11, "signal:11"},
                      ExitCase{proto::ChildExit::MEMORY_LIMIT, 0,
                               "status:MEMORY_LIMIT"}));

TEST(FeatureExtractorTest, LoadResultAndLoadedTypeAreFeatures) {
  proto::Trace t;
  t.set_loader("pickle.load");
  t.set_loaded_type("collections.OrderedDict");
  AddEvent(t, proto::Event::LOG, "dynahug.load_result", std::nullopt,
           {{"loaded", "false"},
            {"error_type", "webbrowser.Error"},
            {"error", "could not locate runnable browser"}});
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_DOUBLE_EQ(Value(v, Family::kExit, "loader:pickle.load"), 1.0);
  EXPECT_GT(Value(v, Family::kExit, "loaded_type:collections"), 0);
  EXPECT_DOUBLE_EQ(Value(v, Family::kExit, "load:loaded=false"), 1.0);
  EXPECT_GT(Value(v, Family::kExit, "load:error_type:webbrowser"), 0);
}

// --- static
// -------------------------------------------------------------------

TEST(FeatureExtractorTest, StaticStatisticsCoverEveryStreamAndNestedOnes) {
  proto::Trace t;
  proto::Member* root = t.mutable_root();
  root->set_format(proto::TORCH_ZIP);
  proto::Member* member = root->add_children();
  member->set_name("a/data.pkl");
  member->set_format(proto::RAW_PICKLE);
  member->add_notes("CRC mismatch");
  proto::PickleSummary* p = AddStream(*member, "a/data.pkl", 0, 100);
  (*p->mutable_opcode_histogram())["REDUCE"] = 4;
  p->set_opcode_count(40);
  AddStaticGlobal(*p, "collections", "OrderedDict", 2);
  proto::PickleSummary* nested = p->add_nested();
  nested->set_complete(false);
  nested->set_error("pickle: truncated at offset 812");
  (*nested->mutable_opcode_histogram())["REDUCE"] = 1;
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_DOUBLE_EQ(Value(v, Family::kStatic, "streams"), std::log1p(2));
  EXPECT_DOUBLE_EQ(Value(v, Family::kStatic, "opcode:REDUCE"), std::log1p(5));
  EXPECT_GT(Value(v, Family::kStatic, "format:TORCH_ZIP"), 0);
  EXPECT_GT(Value(v, Family::kStatic, "member.note:CRC mismatch"), 0);
  EXPECT_GT(Value(v, Family::kStatic, "global:collections.OrderedDict"), 0);
  EXPECT_GT(Value(v, Family::kStatic, "streams.nested"), 0);
  EXPECT_GT(Value(v, Family::kStatic, "incomplete"), 0);
  EXPECT_GT(Value(v, Family::kStatic, "error:pickle: truncated at offset #"),
            0);
  // No dynamic part: nothing can be called unexecuted.
  EXPECT_EQ(Value(v, Family::kStatic, "unexecuted"), 0);
}

TEST(FeatureExtractorTest, StreamsTheLoadNeverRanAreMarked) {
  proto::Trace t;
  t.mutable_exit()->set_status(proto::ChildExit::OK);
  proto::Member* root = t.mutable_root();
  root->set_format(proto::RAW_PICKLE);
  proto::PickleSummary* ran = AddStream(*root, "", 0, 50);
  AddStaticGlobal(*ran, "collections", "OrderedDict", 2);
  proto::PickleSummary* hidden = AddStream(*root, "", 50, 60);
  AddStaticGlobal(*hidden, "posix", "system", 52);
  AddGlobal(t, "collections", "OrderedDict", false, 2);
  SparseVector v = FeatureExtractor().Extract(t);
  EXPECT_DOUBLE_EQ(Value(v, Family::kStatic, "unexecuted"), std::log1p(1));
  EXPECT_GT(Value(v, Family::kStatic, "unexecuted.global:posix.system"), 0);
  EXPECT_EQ(Value(v, Family::kStatic, "unexecuted.global:collections"), 0);
  // The global still counts among all static globals.
  EXPECT_GT(Value(v, Family::kStatic, "global:posix.system"), 0);
}

TEST(FeatureExtractorTest, StaticOnlyWorksOnATraceWithoutDynamicPart) {
  proto::Trace t;
  t.mutable_root()->set_format(proto::RAW_PICKLE);
  AddStream(*t.mutable_root(), "", 0, 10)->set_opcode_count(3);
  SparseVector v =
      FeatureExtractor({.families = FamilySet::StaticOnly()}).Extract(t);
  EXPECT_FALSE(v.empty());
  for (const Feature& f : v.entries()) {
    EXPECT_EQ(FamilyOfIndex(f.index), Family::kStatic);
  }
}

TEST(FeatureExtractorTest, EmptyTraceGivesEmptyVector) {
  EXPECT_TRUE(FeatureExtractor().Extract(proto::Trace()).empty());
}

}  // namespace
}  // namespace dynahug::features

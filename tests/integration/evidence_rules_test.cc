// Unit test of the evidence rules and their attribution (evidence_rules.h) on
// hand-built traces shaped like real ones: the library noise the benign
// corpus showed (an IPv6 probe while find_class imports urllib3, torch's
// temporary directory outside the unpickler, pyexpat's submodules) is not
// evidence; the same actions inside a payload's call opcode are.
#include "tests/integration/evidence_rules.h"

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace dynahug::integration {
namespace {

using Args = std::initializer_list<std::pair<const char*, const char*>>;

class TraceBuilder {
 public:
  TraceBuilder& Add(proto::Event::Kind kind, const char* name, Args args = {},
                    std::optional<uint64_t> offset = std::nullopt,
                    const char* member = "") {
    proto::Event* e = trace_.add_events();
    e->set_kind(kind);
    e->set_name(name);
    for (const auto& [k, v] : args) {
      proto::Argument* a = e->add_args();
      a->set_key(k);
      a->set_value(v);
    }
    if (offset.has_value()) e->set_pickle_offset(*offset);
    e->set_member(member);
    return *this;
  }
  TraceBuilder& Blocked(const char* syscall) {
    Add(proto::Event::BLOCKED, syscall, {{"errno", "EPERM"}});
    trace_.mutable_events(trace_.events_size() - 1)->set_blocked(true);
    return *this;
  }
  TraceBuilder& Call(const char* callee, uint64_t offset,
                     const char* op = "REDUCE", const char* member = "") {
    return Add(proto::Event::PICKLE_CALL, callee, {{"op", op}}, offset, member);
  }
  TraceBuilder& Global(const char* name, uint64_t offset) {
    return Add(proto::Event::GLOBAL, name, {}, offset);
  }
  const proto::Trace& trace() const { return trace_; }

 private:
  proto::Trace trace_;
};

constexpr auto kAudit = proto::Event::AUDIT;
constexpr auto kIntegrity = proto::Event::INTEGRITY;

TEST(EvidenceRulesTest, EveryEffectOfTheCorpusHasARule) {
  for (const char* effect : {"exec", "connect", "file-write", "tamper",
                             "delayed", "import", "nested-load"}) {
    EXPECT_TRUE(HasEvidenceRule(effect)) << effect;
    EXPECT_FALSE(EvidenceRuleText(effect).empty()) << effect;
  }
  EXPECT_FALSE(HasEvidenceRule("teleport"));
  EXPECT_TRUE(
      FindEvidence(TraceBuilder().Call("posix.system", 5).trace(), "teleport")
          .empty());
}

TEST(EvidenceRulesTest, SocketProbeWhileAGlobalImportsALibraryIsNotConnect) {
  // urllib3.util.connection probes IPv6 when find_class imports it.
  TraceBuilder t;
  t.Global("torchvision.models.convnext.ConvNeXt", 2)
      .Add(kAudit, "import", {{"module", "urllib3.util.wait"}}, 2)
      .Blocked("socket")
      .Add(kAudit, "socket.__new__", {{"family", "AF_INET6"}}, 2)
      .Call("collections.OrderedDict", 40);
  EXPECT_TRUE(FindEvidence(t.trace(), "connect").empty());
}

TEST(EvidenceRulesTest, SocketInsideThePayloadsCallIsConnect) {
  TraceBuilder t;
  t.Global("socket.create_connection", 2)
      .Call("socket.create_connection", 60)
      .Add(kAudit, "socket.__new__", {{"family", "AF_INET"}}, 60)
      .Blocked("socket");
  EXPECT_EQ(FindEvidence(t.trace(), "connect"), (std::vector<int>{2, 3}));
}

TEST(EvidenceRulesTest, LibraryWorkOutsideTheUnpicklerIsNotEvidence) {
  // torch unpacks a legacy tar into a temporary directory before unpickling:
  // no offsets, and a denied connect right after those events.
  TraceBuilder t;
  t.Add(kAudit, "tempfile.mkdtemp", {{"0", "tmp"}})
      .Add(kAudit, "os.mkdir", {{"0", "tmp"}})
      .Blocked("connect")
      .Add(kAudit, "open", {{"path", "tmp"}, {"mode", "w"}})
      .Add(kAudit, "os.chmod", {{"0", "tmp"}})
      .Call("torch._utils._rebuild_tensor_v2", 90);
  for (const std::string& effect : EvidenceEffects()) {
    EXPECT_TRUE(FindEvidence(t.trace(), effect).empty()) << effect;
  }
}

TEST(EvidenceRulesTest, WritesAndProcessesOfThePayloadsCallAreEvidence) {
  // exec('import os; os.makedirs(...); open(..., "w"); os.system(...)');
  // the denied clone arrives before the os.system audit event.
  TraceBuilder t;
  t.Call("builtins.exec", 155)
      .Add(kAudit, "exec", {}, 155)
      .Add(kAudit, "os.mkdir", {{"0", "tmp"}}, 155)
      .Add(kAudit, "open", {{"path", "tmp"}, {"mode", "w"}}, 155)
      .Add(proto::Event::PYTHON_CALL, "os.system")  // never carries offsets
      .Blocked("clone")
      .Add(kAudit, "os.system", {{"executable", "/bin/true"}}, 155);
  EXPECT_EQ(FindEvidence(t.trace(), "file-write"), (std::vector<int>{2, 3}));
  EXPECT_EQ(FindEvidence(t.trace(), "exec"), (std::vector<int>{5, 6}));
}

TEST(EvidenceRulesTest, WritesInScratchOrReadOnlyOpensAreNotFileWrite) {
  TraceBuilder t;
  t.Call("builtins.open", 10)
      .Add(kAudit, "open", {{"path", "scratch"}, {"mode", "w"}}, 10)
      .Add(kAudit, "open", {{"path", "system"}, {"mode", "r"}}, 10);
  EXPECT_TRUE(FindEvidence(t.trace(), "file-write").empty());
}

TEST(EvidenceRulesTest, PersistentLoadIsTheLibrarysCallNotThePayloads) {
  // BINPERSID calls torch's persistent_load; what it does is not payload.
  TraceBuilder t;
  t.Call("persistent_load", 30, "PERSID")
      .Add(kAudit, "open", {{"path", "tmp"}, {"mode", "w"}}, 30)
      .Blocked("socket");
  EXPECT_EQ(PayloadCausedEvents(t.trace()),
            (std::vector<bool>{false, false, false}));
  EXPECT_TRUE(FindEvidence(t.trace(), "file-write").empty());
  EXPECT_TRUE(FindEvidence(t.trace(), "connect").empty());
}

TEST(EvidenceRulesTest, EventsBelongToTheOpcodeRunningWhenTheyHappen) {
  // Audit events name the loaded target, unpickler events the stream in it.
  TraceBuilder t;
  t.Call("runpy._run_code", 163, "REDUCE", "archive/data.pkl")
      .Add(kAudit, "os.mkdir", {{"0", "tmp"}}, 163, "weights.pth")
      .Add(proto::Event::NATIVE, "ctypes.dlopen", {}, 163, "weights.pth")
      .Global("collections.OrderedDict", 165)
      .Add(kAudit, "import", {{"module", "collections"}}, 165, "weights.pth")
      // Same offset as the first call, but in another member's stream.
      .Call("collections.OrderedDict", 193, "REDUCE", "b/data.pkl")
      .Add(kAudit, "os.mkdir", {{"0", "tmp"}}, 163, "b.pth");
  EXPECT_EQ(PayloadCausedEvents(t.trace()),
            (std::vector<bool>{true, true, true, false, false, true, false}));
}

TEST(EvidenceRulesTest, ImportSideEffectsInSysModulesAreNotTamper) {
  TraceBuilder t;
  t.Add(kAudit, "import", {{"module", "pyexpat"}}, 2)
      .Add(kIntegrity, "sys.modules.added",
           {{"module", "pyexpat"}, {"origin", "import"}})
      .Add(kIntegrity, "sys.modules.added",
           {{"module", "pyexpat.errors"}, {"origin", "no-spec"}})
      .Add(kIntegrity, "integrity.truncated", {{"not_emitted", "137"}});
  EXPECT_TRUE(FindEvidence(t.trace(), "tamper").empty());
}

TEST(EvidenceRulesTest, ModulesNoImportExplainsAreTamper) {
  TraceBuilder t;
  t.Add(kIntegrity, "sys.modules.added",
        {{"module", "evil"}, {"origin", "no-spec"}})
      .Add(kIntegrity, "sys.modules.added",
           {{"module", "unimported.child"}, {"origin", "no-spec"}})
      .Add(kIntegrity, "sys.modules.added",
           {{"module", "typing.io"}, {"origin", "non-module:type:typing.io"}})
      .Add(kIntegrity, "module.attr.rebound",
           {{"module", "os"}, {"attr", "system"}});
  EXPECT_EQ(FindEvidence(t.trace(), "tamper"), (std::vector<int>{0, 1, 2, 3}));
}

TEST(EvidenceRulesTest, MutatorCallsAreTamperOnlyWhenThePickleMakesThem) {
  TraceBuilder t;
  t.Call("builtins.setattr", 12)
      .Add(kAudit, "os.putenv", {{"0", "X"}}, 12)
      .Call("builtins.module.__dict__", 20, "BUILD")
      .Call("builtins.function.__dict__", 24, "BUILD")  // dill functions
      .Add(kAudit, "os.putenv", {{"0", "X"}});          // no offset: library
  EXPECT_EQ(FindEvidence(t.trace(), "tamper"), (std::vector<int>{0, 1, 2}));
}

TEST(EvidenceRulesTest, DeferredRegistrationsAreDelayed) {
  TraceBuilder t;
  t.Call("atexit.register", 8)
      .Add(kIntegrity, "atexit.registered", {{"before", "0"}, {"after", "1"}});
  EXPECT_EQ(FindEvidence(t.trace(), "delayed"), (std::vector<int>{0, 1}));
  EXPECT_TRUE(FindEvidence(t.trace(), "tamper").empty());
}

TEST(EvidenceRulesTest, ImportAndNestedLoadNeedThePicklesOwnCall) {
  TraceBuilder t;
  t.Call("builtins.__import__", 4)
      .Call("pickle.loads", 9)
      .Add(proto::Event::PICKLE_CALL, "pickle.loads", {{"op", "more"}});
  EXPECT_EQ(FindEvidence(t.trace(), "import"), (std::vector<int>{0}));
  EXPECT_EQ(FindEvidence(t.trace(), "nested-load"), (std::vector<int>{1}));
}

}  // namespace
}  // namespace dynahug::integration

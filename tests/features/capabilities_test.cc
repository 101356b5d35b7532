// Capabilities (features/capabilities.h) on hand-built traces and on real
// traces committed under testdata/. The attribution rules themselves are
// also exercised by tests/integration/evidence_rules_test.cc (the
// integration tests' evidence rules are these capabilities).
#include "features/capabilities.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/features/real_traces.h"
#include "tests/features/synthetic_traces.h"

namespace dynahug::features {
namespace {

using testing::AddEvent;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> Names(const std::vector<CapabilityFinding>& found) {
  std::vector<std::string> out;
  for (const CapabilityFinding& f : found) {
    out.emplace_back(CapabilityName(f.capability));
  }
  return out;
}

TEST(CapabilitiesTest, NamesRoundTripAndEveryRuleHasText) {
  ASSERT_EQ(AllCapabilities().size(), static_cast<size_t>(kCapabilityCount));
  for (Capability c : AllCapabilities()) {
    EXPECT_EQ(ParseCapability(CapabilityName(c)), c);
    EXPECT_FALSE(CapabilityRuleText(c).empty()) << CapabilityName(c);
  }
  EXPECT_FALSE(ParseCapability("teleport").has_value());
}

TEST(CapabilitiesTest, BenignLoadsShowNone) {
  EXPECT_THAT(FindCapabilities(testing::TorchTrace(1, 0)), IsEmpty());
  EXPECT_THAT(FindCapabilities(testing::SklearnTrace(2, 1)), IsEmpty());
}

TEST(CapabilitiesTest, PayloadProcessNamesCallOpcodeOffsetMemberAndDenial) {
  const proto::Trace t = testing::WithPayload(testing::TorchTrace(0, 0));
  const std::vector<CapabilityFinding> found = FindCapabilities(t);
  ASSERT_THAT(Names(found), ElementsAre("process"));
  EXPECT_EQ(found[0].evidence,
            "posix.system called by REDUCE at offset 28 in archive/data.pkl: "
            "audit os.system executable=/bin/true; clone blocked (2 events)");
  EXPECT_EQ(found[0].events, (std::vector<int>{3, 4}));
}

TEST(CapabilitiesTest, LibraryNoiseOutsideThePayloadIsNot) {
  // A socket probe while find_class imports a library, a temporary
  // directory made outside the unpickler, a write-mode open in scratch.
  proto::Trace t;
  AddEvent(t, proto::Event::GLOBAL, "urllib3.util.connection.X", {}, 2);
  AddEvent(t, proto::Event::AUDIT, "socket.__new__", {{"family", "AF_INET6"}},
           2);
  AddEvent(t, proto::Event::AUDIT, "os.mkdir", {{"0", "tmp"}});
  AddEvent(t, proto::Event::PICKLE_CALL, "builtins.open", {{"op", "REDUCE"}},
           10);
  AddEvent(t, proto::Event::AUDIT, "open", {{"path", "scratch"}, {"mode", "w"}},
           10);
  EXPECT_THAT(FindCapabilities(t), IsEmpty());
}

// What runs in the child's shutdown phase (atexit handlers, timers,
// threads) is attributed to the payload's registration of deferred work;
// without one, it is the libraries' (e.g. their own atexit handlers).
TEST(CapabilitiesTest, ShutdownPhaseIsAttributedToThePayloadsRegistration) {
  auto shutdown = [](proto::Trace& t) {
    AddEvent(t, proto::Event::LOG, "shutdown.begin", {{"atexit", "1"}});
    AddEvent(t, proto::Event::AUDIT, "os.system",
             {{"executable", "/bin/true"}});
    AddEvent(t, proto::Event::BLOCKED, "clone")->set_blocked(true);
    AddEvent(t, proto::Event::LOG, "shutdown.end", {{"threads_left", "0"}});
  };
  proto::Trace registered;
  AddEvent(registered, proto::Event::PICKLE_CALL, "atexit.register",
           {{"op", "REDUCE"}, {"0", "posix.system"}}, 40);
  shutdown(registered);
  const std::vector<CapabilityFinding> found = FindCapabilities(registered);
  ASSERT_THAT(Names(found), ElementsAre("process", "deferred"));
  EXPECT_THAT(found[0].evidence,
              HasSubstr("atexit.register called by REDUCE at offset 40: "
                        "audit os.system"));
  EXPECT_EQ(found[0].events, (std::vector<int>{2, 3}));

  // No registration by the payload: the same shutdown events are not its.
  proto::Trace library;
  AddEvent(library, proto::Event::PICKLE_CALL, "collections.OrderedDict",
           {{"op", "REDUCE"}}, 40);
  shutdown(library);
  EXPECT_THAT(FindCapabilities(library), IsEmpty());

  // Events after shutdown.end are not the phase's.
  proto::Trace after = registered;
  after.mutable_events()->SwapElements(2, 4);  // os.system after the end
  after.mutable_events()->SwapElements(3, 4);  // clone after it
  EXPECT_THAT(Names(FindCapabilities(after)), ElementsAre("deferred"));
}

TEST(CapabilitiesTest, ExecOfPickleSourceIsExecSourceButImportMachineryIsNot) {
  proto::Trace lib;
  AddEvent(lib, proto::Event::AUDIT, "pickle.find_class",
           {{"module", "webbrowser"}, {"name", "get"}}, 2);
  AddEvent(lib, proto::Event::AUDIT, "import", {{"module", "webbrowser"}}, 2);
  AddEvent(lib, proto::Event::AUDIT, "exec",
           {{"name", "<module>"}, {"filename", "python-lib"}}, 2);
  EXPECT_THAT(FindCapabilityEvents(lib, Capability::kExecSource), IsEmpty());

  proto::Trace payload;
  AddEvent(payload, proto::Event::PICKLE_CALL, "builtins.exec",
           {{"op", "REDUCE"}, {"0", "str.code:import os"}}, 40);
  AddEvent(payload, proto::Event::AUDIT, "compile", {{"filename", "<string>"}},
           40);
  AddEvent(payload, proto::Event::AUDIT, "exec",
           {{"name", "<module>"}, {"filename", "<string>"}}, 40);
  EXPECT_EQ(FindCapabilityEvents(payload, Capability::kExecSource),
            (std::vector<int>{1, 2}));
}

TEST(CapabilitiesTest, NativeCodeInAnonymousOrWritableMemory) {
  proto::Trace t;
  AddEvent(t, proto::Event::NATIVE, "ctypes.call_function",
           {{"target", "file-exec"}, {"target_prot", "r-xp"}});
  EXPECT_THAT(FindCapabilities(t), IsEmpty());
  AddEvent(t, proto::Event::NATIVE, "ctypes.call_function",
           {{"target", "anonymous-exec"}, {"target_prot", "rwxs"}});
  AddEvent(t, proto::Event::NATIVE, "ctypes.cdata",
           {{"target", "heap"}, {"target_prot", "rwxp"}});
  EXPECT_EQ(FindCapabilityEvents(t, Capability::kNativeAnonExec),
            (std::vector<int>{1, 2}));
}

TEST(CapabilitiesTest, StubCalledWithCodeIsStubCodeCall) {
  proto::Trace t;
  AddEvent(t, proto::Event::PICKLE_CALL, "transformers.TrainingArguments",
           {{"op", "REDUCE"}, {"stub", "true"}, {"0", "str:output"}}, 5);
  EXPECT_THAT(FindCapabilities(t), IsEmpty());
  AddEvent(t, proto::Event::PICKLE_CALL, "idlelib.run.exec",
           {{"op", "REDUCE"},
            {"stub", "true"},
            {"0", "str:import os; os.system('x')"}},
           9);
  EXPECT_THAT(Names(FindCapabilities(t)), ElementsAre("stub-code-call"));
}

TEST(CapabilitiesTest, ImportSideEffectsAreNotTamperButChangesAre) {
  proto::Trace t;
  AddEvent(t, proto::Event::AUDIT, "import", {{"module", "threading"}}, 2);
  AddEvent(t, proto::Event::AUDIT, "import", {{"module", "typing"}}, 2);
  AddEvent(t, proto::Event::INTEGRITY, "loader.hook.disabled",
           {{"hook", "threading.setprofile"}});
  AddEvent(t, proto::Event::INTEGRITY, "sys.modules.added",
           {{"module", "typing.io"}, {"origin", "non-module:type:typing.io"}});
  EXPECT_THAT(FindCapabilities(t), IsEmpty());
  AddEvent(t, proto::Event::INTEGRITY, "loader.hook.disabled",
           {{"hook", "audit.hook"}});
  AddEvent(t, proto::Event::INTEGRITY, "sandbox.channel.tamper",
           {{"syscall", "close"}});
  const std::vector<CapabilityFinding> found = FindCapabilities(t);
  ASSERT_THAT(Names(found), ElementsAre("namespace-tamper"));
  EXPECT_EQ(found[0].events, (std::vector<int>{4, 5}));
  EXPECT_THAT(found[0].evidence, HasSubstr("after the load"));
  EXPECT_THAT(found[0].evidence,
              HasSubstr("loader.hook.disabled hook=audit.hook"));
}

TEST(CapabilitiesTest, ThreadingHooksChangedWithoutAnImportAreTamper) {
  proto::Trace t;
  AddEvent(t, proto::Event::INTEGRITY, "loader.hook.disabled",
           {{"hook", "threading.settrace"}});
  EXPECT_THAT(Names(FindCapabilities(t)), ElementsAre("namespace-tamper"));
}

// --- real traces (testdata/README.md) ---------------------------------------

TEST(CapabilitiesRealTraceTest, OsSystemIsProcessWithItsOffsetAndDenial) {
  const std::vector<CapabilityFinding> found =
      FindCapabilities(testing::LoadTrace("os_system_true.trace.json"));
  ASSERT_THAT(Names(found), ElementsAre("process"));
  EXPECT_THAT(found[0].evidence,
              HasSubstr("os.system called by REDUCE at offset 28"));
  EXPECT_THAT(found[0].evidence, HasSubstr("clone blocked"));
}

TEST(CapabilitiesRealTraceTest, ExecOfSourceWritingTmpIsExecSourceAndWrite) {
  const std::vector<CapabilityFinding> found =
      FindCapabilities(testing::LoadTrace("exec_string.trace.json"));
  EXPECT_THAT(Names(found),
              ElementsAre("write-outside-scratch", "exec-source"));
  for (const CapabilityFinding& f : found) {
    EXPECT_THAT(f.evidence, HasSubstr("builtins.exec called by REDUCE"));
  }
}

TEST(CapabilitiesRealTraceTest, BenignStateDictAndAnImportOnlyGlobalShowNone) {
  EXPECT_THAT(
      FindCapabilities(testing::LoadTrace("tiny_mlp_state_dict.trace.json")),
      IsEmpty());
  // GLOBAL webbrowser.get imports webbrowser, subprocess, threading...: its
  // module code and sys.modules additions are import side effects; the
  // REDUCE of webbrowser.get() itself does nothing a rule names.
  EXPECT_THAT(FindCapabilities(
                  testing::LoadTrace("global_import_webbrowser.trace.json")),
              IsEmpty());
}

}  // namespace
}  // namespace dynahug::features

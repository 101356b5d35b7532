// The loader bridge: argument checking, bounds, sink switching. (The
// instrumented unpickler built on it is tested end to end in
// tests/runtime/embed_loader_test.)
#include "gtest/gtest.h"
#include "hooks/audit_hook.h"
#include "hooks/unpickler_hooks.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::hooks {
namespace {

using dynahug::testing::SharedInterpreter;

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SharedInterpreter();
    absl::StatusOr<PyRef> b = CreateUnpicklerBridge();
    ASSERT_TRUE(b.ok());
    globals_ = PyRef(PyDict_New());
    PyDict_SetItemString(globals_.get(), "__builtins__", PyEval_GetBuiltins());
    PyDict_SetItemString(globals_.get(), "dh", b->get());
  }
  void TearDown() override { SetBridgeSink(nullptr); }
  // Runs `code` as allowed bridge caller code (like the loader's own) or,
  // with allowed = false, as foreign code; returns "" or the exception
  // type name.
  std::string Run(const char* code, bool allowed = true) {
    PyRef compiled(Py_CompileString(code, "<bridge-test>", Py_file_input));
    if (!compiled) return "compile";
    if (allowed && !AllowBridgeCaller(compiled.get()).ok()) return "allow";
    PyRef r(PyEval_EvalCode(compiled.get(), globals_.get(), globals_.get()));
    if (r) return "";
    absl::Status s = StatusFromPyErr("run");
    std::string m(s.message());
    return m.substr(5, m.find(':', 5) - 5);
  }
  PyRef globals_;
};

TEST_F(BridgeTest, EmitBuildsEvents) {
  MemoryEventSink sink;
  SetBridgeSink(&sink);
  ASSERT_EQ(Run("dh.emit(2, 'os.system', (('module', 'os'), ('name', "
                "'system')), 17)\n"
                "dh.emit(9, 'STOP', (), -1, 3, 'archive/data.pkl')\n"),
            "");
  ASSERT_EQ(sink.events().size(), 2u);
  const proto::Event& g = sink.events()[0];
  EXPECT_EQ(g.kind(), proto::Event::GLOBAL);
  EXPECT_EQ(g.name(), "os.system");
  ASSERT_EQ(g.args_size(), 2);
  EXPECT_EQ(g.args(1).value(), "system");
  EXPECT_EQ(g.pickle_offset(), 17u);
  const proto::Event& o = sink.events()[1];
  EXPECT_FALSE(o.has_pickle_offset());
  EXPECT_EQ(o.count(), 3u);
  EXPECT_EQ(o.member(), "archive/data.pkl");
}

TEST_F(BridgeTest, EmitErrorsAndBounds) {
  MemoryEventSink sink;
  SetBridgeSink(&sink);
  struct Case {
    const char* code;
    const char* error;
  } cases[] = {
      {"dh.emit(999, 'x', ())", "builtins.ValueError"},
      {"dh.emit(2, 'x', [])", "builtins.TypeError"},
      {"dh.emit(2, b'x', ())", "builtins.TypeError"},
      {"dh.emit()", "builtins.TypeError"},
      {"dh.set_offset('a')", "builtins.TypeError"},
  };
  for (const Case& c : cases) EXPECT_EQ(Run(c.code), c.error) << c.code;
  EXPECT_TRUE(sink.events().empty());
  ASSERT_EQ(Run("dh.emit(11, 'n' * 1000, tuple((str(i), 'v' * 1000) for i in "
                "range(40)) + (1, ('a',)))"),
            "");
  ASSERT_EQ(sink.events().size(), 1u);
  const proto::Event& e = sink.events()[0];
  EXPECT_LE(e.args_size(), kBridgeMaxArgs);
  EXPECT_LE(e.name().size(), kBridgeMaxValueBytes + 3);
  EXPECT_LE(e.args(0).value().size(), kBridgeMaxValueBytes + 3);
}

TEST_F(BridgeTest, NoSinkDropsAndOffsetReachesTheAuditHook) {
  SetBridgeSink(nullptr);
  EXPECT_EQ(Run("dh.emit(2, 'x', ())"), "");
  AuditHook& hook = AuditHook::Instance();
  MemoryEventSink sink;
  hook.Start(&sink, {});
  SetBridgeSink(&sink);
  hook.SetRecording(true);
  ASSERT_EQ(Run("dh.set_offset(99)\n"
                "import sys\nsys.audit('dynahug.bridge.t')\n"
                "dh.set_offset(-1)\n"
                "assert dh.ident(sys) == id(sys)\n"),
            "");
  hook.Stop();
  SetBridgeSink(nullptr);
  int seen = 0;
  for (const auto& e : sink.events()) {
    if (e.name() == "dynahug.bridge.t") {
      ++seen;
      EXPECT_EQ(e.pickle_offset(), 99u);
    }
  }
  EXPECT_EQ(seen, 1);
}

// The bridge has no recording switch a payload could reach.
TEST_F(BridgeTest, HasNoRecordingSwitch) {
  EXPECT_EQ(Run("dh.set_recording(False)"), "builtins.AttributeError");
  EXPECT_EQ(Run("dh.__dict__['set_recording']"), "builtins.KeyError");
}

// Calls from code that was not registered (a payload holding the bridge)
// are dropped and reported once per load with the first caller.
TEST_F(BridgeTest, ForeignCallsAreDroppedAndReported) {
  MemoryEventSink sink;
  SetBridgeSink(&sink);
  AuditHook& hook = AuditHook::Instance();
  hook.Start(&sink, {});
  hook.SetRecording(true);
  ASSERT_EQ(Run("def forge():\n"
                "    dh.emit(3, 'forged', ())\n"
                "    dh.set_offset(7)\n"
                "    dh.watch(object())\n"
                "forge()\n"
                "import sys\nsys.audit('dynahug.bridge.f')\n",
                /*allowed=*/false),
            "");
  hook.Stop();
  SetBridgeSink(nullptr);
  for (const auto& e : sink.events()) {
    EXPECT_NE(e.name(), "forged");
    if (e.name() == "dynahug.bridge.f") {
      EXPECT_FALSE(e.has_pickle_offset());
    }
  }
  MemoryEventSink findings;
  EXPECT_EQ(TakeBridgeFindings(findings), 1u);
  ASSERT_EQ(findings.events().size(), 1u);
  const proto::Event& f = findings.events()[0];
  EXPECT_EQ(f.kind(), proto::Event::INTEGRITY);
  EXPECT_EQ(f.name(), "loader.bridge.foreign_call");
  EXPECT_EQ(f.args(0).value(), "3");
  EXPECT_EQ(f.args(1).value(), "forge (<bridge-test>)");
  // Taken: reported once.
  MemoryEventSink again;
  EXPECT_EQ(TakeBridgeFindings(again), 0u);
}

// watch(): an unpickler whose instance find_class is rebound after it was
// registered is reported; one left alone is not.
TEST_F(BridgeTest, WatchedFindClassRebindingIsReported) {
  MemoryEventSink sink;
  SetBridgeSink(&sink);
  ASSERT_EQ(Run("import pickle, io\n"
                "a = pickle._Unpickler(io.BytesIO(b'N.'))\n"
                "b = pickle._Unpickler(io.BytesIO(b'N.'))\n"
                "a.find_class = lambda m, n: None\n"
                "b.find_class = lambda m, n: None\n"
                "dh.watch(a)\ndh.watch(b)\n"
                "b.find_class = pickle._Unpickler.find_class.__get__(b)\n"),
            "");
  SetBridgeSink(nullptr);
  MemoryEventSink findings;
  EXPECT_EQ(TakeBridgeFindings(findings), 1u);
  ASSERT_EQ(findings.events().size(), 1u);
  EXPECT_EQ(findings.events()[0].name(), "loader.hook.replaced");
  EXPECT_EQ(findings.events()[0].args(0).value(), "unpickler.find_class");
}

}  // namespace
}  // namespace dynahug::hooks

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
using runtime::PyRef;

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
  // Runs `code`; returns "" or the exception type name.
  std::string Run(const char* code) {
    PyRef r(PyRun_String(code, Py_file_input, globals_.get(), globals_.get()));
    if (r) return "";
    absl::Status s = runtime::StatusFromPyErr("run");
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

TEST_F(BridgeTest, NoSinkDropsAndControlsReachTheAuditHook) {
  SetBridgeSink(nullptr);
  EXPECT_EQ(Run("dh.emit(2, 'x', ())"), "");
  AuditHook& hook = AuditHook::Instance();
  MemoryEventSink sink;
  hook.Start(&sink, {});
  uint64_t toggles = hook.recording_toggles();
  ASSERT_EQ(Run("dh.set_offset(99)\ndh.set_recording(True)\n"
                "import sys\nsys.audit('dynahug.bridge.t')\n"
                "dh.set_recording(False)\ndh.set_offset(-1)\n"
                "sys.audit('dynahug.bridge.t')\n"
                "assert dh.ident(sys) == id(sys)\n"),
            "");
  hook.Stop();
  EXPECT_EQ(hook.recording_toggles() - toggles, 2u);
  int seen = 0;
  for (const auto& e : sink.events()) {
    if (e.name() == "dynahug.bridge.t") {
      ++seen;
      EXPECT_EQ(e.pickle_offset(), 99u);
    }
  }
  EXPECT_EQ(seen, 1);
}

}  // namespace
}  // namespace dynahug::hooks

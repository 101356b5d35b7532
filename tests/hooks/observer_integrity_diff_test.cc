// Integrity diff: a clean interval has no findings; each benign
// self-inflicted change made by the test after the snapshot is found.
#include "gtest/gtest.h"
#include "hooks/integrity_diff.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::hooks {
namespace {

using dynahug::testing::SharedInterpreter;

std::vector<proto::Event> Diff(const IntegritySnapshot& snap) {
  MemoryEventSink sink;
  absl::StatusOr<size_t> n = snap.DiffAndEmit(sink);
  EXPECT_TRUE(n.ok()) << n.status();
  return sink.events();
}

bool Has(const std::vector<proto::Event>& events, const std::string& name,
         const std::string& arg_value = "") {
  for (const auto& e : events) {
    if (e.kind() != proto::Event::INTEGRITY || e.name() != name) continue;
    if (arg_value.empty()) return true;
    for (const auto& a : e.args()) {
      if (a.value() == arg_value) return true;
    }
  }
  return false;
}

TEST(ObserverIntegrityDiffTest, NoChangeNoFindings) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Preimport({"os", "threading", "atexit", "json"}).ok());
  absl::StatusOr<IntegritySnapshot> snap = IntegritySnapshot::Take();
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(Diff(*snap).empty());
}

// A snapshot taken in the zygote is diffed in a forked child, where
// CPython's fork protocol (threading._after_fork) has rebound a few threading
// attributes: those are not findings, a real rebinding still is.
TEST(ObserverIntegrityDiffTest, ForkProtocolRebindingsAreNotFindings) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Preimport({"threading"}).ok());
  absl::StatusOr<IntegritySnapshot> snap = IntegritySnapshot::Take();
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(py.Exec("import threading\n"
                      "threading._active_limbo_lock = threading.RLock()\n"
                      "threading._shutdown_locks_lock = "
                      "threading._allocate_lock()\n"
                      "threading._shutdown_locks = set()\n")
                  .ok());
  EXPECT_FALSE(Has(Diff(*snap), "module.attr.rebound"));
  ASSERT_TRUE(py.Exec("import threading\n"
                      "_saved = threading.excepthook\n"
                      "threading.excepthook = print\n")
                  .ok());
  EXPECT_TRUE(Has(Diff(*snap), "module.attr.rebound", "excepthook"));
  ASSERT_TRUE(
      py.Exec("import threading\nthreading.excepthook = threading.__excepthook__\n")
          .ok());
}

// Each case mutates interpreter state after the snapshot, expects a finding,
// then undoes the change (where possible) so later cases start clean.
TEST(ObserverIntegrityDiffTest, DetectsSelfInflictedChanges) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Preimport({"os", "threading", "atexit", "json"}).ok());
  struct Case {
    const char* change;
    const char* undo;
    const char* finding;
    const char* arg;
  } cases[] = {
      {"import os\nos._dh_saved = os.getcwd\nos.getcwd = lambda: '/'",
       "import os\nos.getcwd = os._dh_saved\ndel os._dh_saved",
       "module.attr.rebound", "getcwd"},
      {"import builtins\nbuiltins._dh_saved = builtins.open\n"
       "builtins.open = lambda *a, **k: None",
       "import builtins\nbuiltins.open = builtins._dh_saved\n"
       "del builtins._dh_saved",
       "module.attr.rebound", "open"},
      {"import os\nos._dh_new_attr = 1", "import os\ndel os._dh_new_attr",
       "module.attr.added", "_dh_new_attr"},
      {"import sys, types\nsys.modules['dh_injected'] = types.ModuleType('x')",
       "import sys\ndel sys.modules['dh_injected']", "sys.modules.added",
       "no-spec"},
      {"import sys, types\nsys.modules['_dh_saved'] = sys.modules['json']\n"
       "sys.modules['json'] = types.ModuleType('json')",
       "import sys\nsys.modules['json'] = sys.modules.pop('_dh_saved')",
       "sys.modules.replaced", "json"},
      {"import sys\nsys.meta_path.insert(0, object())",
       "import sys\nsys.meta_path.pop(0)", "sys.meta_path.changed", ""},
      {"import sys\nsys.excepthook = lambda *a: None",
       "import sys\nsys.excepthook = sys.__excepthook__", "module.attr.rebound",
       "excepthook"},
      {"import sys\nsys.settrace(lambda *a: None)",
       "import sys\nsys.settrace(None)", "sys.settrace", ""},
      {"import atexit\natexit.register(int)",
       "import atexit\natexit.unregister(int)", "atexit.registered", ""},
      {"import threading\n_dh_ev = threading.Event()\n"
       "_dh_t = threading.Thread(target=_dh_ev.wait)\n_dh_t.start()\n"
       "import builtins\nbuiltins._dh_thread = (_dh_ev, _dh_t)",
       "import builtins\ne, t = builtins._dh_thread\ndel builtins._dh_thread\n"
       "e.set()\nt.join()",
       "threads.started", ""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<IntegritySnapshot> snap = IntegritySnapshot::Take();
    ASSERT_TRUE(snap.ok());
    absl::Status changed = py.Exec(c.change);
    ASSERT_TRUE(changed.ok()) << c.change << ": " << changed;
    std::vector<proto::Event> found = Diff(*snap);
    EXPECT_TRUE(Has(found, c.finding, c.arg)) << c.change;
    ASSERT_TRUE(py.Exec(c.undo).ok()) << c.undo;
  }
}

TEST(ObserverIntegrityDiffTest, FindingsAreBounded) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Preimport({"types"}).ok());
  IntegrityOptions options;
  options.max_findings = 3;
  absl::StatusOr<IntegritySnapshot> snap = IntegritySnapshot::Take(options);
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(py.Exec("import sys, types\n"
                      "for i in range(10): sys.modules['dh_many_%d' % i] = "
                      "types.ModuleType('m')")
                  .ok());
  MemoryEventSink sink;
  absl::StatusOr<size_t> n = snap->DiffAndEmit(sink);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u);
  ASSERT_EQ(sink.events().size(), 4u);
  EXPECT_EQ(sink.events().back().name(), "integrity.truncated");
  EXPECT_EQ(sink.events().back().args(0).value(), "7");
  ASSERT_TRUE(py.Exec("import sys\n"
                      "for i in range(10): del sys.modules['dh_many_%d' % i]")
                  .ok());
}

}  // namespace
}  // namespace dynahug::hooks

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

// A fresh package "dh_lib" standing in for an allowlisted library: a class
// with a method, a staticmethod, a property and a helper, a base class that is
// reachable only through the MRO, functions with defaults, keyword defaults
// and a closure.
constexpr char kLibrary[] = R"py(
import sys, types, copyreg
m = types.ModuleType('dh_lib')
exec('''
class _HiddenBase:
    def base_method(self): return 0
class Model(_HiddenBase):
    def forward(self, x): return x
    def helper(self): return 1
    @staticmethod
    def build(): return 2
    @property
    def size(self): return 3
class Other: pass
def scale(x, factor=2): return x * factor
def keyword(x, *, factor=2): return x * factor
def _make():
    hidden = 10
    def closure_fn(): return hidden
    return closure_fn
closure_fn = _make()
def wrap(f):
    import functools
    @functools.wraps(f)
    def wrapper(*a, **k): return f(*a, **k)
    return wrapper
del _HiddenBase
''', m.__dict__)
sys.modules['dh_lib'] = m
)py";

IntegrityOptions LibraryOptions() {
  IntegrityOptions options;
  options.library_packages = {"dh_lib"};
  return options;
}

TEST(ObserverIntegrityDiffTest, WatchesLibraryClassesAndFunctions) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Exec(kLibrary).ok());
  absl::StatusOr<IntegritySnapshot> snap =
      IntegritySnapshot::Take(LibraryOptions());
  ASSERT_TRUE(snap.ok());
  // Model, _HiddenBase (through the MRO), Other.
  EXPECT_EQ(snap->library_classes(), 3u);
  // forward, helper, build, size's getter, base_method, scale, keyword,
  // _make, closure_fn, wrap.
  EXPECT_EQ(snap->library_functions(), 10u);
  EXPECT_TRUE(Diff(*snap).empty());
  ASSERT_TRUE(py.Exec("import sys\ndel sys.modules['dh_lib']").ok());
}

// Each case builds a fresh dh_lib, snapshots it, changes it and expects the
// finding, naming the class or function and the attribute.
TEST(ObserverIntegrityDiffTest, DetectsLibraryTampering) {
  runtime::Interpreter& py = SharedInterpreter();
  struct Case {
    const char* change;
    const char* finding;
    const char* subject;  // class or function
    const char* attr;
  } cases[] = {
      {"m.Model.forward = lambda self, x: None", "class.attr.rebound",
       "dh_lib.Model", "forward"},
      {"m.Model.__reduce__ = lambda self: None", "class.attr.added",
       "dh_lib.Model", "__reduce__"},
      {"del m.Model.helper", "class.attr.removed", "dh_lib.Model", "helper"},
      {"m.Model.__mro__[1].base_method = print", "class.attr.rebound",
       "dh_lib._HiddenBase", "base_method"},
      {"m.Model.__bases__ = (m.Other,)", "class.bases.changed", "dh_lib.Model",
       ""},
      {"m.Model.forward.__code__ = (lambda self, x: 0).__code__",
       "function.attr.rebound", "dh_lib.Model.forward", "__code__"},
      {"m.Model.__dict__['build'].__func__.__code__ = (lambda: 0).__code__",
       "function.attr.rebound", "dh_lib.Model.build", "__code__"},
      {"m.Model.size.fget.__code__ = (lambda self: 0).__code__",
       "function.attr.rebound", "dh_lib.Model.size", "__code__"},
      {"m.scale.__defaults__ = (3,)", "function.attr.rebound", "dh_lib.scale",
       "__defaults__"},
      {"m.keyword.__kwdefaults__ = {'factor': 3}", "function.attr.rebound",
       "dh_lib.keyword", "__kwdefaults__"},
      // The library wrapping its own method, and anyone else doing so.
      {"m.Model.forward = m.wrap(m.Model.forward)", "class.attr.wrapped",
       "dh_lib.Model", "forward"},
      {"import functools\n"
       "m.Model.forward = functools.wraps(m.Model.forward)(lambda *a: 0)",
       "class.attr.rebound", "dh_lib.Model", "forward"},
      {"m.closure_fn.__closure__[0].cell_contents = 11",
       "function.attr.rebound", "dh_lib._make.<locals>.closure_fn",
       "__closure__[0]"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(py.Exec(kLibrary).ok());
    absl::StatusOr<IntegritySnapshot> snap =
        IntegritySnapshot::Take(LibraryOptions());
    ASSERT_TRUE(snap.ok());
    absl::Status changed = py.Exec(
        std::string("import sys\nm = sys.modules['dh_lib']\n") + c.change);
    ASSERT_TRUE(changed.ok()) << c.change << ": " << changed;
    bool found = false;
    for (const proto::Event& e : Diff(*snap)) {
      if (e.name() != c.finding) continue;
      std::string subject, attr;
      for (const proto::Argument& a : e.args()) {
        if (a.key() == "class" || a.key() == "function") subject = a.value();
        if (a.key() == "attr") attr = a.value();
      }
      found = found || (subject == c.subject && attr == c.attr);
    }
    EXPECT_TRUE(found) << c.change;
  }
  ASSERT_TRUE(py.Exec("import sys\ndel sys.modules['dh_lib']").ok());
}

// Changes that leave every binding as it was are not findings: a class
// attribute set back to the same object (the dict's version tag moves), and
// the __slotnames__ cache copyreg adds when an instance is pickled.
TEST(ObserverIntegrityDiffTest, BenignLibraryDictChangesAreNotFindings) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Exec(kLibrary).ok());
  absl::StatusOr<IntegritySnapshot> snap =
      IntegritySnapshot::Take(LibraryOptions());
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(py.Exec("import sys, copyreg\nm = sys.modules['dh_lib']\n"
                      "m.Model.forward = m.Model.__dict__['forward']\n"
                      "copyreg._slotnames(m.Model)\n"
                      "assert '__slotnames__' in m.Model.__dict__\n")
                  .ok());
  for (const proto::Event& e : Diff(*snap)) ADD_FAILURE() << e.DebugString();
  ASSERT_TRUE(py.Exec("import sys\ndel sys.modules['dh_lib']").ok());
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

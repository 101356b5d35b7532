// The loaded code attacks the loader's own instrumentation (issue 7, item 7):
// it walks to the loader's Python half through __globals__ or frames and
// tries to switch recording off, replace the emitter, rebind the
// unpickler's hooks or remove the profiler. Each attack must leave the
// later events recorded where the design allows it, and always leave an
// INTEGRITY finding emitted by C++.
//
// The payloads are harmless probes: they only touch the loader's own state
// in this test process (no files, no network, no processes). Each test uses
// a fresh Loader (its own namespace) and undoes process-wide changes
// (trace/profile functions) afterwards.
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hooks/event_sink.h"
#include "runtime/embed/loader.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::runtime {
namespace {

using dynahug::testing::SharedInterpreter;
using proto::Event;

std::string Arg(const Event& e, const std::string& key) {
  for (const auto& a : e.args()) {
    if (a.key() == key) return a.value();
  }
  return "";
}

// A protocol-0 pickle that runs `source` with builtins.exec, then resolves
// builtins.len (a GLOBAL after the payload, whose event must still appear)
// and returns it.
std::string ExecPickle(const std::string& source) {
  std::string escaped;
  for (char c : source) {
    if (c == '\n') {
      escaped += "\\u000a";
    } else if (c == '\\') {
      escaped += "\\u005c";
    } else {
      escaped += c;
    }
  }
  return "cbuiltins\nexec\n(V" + escaped + "\ntR0cbuiltins\nlen\n.";
}

class TamperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SharedInterpreter();
    char tmpl[] = "/tmp/dynahug-tamper-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    // Undo what a payload may have left installed process-wide.
    PyEval_SetTrace(nullptr, nullptr);
    PyEval_SetProfile(nullptr, nullptr);
    PyErr_Clear();
    ASSERT_TRUE(SharedInterpreter()
                    .Exec("import threading\nthreading.settrace(None)\n"
                          "threading.setprofile(None)\n")
                    .ok());
    std::string out;
    dynahug::testing::RunCommand("rm -rf '" + dir_ + "'", &out);
  }

  // Loads ExecPickle(source) with a fresh Loader; returns the events.
  std::vector<Event> LoadPayload(const std::string& source,
                                 const std::string& loader,
                                 bool record_calls = true) {
    const std::string path = dir_ + "/payload.pkl";
    {
      std::ofstream f(path, std::ios::binary);
      f << ExecPickle(source);
    }
    absl::StatusOr<Loader> l = Loader::Create(SharedInterpreter());
    EXPECT_TRUE(l.ok()) << l.status();
    if (!l.ok()) return {};
    hooks::MemoryEventSink sink;
    LoadOptions options;
    options.loader = loader;
    options.record_calls = record_calls;
    absl::StatusOr<LoadResult> r = l->Load(path, options, sink);
    EXPECT_TRUE(r.ok()) << r.status();
    return sink.events();
  }

  static bool Has(const std::vector<Event>& events, Event::Kind kind,
                  const std::string& name, const std::string& key = "",
                  const std::string& value = "") {
    for (const Event& e : events) {
      if (e.kind() == kind && e.name() == name &&
          (key.empty() || Arg(e, key) == value)) {
        return true;
      }
    }
    return false;
  }

  static std::string Integrity(const std::vector<Event>& events) {
    std::string out;
    for (const Event& e : events) {
      if (e.kind() != Event::INTEGRITY) continue;
      out += e.name();
      for (const auto& a : e.args()) out += " " + a.key() + "=" + a.value();
      out += "\n";
    }
    return out;
  }

  std::string dir_;
};

// The reported attack: torch.serialization.pickle is the loader's pickle
// module during torch.load, so its load's __globals__ is the loader's
// namespace. The payload switches recording off through the bridge, swaps
// the bridge for a do-nothing object and replaces the emitter. Recording
// must stay on (the stage-2 audit event and the later GLOBAL are recorded)
// and the replacement is a finding.
TEST_F(TamperTest, GlobalsWalkCannotStopRecordingAndIsAFinding) {
  std::vector<Event> events = LoadPayload(
      "import sys\n"
      "g = sys.modules['torch.serialization'].pickle.load.__globals__\n"
      "dh = g.get('_dh') or g['_emit'].__self__\n"
      "for name in ('set_recording', 'set_offset'):\n"
      "    fn = getattr(dh, name, None)\n"
      "    if fn is not None: fn(False)\n"
      "class Quiet:\n"
      "    def __getattr__(self, name): return lambda *a, **k: None\n"
      "g['_dh'] = Quiet()\n"
      "g['_emit'] = lambda *a, **k: None\n"
      "sys.audit('dynahug.test.stage2')\n",
      "torch.load");
  EXPECT_TRUE(Has(events, Event::AUDIT, "dynahug.test.stage2"))
      << Integrity(events);
  EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.tampered", "what",
                  "dynahug_loader._emit"))
      << Integrity(events);
  EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.tampered", "what",
                  "dynahug_loader"))  // an entry was added: size changed
      << Integrity(events);
}

// Replacing the emitter found through a loader frame's globals: the
// replacement is reported, and a call of the real emitter from the
// payload's own code (a forged event) is dropped and reported.
TEST_F(TamperTest, ReplacedEmitterAndForgedEmitAreFindings) {
  for (bool record_calls : {true, false}) {
    std::vector<Event> events = LoadPayload(
        "import sys\n"
        "f = sys._getframe()\n"
        "while f is not None and '_emit' not in f.f_globals: f = f.f_back\n"
        "g = f.f_globals\n"
        "g['_emit'](11, 'forged.by.payload', ())\n"
        "g['_emit'] = lambda *a, **k: None\n",
        "pickle.load", record_calls);
    EXPECT_FALSE(Has(events, Event::LOG, "forged.by.payload"));
    EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.bridge.foreign_call"))
        << Integrity(events);
    EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.tampered", "what",
                    "dynahug_loader._emit"))
        << Integrity(events);
  }
}

// Replacing the code of a recording function instead of the binding.
TEST_F(TamperTest, ReplacedFunctionCodeIsAFinding) {
  std::vector<Event> events = LoadPayload(
      "import sys\n"
      "f = sys._getframe()\n"
      "while f is not None and '_emit' not in f.f_globals: f = f.f_back\n"
      "g = f.f_globals\n"
      "g['_record_global'].__code__ = (lambda self, m, n, o: None).__code__\n",
      "pickle.load");
  EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.tampered", "what",
                  "dynahug_loader._record_global.__code__"))
      << Integrity(events);
}

// Rebinding the live unpickler's find_class skips the recording wrapper
// (the GLOBAL after the payload would go unrecorded): a finding, for the
// pure-Python and the C unpickler.
TEST_F(TamperTest, RebindingFindClassIsAFinding) {
  for (bool record_calls : {true, false}) {
    std::vector<Event> events = LoadPayload(
        "import gc\n"
        "for u in gc.get_objects():\n"
        "    if type(u).__name__ in ('Unpickler', 'FastUnpickler') and \\\n"
        "            'find_class' in getattr(u, '__dict__', {}):\n"
        "        u.find_class = type(u).find_class.__get__(u)\n",
        "pickle.load", record_calls);
    EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.hook.replaced", "hook",
                    "unpickler.find_class"))
        << "record_calls=" << record_calls << "\n"
        << Integrity(events);
  }
}

// The C unpickler keeps persistent_load in its own struct; the getset of
// _pickle.Unpickler sets it past the recording property.
TEST_F(TamperTest, RebindingCPersistentLoadIsAFinding) {
  std::vector<Event> events = LoadPayload(
      "import gc, _pickle\n"
      "setter = _pickle.Unpickler.__dict__['persistent_load'].__set__\n"
      "for u in gc.get_objects():\n"
      "    if type(u).__name__ == 'FastUnpickler':\n"
      "        setter(u, lambda pid: None)\n",
      "pickle.load", /*record_calls=*/false);
  EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.hook.replaced", "hook",
                  "unpickler.persistent_load"))
      << Integrity(events);
}

// The pure-Python unpickler's persistent_load is a class property: replacing
// it on the class changes the sealed class.
TEST_F(TamperTest, ReplacingPersistentLoadPropertyIsAFinding) {
  std::vector<Event> events = LoadPayload(
      "import sys\n"
      "f = sys._getframe()\n"
      "while f is not None and '_emit' not in f.f_globals: f = f.f_back\n"
      "f.f_globals['_Instrumentation'].persistent_load = "
      "property(lambda s: (lambda pid: None))\n",
      "pickle.load");
  EXPECT_TRUE(Has(events, Event::INTEGRITY, "loader.tampered", "what",
                  "dynahug_loader._Instrumentation.persistent_load"))
      << Integrity(events);
}

// Removing or replacing the profiler and trace hooks from Python.
TEST_F(TamperTest, DisablingProfilerOrTraceIsAFinding) {
  struct Case {
    const char* source;
    const char* hook;
  } cases[] = {
      {"import sys\nsys.setprofile(None)\n", "profiler"},
      // New threads would run this instead of the C profiler.
      {"import threading\nthreading.setprofile(lambda *a: None)\n",
       "threading.setprofile"},
      {"import sys\nsys.settrace(lambda *a: None)\n", "sys.settrace"},
      {"import threading\nthreading.settrace(lambda *a: None)\n",
       "threading.settrace"},
  };
  for (const Case& c : cases) {
    std::vector<Event> events = LoadPayload(c.source, "pickle.load");
    EXPECT_TRUE(
        Has(events, Event::INTEGRITY, "loader.hook.disabled", "hook", c.hook))
        << c.source << Integrity(events);
    PyEval_SetTrace(nullptr, nullptr);
    PyErr_Clear();
  }
}

// A load that imports threading for the first time (a zygote that only
// warmed pickle may not have it) gets the fresh module's hooks (None): no
// hook was disabled. Setting one after that first import still is.
TEST_F(TamperTest, FirstImportOfThreadingIsNoFinding) {
  struct Case {
    const char* source;
    bool profile_finding;
  } cases[] = {
      {"import threading\n", false},
      {"import threading\nthreading.setprofile(lambda *a: None)\n", true},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(SharedInterpreter()
                    .Exec("import sys\n"
                          "sys._dh_threading = sys.modules.pop('threading',"
                          " None)\n")
                    .ok());
    std::vector<Event> events = LoadPayload(c.source, "pickle.load");
    ASSERT_TRUE(SharedInterpreter()
                    .Exec("import sys\n"
                          "if sys._dh_threading is not None:\n"
                          "    sys.modules['threading'] = sys._dh_threading\n"
                          "del sys._dh_threading\n")
                    .ok());
    EXPECT_EQ(Has(events, Event::INTEGRITY, "loader.hook.disabled", "hook",
                  "threading.setprofile"),
              c.profile_finding)
        << c.source << Integrity(events);
    EXPECT_FALSE(Has(events, Event::INTEGRITY, "loader.hook.disabled", "hook",
                     "threading.settrace"))
        << c.source << Integrity(events);
    EXPECT_TRUE(Has(events, Event::GLOBAL, "builtins.len")) << c.source;
  }
}

// Negative control: the same loads without tampering report nothing.
TEST_F(TamperTest, HarmlessPayloadIsNoFinding) {
  for (const char* loader : {"pickle.load", "torch.load"}) {
    for (bool record_calls : {true, false}) {
      std::vector<Event> events =
          LoadPayload("x = 1 + 1\n", loader, record_calls);
      for (const Event& e : events) {
        if (e.kind() != Event::INTEGRITY) continue;
        EXPECT_NE(e.name().rfind("loader.", 0), 0u)
            << loader << " record_calls=" << record_calls << ": "
            << Integrity(events);
      }
      EXPECT_TRUE(Has(events, Event::GLOBAL, "builtins.len")) << loader;
    }
  }
}

// Negative control on every benign fixture, both unpicklers and stepping
// mode, with one Loader reused (as a child reuses the zygote's).
TEST(TamperNegativeControlTest, BenignFixturesTripNoTamperCheck) {
  absl::StatusOr<Loader> loader = Loader::Create(SharedInterpreter());
  ASSERT_TRUE(loader.ok()) << loader.status();
  std::vector<std::string> ref =
      dynahug::testing::ReadLines(dynahug::testing::Fixture("reference.tsv"));
  ASSERT_GE(ref.size(), 20u);
  for (const std::string& line : ref) {
    size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    const std::string name = line.substr(0, t1);
    for (int mode = 0; mode < 3; ++mode) {
      hooks::MemoryEventSink sink;
      LoadOptions options;
      options.loader = line.substr(t1 + 1, t2 - t1 - 1);
      options.record_calls = mode != 1;
      options.opcodes = mode == 2;
      absl::StatusOr<LoadResult> r =
          loader->Load(dynahug::testing::Fixture(name), options, sink);
      ASSERT_TRUE(r.ok()) << name << ": " << r.status();
      for (const Event& e : sink.events()) {
        if (e.kind() != Event::INTEGRITY) continue;
        EXPECT_NE(e.name().rfind("loader.", 0), 0u)
            << name << " mode " << mode << ": " << e.ShortDebugString();
      }
    }
  }
}

}  // namespace
}  // namespace dynahug::runtime

// Call profiler: caller -> callee counts, C calls, bounds, displacement.
#include <map>

#include "gtest/gtest.h"
#include "hooks/call_profiler.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::hooks {
namespace {

using dynahug::testing::SharedInterpreter;

std::map<std::pair<std::string, std::string>, uint64_t> Edges(
    const MemoryEventSink& sink) {
  std::map<std::pair<std::string, std::string>, uint64_t> m;
  for (const auto& e : sink.events()) {
    if (e.kind() == proto::Event::PYTHON_CALL) {
      m[{e.args(0).value(), e.name()}] += e.count();
    }
  }
  return m;
}

TEST(ObserverCallProfilerTest, CountsEdges) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Exec("import sys\n"
                      "m = type(sys)('dhprof')\n"
                      "exec('def g(x):\\n    return len(x)\\n"
                      "def f():\\n    for i in range(7):\\n        g([i])\\n',"
                      " m.__dict__)\n"
                      "sys.modules['dhprof'] = m\n")
                  .ok());
  CallProfiler prof;
  ASSERT_TRUE(prof.Start().ok());
  ASSERT_TRUE(py.Exec("import dhprof\ndhprof.f()").ok());
  EXPECT_TRUE(prof.Stop());
  MemoryEventSink sink;
  prof.EmitTo(sink);
  auto edges = Edges(sink);
  EXPECT_EQ((edges[{"dhprof.f", "dhprof.g"}]), 7u);
  EXPECT_EQ((edges[{"dhprof.g", "builtins.len"}]), 7u);
  EXPECT_EQ((edges[{"__main__.<module>", "dhprof.f"}]), 1u);
  EXPECT_GE(prof.total_calls(), 15u);
  EXPECT_EQ(prof.dropped_calls(), 0u);
  // Not running any more: later calls are not counted.
  uint64_t total = prof.total_calls();
  ASSERT_TRUE(py.Exec("import dhprof\ndhprof.f()").ok());
  EXPECT_EQ(prof.total_calls(), total);
}

// No Python-visible profile object (a payload probing for one finds what a
// plain process shows), and threads started with _thread directly are
// profiled too.
TEST(ObserverCallProfilerThreadsTest, InvisibleToPythonAndCoversRawThreads) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(
      py.Exec("import sys, threading\n"
              "m = type(sys)('dhprof4')\n"
              "exec('def work():\\n    for i in range(3):\\n        leaf()\\n"
              "def leaf():\\n    return 0\\n', m.__dict__)\n"
              "sys.modules['dhprof4'] = m\n")
          .ok());
  CallProfiler prof;
  ASSERT_TRUE(prof.Start().ok());
  absl::StatusOr<std::string> seen = py.Eval(
      "(__import__('sys').getprofile(), __import__('threading').getprofile())");
  ASSERT_TRUE(py.Exec("import _thread, dhprof4\n"
                      "done = _thread.allocate_lock()\ndone.acquire()\n"
                      "def run():\n    dhprof4.work()\n    done.release()\n"
                      "_thread.start_new_thread(run, ())\n"
                      "done.acquire()\n")
                  .ok());
  EXPECT_TRUE(prof.Stop());
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(*seen, "(None, None)");
  MemoryEventSink sink;
  prof.EmitTo(sink);
  auto edges = Edges(sink);
  EXPECT_EQ((edges[{"dhprof4.work", "dhprof4.leaf"}]), 3u);
}

TEST(ObserverCallProfilerTest, BoundedTablesAndEmission) {
  runtime::Interpreter& py = SharedInterpreter();
  ProfilerLimits limits;
  limits.max_functions = 6;
  limits.max_edges = 4;
  limits.max_emitted_edges = 2;
  CallProfiler prof(limits);
  ASSERT_TRUE(prof.Start().ok());
  ASSERT_TRUE(py.Exec("fs = []\n"
                      "for i in range(40):\n"
                      "    exec('def h%d(): return %d' % (i, i))\n"
                      "    fs.append(eval('h%d' % i))\n"
                      "for f in fs: f()\n")
                  .ok());
  prof.Stop();
  EXPECT_LE(prof.distinct_functions(), 6u);
  EXPECT_LE(prof.distinct_edges(), 4u);
  EXPECT_GT(prof.dropped_calls(), 0u);
  MemoryEventSink sink;
  prof.EmitTo(sink);
  size_t calls = 0;
  bool truncated = false;
  for (const auto& e : sink.events()) {
    calls += e.kind() == proto::Event::PYTHON_CALL;
    truncated |=
        e.kind() == proto::Event::LOG && e.name() == "profiler.truncated";
  }
  EXPECT_EQ(calls, 2u);
  EXPECT_TRUE(truncated);
}

TEST(ObserverCallProfilerTest, OnlyOneActiveAndDisplacementReported) {
  runtime::Interpreter& py = SharedInterpreter();
  CallProfiler a, b;
  ASSERT_TRUE(a.Start().ok());
  EXPECT_EQ(b.Start().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(py.Exec("import sys\nsys.setprofile(None)").ok());
  EXPECT_FALSE(a.Stop());  // replaced by the code it profiled
  ASSERT_TRUE(b.Start().ok());
  EXPECT_TRUE(b.Stop());
}

TEST(ObserverCallProfilerTest, ExcludedFilenameIsTransparent) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(py.Exec("import sys\n"
                      "m = type(sys)('dhprof2')\n"
                      "exec(compile('def inner():\\n    return len([])\\n', "
                      "'dh2', 'exec'), m.__dict__)\n"
                      "exec(compile('def wrapper(f):\\n    len([])\\n    "
                      "return f()\\n', '<hidden>', 'exec'), m.__dict__)\n"
                      "sys.modules['dhprof2'] = m\n")
                  .ok());
  CallProfiler prof({}, "<hidden>");
  ASSERT_TRUE(prof.Start().ok());
  ASSERT_TRUE(py.Exec("import dhprof2\ndhprof2.wrapper(dhprof2.inner)").ok());
  prof.Stop();
  MemoryEventSink sink;
  prof.EmitTo(sink);
  auto edges = Edges(sink);
  // wrapper is invisible and so is its own C call (len); inner is
  // attributed to wrapper's caller.
  EXPECT_EQ((edges[{"__main__.<module>", "dhprof2.inner"}]), 1u);
  EXPECT_EQ((edges[{"dhprof2.inner", "builtins.len"}]), 1u);
  int len_edges = 0;
  for (const auto& [k, v] : edges) {
    EXPECT_NE(k.second, "dhprof2.wrapper");
    EXPECT_NE(k.first, "dhprof2.wrapper");
    len_edges += k.second == "builtins.len";
  }
  EXPECT_EQ(len_edges, 1);
}

}  // namespace
}  // namespace dynahug::hooks

namespace dynahug::hooks {
namespace {

TEST(ObserverCallProfilerThreadsTest, ThreadsStartedWhileProfilingAreProfiled) {
  runtime::Interpreter& py = SharedInterpreter();
  ASSERT_TRUE(
      py.Exec("import sys, threading\n"
              "m = type(sys)('dhprof3')\n"
              "exec('def work():\\n    for i in range(5):\\n        leaf()\\n"
              "def leaf():\\n    return 0\\n', m.__dict__)\n"
              "sys.modules['dhprof3'] = m\n")
          .ok());
  CallProfiler prof;
  ASSERT_TRUE(prof.Start().ok());
  ASSERT_TRUE(py.Exec("import threading, dhprof3\n"
                      "t = threading.Thread(target=dhprof3.work)\n"
                      "t.start()\nt.join()\n")
                  .ok());
  EXPECT_TRUE(prof.Stop());
  MemoryEventSink sink;
  prof.EmitTo(sink);
  auto edges = Edges(sink);
  EXPECT_EQ((edges[{"dhprof3.work", "dhprof3.leaf"}]), 5u);
  // Threads started after Stop are not profiled.
  uint64_t total = prof.total_calls();
  ASSERT_TRUE(py.Exec("import threading, dhprof3\n"
                      "t = threading.Thread(target=dhprof3.work)\n"
                      "t.start()\nt.join()\n")
                  .ok());
  EXPECT_EQ(prof.total_calls(), total);
}

// Code that runs under its own profiler (profile.run, cProfile.run) runs
// as in a process without dynahug's: in CPython 3.11 profile.Profile aborts
// with AssertionError('Bad return') when another profile function was
// active as it installed its own. The profiler gives way, records the
// hand-over, and leaves the thread able to profile again afterwards.
TEST(ObserverCallProfilerTest, GivesWayToTheCodesOwnProfiler) {
  runtime::Interpreter& py = SharedInterpreter();
  struct Case {
    const char* source;
    const char* ran;
    const char* to;
  } cases[] = {
      {"import profile\nprofile.Profile().run('dh_prof_ran = 1')\n",
       "dh_prof_ran", "sys.setprofile"},
      {"import cProfile\ncProfile.Profile().run('dh_cprof_ran = 2')\n",
       "dh_cprof_ran", "cProfile.Profile.enable"},
  };
  for (const Case& c : cases) {
    CallProfiler prof;
    ASSERT_TRUE(prof.Start().ok());
    const absl::Status ran = py.Exec(c.source);
    // Displaced by the code's own profiler: reported as such.
    EXPECT_FALSE(prof.Stop());
    ASSERT_TRUE(ran.ok()) << c.source << ": " << ran;
    absl::StatusOr<std::string> value = py.Eval(c.ran);
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_NE(*value, "");
    EXPECT_EQ(prof.yields(), 1u);
    MemoryEventSink sink;
    prof.EmitTo(sink);
    const proto::Event* yielded = nullptr;
    for (const proto::Event& e : sink.events()) {
      if (e.kind() == proto::Event::LOG && e.name() == "profiler.yielded") {
        yielded = &e;
      }
    }
    ASSERT_NE(yielded, nullptr) << c.source;
    EXPECT_EQ(yielded->args(0).key(), "to");
    EXPECT_EQ(yielded->args(0).value(), c.to);
    EXPECT_EQ(yielded->args(1).key(), "caller");
    EXPECT_FALSE(yielded->args(1).value().empty());
    PyEval_SetProfile(nullptr, nullptr);
    PyErr_Clear();
  }
  // The thread's profile events flow again: a new profiler counts calls.
  ASSERT_TRUE(py.Exec("import sys\n"
                      "m = type(sys)('dhprof_after')\n"
                      "exec('def f():\\n    return len([1])\\n', m.__dict__)\n"
                      "sys.modules['dhprof_after'] = m\n")
                  .ok());
  CallProfiler after;
  ASSERT_TRUE(after.Start().ok());
  ASSERT_TRUE(py.Exec("import dhprof_after\ndhprof_after.f()\n").ok());
  EXPECT_TRUE(after.Stop());
  MemoryEventSink sink;
  after.EmitTo(sink);
  EXPECT_EQ((Edges(sink)[{"dhprof_after.f", "builtins.len"}]), 1u);
}

}  // namespace
}  // namespace dynahug::hooks

// C-level call profiler for the load phase: counts Python function calls
// and calls of builtin (C) functions made from Python code, keyed by
// caller -> callee edge, and reports them as PYTHON_CALL events.
//
// A C profile function only (no Python-visible object: sys.getprofile(),
// threading.getprofile() and sys.gettrace() read None, as in a process
// without a profiler). Installed on the calling thread by Start() and on
// each thread started during the load right when _thread.start_new_thread
// returns in a profiled thread (the new thread's state exists and it cannot
// run before this thread releases the GIL). CPython 3.11 has no
// all-threads API; threads created by C code (PyGILState_Ensure) are not
// profiled.
//
// Hidden code: functions compiled from `hidden_filename` (the loader's own
// instrumentation) and functions matching `transparent` (the pure-Python
// unpickler's machinery, so that profiles look the same whichever unpickler
// ran) are never callees; C functions they call directly are not counted;
// Python functions they call are counted with the nearest visible frame up
// the stack as caller ("<root>" when there is none). E.g. a REDUCE in the
// pure-Python unpickler that calls torch._utils._rebuild_tensor_v2 yields
// the edge torch.serialization._load -> torch._utils._rebuild_tensor_v2,
// as the C unpickler does.
//
// Bounded: at most max_functions distinct functions and max_edges edges are
// tracked (calls beyond are counted in dropped_calls()); at most
// max_emitted_edges events are emitted, highest counts first.
//
// Giving way to the payload's profiler. The profiler must not change what
// the load does, but in CPython 3.11 a profile function that is active when
// code calls sys.setprofile(f) (or _lsprof.Profiler.enable, cProfile) gets
// f called with a "c_return" event for that very call, which a process
// without a profiler never sends: profile.Profile's dispatcher rejects it
// (AssertionError 'Bad return'), so profile.run(...) would abort here and run
// under a plain load. So on the C_CALL of such an installer on the thread
// that called Start(), the profiler enters the thread's "tracing" state
// (PyThreadState_EnterTracing: profile events are not delivered) for the
// call and leaves it from a pending call (Py_AddPendingCall), which the
// interpreter runs at its eval-breaker check right after the call returns:
// the installed profiler's first event is the one a plain process sends it.
// (When the call raises, the check, and thus the leave, comes at the next
// function entry or loop iteration; Stop() leaves it at the latest.) The
// installer then replaces this profiler on that thread: calls made there
// afterwards are not counted (the payload's profiler sees them). On other
// threads the profiler only records the hand-over. Each hand-over is a LOG
// event "profiler.yielded" {to = the installer, caller}. Limit: Python
// audit hooks the code installed run inside the installer call, before the
// swap, and pending calls may run there; the installed profiler then still
// gets the extra event, as without this hand-over.
//
// One profiler may be active per process at a time. All methods require the
// GIL.
#ifndef DYNAHUG_HOOKS_CALL_PROFILER_H_
#define DYNAHUG_HOOKS_CALL_PROFILER_H_

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "hooks/base/py_ref.h"
#include "hooks/event_sink.h"

namespace dynahug::hooks {

struct ProfilerLimits {
  size_t max_functions = 8192;
  size_t max_edges = 32768;
  size_t max_emitted_edges = 2000;
};

// Code that is hidden because of where it comes from: co_filename equal to
// `filename` and co_qualname starting with one of `qualname_prefixes`.
struct TransparentCode {
  std::string filename;
  std::vector<std::string> qualname_prefixes;
};

class CallProfiler {
 public:
  explicit CallProfiler(ProfilerLimits limits = {},
                        std::string hidden_filename = "<dynahug-loader>",
                        std::vector<TransparentCode> transparent = {});
  ~CallProfiler();  // Stops if still running.
  CallProfiler(const CallProfiler&) = delete;
  CallProfiler& operator=(const CallProfiler&) = delete;

  // Installs the profile function. FailedPrecondition if another profiler
  // is active.
  absl::Status Start();
  // Removes it from every thread where it is still installed. Returns false
  // when the profile function had been replaced on the calling thread (the
  // load displaced it: itself a finding, reported by the integrity diff).
  bool Stop();

  // PYTHON_CALL events, one per edge: name = callee, args {caller}, count.
  // Then a LOG event "profiler.yielded" {to, caller} per hand-over to a
  // profiler the profiled code installed (see above), and a LOG event
  // "profiler.truncated" when calls were dropped.
  void EmitTo(EventSink& sink) const;

  // Hand-overs to another profiler so far.
  size_t yields() const { return yielded_.size(); }
  uint64_t total_calls() const { return total_calls_; }
  uint64_t dropped_calls() const { return dropped_calls_; }
  size_t distinct_functions() const { return functions_.size(); }
  size_t distinct_edges() const { return edges_.size(); }

 private:
  struct Function {
    std::string name;
    bool hidden = false;
    PyRef keep_alive;  // the code object, so its address stays ours
  };
  static int Callback(PyObject* obj, PyFrameObject* frame, int what,
                      PyObject* arg);
  // Installs the profile function on every thread that lacks it and did
  // not exist at Start().
  void InstallOnNewThreads();
  // Index into functions_ for a code object / C function, or -1 when full.
  int CodeIndex(PyCodeObject* code, PyFrameObject* frame);
  int CFunctionIndex(PyObject* func);
  void Count(int caller, int callee);
  // `func` (a C function about to be called from `frame`) installs another
  // profile function: records the hand-over and, on the profiled thread,
  // holds profile events back until the call has returned (see above).
  void GiveWay(PyFrameObject* frame, PyObject* func);

  // Nearest visible caller of `frame` (inclusive), -1 when the table is
  // full, kRoot when none.
  int VisibleCaller(PyFrameObject* frame);

  ProfilerLimits limits_;
  std::string hidden_filename_;
  std::vector<TransparentCode> transparent_;
  bool running_ = false;
  absl::flat_hash_map<const void*, int> index_;
  std::vector<Function> functions_;
  absl::flat_hash_map<std::pair<int, int>, uint64_t> edges_;
  uint64_t total_calls_ = 0;
  uint64_t dropped_calls_ = 0;
  absl::flat_hash_set<uint64_t> preexisting_;  // PyThreadState ids
  PyThreadState* profiled_thread_ = nullptr;    // the one Start() ran on
  std::vector<std::pair<std::string, std::string>> yielded_;  // to, caller
};

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_CALL_PROFILER_H_

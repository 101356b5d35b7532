#include "hooks/call_profiler.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dynahug::hooks {
namespace {

CallProfiler* g_active = nullptr;
constexpr int kRootCaller = -2;

// `func` is _thread.start_new_thread (or its alias start_new).
bool IsThreadStart(PyObject* func) {
  if (!PyCFunction_Check(func)) return false;
  auto* cf = reinterpret_cast<PyCFunctionObject*>(func);
  if (cf->m_self == nullptr || !PyModule_Check(cf->m_self)) return false;
  const char* module = PyModule_GetName(cf->m_self);
  if (module == nullptr) {
    PyErr_Clear();
    return false;
  }
  const char* name = cf->m_ml->ml_name;
  return strcmp(module, "_thread") == 0 &&
         (strcmp(name, "start_new_thread") == 0 ||
          strcmp(name, "start_new") == 0);
}

// `func` installs a profile function when called: sys.setprofile, or the
// enable method of a cProfile (_lsprof) profiler.
bool InstallsProfiler(PyObject* func) {
  if (!PyCFunction_Check(func)) return false;
  auto* cf = reinterpret_cast<PyCFunctionObject*>(func);
  if (cf->m_self == nullptr) return false;
  // By name first: this runs on every C call the profiled code makes.
  const char* name = cf->m_ml->ml_name;
  if (strcmp(name, "setprofile") == 0) {
    if (!PyModule_Check(cf->m_self)) return false;
    const char* module = PyModule_GetName(cf->m_self);
    if (module == nullptr) {
      PyErr_Clear();
      return false;
    }
    return strcmp(module, "sys") == 0;
  }
  if (strcmp(name, "enable") != 0) return false;
  // A _lsprof.Profiler, or a subclass (cProfile.Profile).
  PyObject* mro = Py_TYPE(cf->m_self)->tp_mro;
  if (mro == nullptr || !PyTuple_Check(mro)) return false;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); ++i) {
    auto* t = reinterpret_cast<PyTypeObject*>(PyTuple_GET_ITEM(mro, i));
    if (strcmp(t->tp_name, "_lsprof.Profiler") == 0) return true;
  }
  return false;
}

// The thread whose profile events are held back during an installer call,
// or null. Only touched with the GIL held.
PyThreadState* g_held = nullptr;

void ReleaseHeld() {
  if (g_held == nullptr) return;
  PyThreadState_LeaveTracing(g_held);
  g_held = nullptr;
}

// Pending call: runs in the main thread at the interpreter's next
// eval-breaker check (right after the installer call returns).
int ReleaseHeldPending(void*) {
  ReleaseHeld();
  return 0;
}

}  // namespace

CallProfiler::CallProfiler(ProfilerLimits limits, std::string hidden_filename,
                           std::vector<TransparentCode> transparent)
    : limits_(limits),
      hidden_filename_(std::move(hidden_filename)),
      transparent_(std::move(transparent)) {}

CallProfiler::~CallProfiler() {
  if (running_) Stop();
}

absl::Status CallProfiler::Start() {
  if (g_active != nullptr) {
    return absl::FailedPreconditionError(
        "CallProfiler: another profiler is active");
  }
  g_active = this;
  running_ = true;
  PyEval_SetProfile(&CallProfiler::Callback, nullptr);
  if (PyErr_Occurred()) {
    g_active = nullptr;
    running_ = false;
    return StatusFromPyErr("CallProfiler: PyEval_SetProfile");
  }
  // Threads that exist already are not profiled (as before the load, they
  // are not the payload's); ids are unique for the interpreter's life.
  preexisting_.clear();
  yielded_.clear();
  PyThreadState* self = PyThreadState_Get();
  profiled_thread_ = self;
  for (PyThreadState* t = PyInterpreterState_ThreadHead(self->interp);
       t != nullptr; t = PyThreadState_Next(t)) {
    if (t != self) preexisting_.insert(t->id);
  }
  return absl::OkStatus();
}

void CallProfiler::InstallOnNewThreads() {
  PyThreadState* self = PyThreadState_Get();
  for (PyThreadState* t = PyInterpreterState_ThreadHead(self->interp);
       t != nullptr; t = PyThreadState_Next(t)) {
    if (t->c_profilefunc != &CallProfiler::Callback &&
        !preexisting_.contains(t->id)) {
      _PyEval_SetProfile(t, &CallProfiler::Callback, nullptr);
    }
  }
  PyErr_Clear();
}

bool CallProfiler::Stop() {
  if (!running_) return true;
  ReleaseHeld();  // an installer call that raised before the check
  PyThreadState* self = PyThreadState_Get();
  bool intact = self->c_profilefunc == &CallProfiler::Callback;
  for (PyThreadState* t = PyInterpreterState_ThreadHead(self->interp);
       t != nullptr; t = PyThreadState_Next(t)) {
    if (t->c_profilefunc == &CallProfiler::Callback) {
      _PyEval_SetProfile(t, nullptr, nullptr);
    }
  }
  PyErr_Clear();
  running_ = false;
  if (g_active == this) g_active = nullptr;
  return intact;
}

int CallProfiler::CodeIndex(PyCodeObject* code, PyFrameObject* frame) {
  auto it = index_.find(code);
  if (it != index_.end()) return it->second;
  if (functions_.size() >= limits_.max_functions) return -1;
  Function f;
  f.keep_alive = PyRef::Borrow(reinterpret_cast<PyObject*>(code));
  const std::string filename = PyUtf8(code->co_filename, "?");
  const std::string qualname = PyUtf8(code->co_qualname, "?");
  f.hidden = filename == hidden_filename_;
  for (const TransparentCode& t : transparent_) {
    if (filename != t.filename) continue;
    for (const std::string& prefix : t.qualname_prefixes) {
      f.hidden |= qualname.starts_with(prefix);
    }
  }
  std::string module = "?";
  if (frame != nullptr) {
    PyRef globals(PyFrame_GetGlobals(frame));
    if (globals && PyDict_Check(globals.get())) {
      PyObject* n = PyDict_GetItemString(globals.get(), "__name__");
      if (n != nullptr) module = PyUtf8(n, "?");
    }
  }
  f.name = absl::StrCat(module, ".", qualname);
  int idx = static_cast<int>(functions_.size());
  functions_.push_back(std::move(f));
  index_.emplace(code, idx);
  return idx;
}

int CallProfiler::CFunctionIndex(PyObject* func) {
  if (!PyCFunction_Check(func)) return -1;
  auto* cf = reinterpret_cast<PyCFunctionObject*>(func);
  PyMethodDef* ml = cf->m_ml;
  auto it = index_.find(ml);
  if (it != index_.end()) return it->second;
  if (functions_.size() >= limits_.max_functions) return -1;
  std::string owner = "?";
  PyObject* self = cf->m_self;
  if (self != nullptr && PyModule_Check(self)) {
    const char* n = PyModule_GetName(self);
    if (n == nullptr) PyErr_Clear();
    owner = n != nullptr ? n : "?";
  } else if (self != nullptr) {
    owner =
        PyTypeName(PyType_Check(self) ? reinterpret_cast<PyTypeObject*>(self)
                                      : Py_TYPE(self));
  } else if (cf->m_module != nullptr && PyUnicode_Check(cf->m_module)) {
    owner = PyUtf8(cf->m_module, "?");
  }
  Function f;
  f.name = absl::StrCat(owner, ".", ml->ml_name);
  int idx = static_cast<int>(functions_.size());
  functions_.push_back(std::move(f));
  index_.emplace(ml, idx);
  return idx;
}

int CallProfiler::VisibleCaller(PyFrameObject* frame) {
  PyRef current = PyRef::Borrow(reinterpret_cast<PyObject*>(frame));
  for (int depth = 0; depth < 32 && current; ++depth) {
    auto* f = reinterpret_cast<PyFrameObject*>(current.get());
    PyRef code(reinterpret_cast<PyObject*>(PyFrame_GetCode(f)));
    int idx = CodeIndex(reinterpret_cast<PyCodeObject*>(code.get()), f);
    if (idx < 0) return -1;
    if (!functions_[idx].hidden) return idx;
    current = PyRef(reinterpret_cast<PyObject*>(PyFrame_GetBack(f)));
  }
  return kRootCaller;
}

void CallProfiler::GiveWay(PyFrameObject* frame, PyObject* func) {
  const int to = CFunctionIndex(func);
  const int caller = VisibleCaller(frame);
  auto name = [this](int i) -> std::string {
    return i == kRootCaller ? "<root>" : i < 0 ? "?" : functions_[i].name;
  };
  // The installer's C function name: "sys.setprofile", or "enable" named
  // by the profiler's type ("cProfile.Profile.enable").
  yielded_.emplace_back(to >= 0 ? name(to) : "?", name(caller));
  PyThreadState* ts = PyThreadState_Get();
  // Pending calls run in the main thread only: hold events back on the
  // profiled thread when it is the main thread (the loading thread), never
  // where nothing would release them.
  if (ts != profiled_thread_ || !_PyOS_IsMainThread() || g_held != nullptr) {
    return;
  }
  if (Py_AddPendingCall(&ReleaseHeldPending, nullptr) != 0) return;
  PyThreadState_EnterTracing(ts);
  g_held = ts;
}

void CallProfiler::Count(int caller, int callee) {
  ++total_calls_;
  if (callee < 0 || caller == -1) {
    ++dropped_calls_;
    return;
  }
  auto key = std::make_pair(caller, callee);
  auto it = edges_.find(key);
  if (it != edges_.end()) {
    ++it->second;
  } else if (edges_.size() < limits_.max_edges) {
    edges_.emplace(key, 1);
  } else {
    ++dropped_calls_;
  }
}

int CallProfiler::Callback(PyObject*, PyFrameObject* frame, int what,
                           PyObject* arg) {
  CallProfiler* self = g_active;
  if (self == nullptr || frame == nullptr) return 0;
  if (what == PyTrace_CALL) {
    PyRef code(reinterpret_cast<PyObject*>(PyFrame_GetCode(frame)));
    int callee =
        self->CodeIndex(reinterpret_cast<PyCodeObject*>(code.get()), frame);
    if (callee >= 0 && self->functions_[callee].hidden) return 0;
    PyRef back(reinterpret_cast<PyObject*>(PyFrame_GetBack(frame)));
    int caller =
        back ? self->VisibleCaller(reinterpret_cast<PyFrameObject*>(back.get()))
             : kRootCaller;
    self->Count(caller, callee);
  } else if (what == PyTrace_C_RETURN || what == PyTrace_C_EXCEPTION) {
    // _thread.start_new_thread has made the new thread's state and started
    // it, and this thread still holds the GIL: profile it before it runs.
    if (IsThreadStart(arg)) self->InstallOnNewThreads();
  } else if (what == PyTrace_C_CALL) {
    if (!PyCFunction_Check(arg)) return 0;
    if (InstallsProfiler(arg)) self->GiveWay(frame, arg);
    PyRef code(reinterpret_cast<PyObject*>(PyFrame_GetCode(frame)));
    int caller =
        self->CodeIndex(reinterpret_cast<PyCodeObject*>(code.get()), frame);
    if (caller >= 0 && self->functions_[caller].hidden) return 0;
    self->Count(caller, self->CFunctionIndex(arg));
  }
  return 0;
}

void CallProfiler::EmitTo(EventSink& sink) const {
  std::vector<std::pair<std::pair<int, int>, uint64_t>> edges(edges_.begin(),
                                                              edges_.end());
  std::sort(edges.begin(), edges.end(), [this](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    // Deterministic order for equal counts: by names.
    const std::string& ca = functions_[a.first.second].name;
    const std::string& cb = functions_[b.first.second].name;
    if (ca != cb) return ca < cb;
    auto caller = [this](int i) -> std::string {
      return i == kRootCaller ? "<root>" : functions_[i].name;
    };
    return caller(a.first.first) < caller(b.first.first);
  });
  uint64_t not_emitted = 0;
  for (size_t i = 0; i < edges.size(); ++i) {
    if (i >= limits_.max_emitted_edges) {
      not_emitted += edges[i].second;
      continue;
    }
    const auto& [key, count] = edges[i];
    proto::Event e;
    e.set_kind(proto::Event::PYTHON_CALL);
    e.set_name(functions_[key.second].name);
    proto::Argument* a = e.add_args();
    a->set_key("caller");
    a->set_value(key.first == kRootCaller ? "<root>"
                                          : functions_[key.first].name);
    e.set_count(count);
    sink.Emit(std::move(e));
  }
  for (const auto& [to, caller] : yielded_) {
    proto::Event e;
    e.set_kind(proto::Event::LOG);
    e.set_name("profiler.yielded");
    proto::Argument* a = e.add_args();
    a->set_key("to");
    a->set_value(to);
    a = e.add_args();
    a->set_key("caller");
    a->set_value(caller);
    sink.Emit(std::move(e));
  }
  if (dropped_calls_ > 0 || not_emitted > 0) {
    proto::Event e;
    e.set_kind(proto::Event::LOG);
    e.set_name("profiler.truncated");
    for (auto [k, v] : {std::pair{"dropped_calls", dropped_calls_},
                        std::pair{"not_emitted_calls", not_emitted}}) {
      proto::Argument* a = e.add_args();
      a->set_key(k);
      a->set_value(absl::StrCat(v));
    }
    sink.Emit(std::move(e));
  }
}

}  // namespace dynahug::hooks

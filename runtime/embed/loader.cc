#include "runtime/embed/loader.h"

#include <signal.h>
#include <sys/time.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "hooks/unpickler_hooks.h"

namespace dynahug::runtime {
namespace internal {
extern const std::string_view kLoaderSource;
extern const std::string_view kValueDigestSource;
}  // namespace internal
namespace {

using hooks::PyRef;
using hooks::PyTypeName;
using hooks::StatusFromPyErr;

constexpr char kLoaderFilename[] = "<dynahug-loader>";

// The loader table as loader.py reads it: ((name, driver), ...). Null with a
// Python error set when that fails.
PyRef LoaderTableForPython() {
  const std::span<const LoaderSpec> loaders = Loaders();
  PyRef table(PyTuple_New(static_cast<Py_ssize_t>(loaders.size())));
  for (size_t i = 0; table && i < loaders.size(); ++i) {
    PyObject* row =
        Py_BuildValue("(s#s#)", loaders[i].name.data(),
                      static_cast<Py_ssize_t>(loaders[i].name.size()),
                      loaders[i].driver.data(),
                      static_cast<Py_ssize_t>(loaders[i].driver.size()));
    if (row == nullptr) return PyRef();
    PyTuple_SET_ITEM(table.get(), static_cast<Py_ssize_t>(i), row);  // steals
  }
  return table;
}

// Clears the bridge sink and stops the audit hook on every path out of Load.
class LoadPhase {
 public:
  LoadPhase(hooks::EventSink* sink, hooks::PathContext paths,
            hooks::AuditLimits limits) {
    hooks::SetBridgeSink(sink);
    hooks::AuditHook::Instance().Start(sink, std::move(paths), limits);
  }
  ~LoadPhase() {
    hooks::AuditHook::Instance().Stop();
    hooks::SetBridgeSink(nullptr);
  }
  LoadPhase(const LoadPhase&) = delete;
  LoadPhase& operator=(const LoadPhase&) = delete;
};

void Finding(
    std::vector<proto::Event>& out, std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string>> args) {
  out.push_back(hooks::IntegrityFinding(name, args));
}

// Value of a module's global, read from its dict (no module __getattr__);
// borrowed, or null. `loaded` (optional) tells whether the module itself
// is in sys.modules.
PyObject* ModuleGlobal(const char* module, const char* name,
                       bool* loaded = nullptr) {
  PyRef n(PyUnicode_FromString(module));
  PyRef m(n ? PyImport_GetModule(n.get()) : nullptr);
  const bool is_module = m && PyModule_Check(m.get());
  if (loaded != nullptr) *loaded = is_module;
  if (!is_module) {
    PyErr_Clear();
    return nullptr;
  }
  return PyDict_GetItemString(PyModule_GetDict(m.get()), name);
}

// The hooks of the loading thread as they were before the library call.
struct HookState {
  Py_tracefunc c_trace = nullptr;
  PyObject* trace_obj = nullptr;
  // threading was imported: its hooks below are meaningful. A load that
  // imports threading for the first time gets a module whose hooks are
  // None, which is not a change of hook.
  bool threading_loaded = false;
  PyObject* threading_profile = nullptr;  // threading._profile_hook
  PyObject* threading_trace = nullptr;    // threading._trace_hook
  PyRef keep_profile, keep_trace;

  static HookState Capture() {
    HookState h;
    PyThreadState* ts = PyThreadState_Get();
    h.c_trace = ts->c_tracefunc;
    h.trace_obj = ts->c_traceobj;
    h.threading_profile =
        ModuleGlobal("threading", "_profile_hook", &h.threading_loaded);
    h.threading_trace = ModuleGlobal("threading", "_trace_hook");
    h.keep_profile = PyRef::Borrow(h.threading_profile);
    h.keep_trace = PyRef::Borrow(h.threading_trace);
    return h;
  }

  // Whether threading.<global> now differs from `before`.
  bool ThreadingHookChanged(const char* global, PyObject* before) const {
    PyObject* now = ModuleGlobal("threading", global);
    if (threading_loaded) return now != before;
    return now != nullptr && now != Py_None;  // set after a first import
  }

  // Findings for what changed since Capture(), the profiler excepted.
  void Compare(std::vector<proto::Event>& out) const {
    PyThreadState* ts = PyThreadState_Get();
    if (ts->c_tracefunc != c_trace || ts->c_traceobj != trace_obj) {
      Finding(out, "loader.hook.disabled", {{"hook", "sys.settrace"}});
    }
    if (ThreadingHookChanged("_profile_hook", threading_profile)) {
      Finding(out, "loader.hook.disabled", {{"hook", "threading.setprofile"}});
    }
    if (ThreadingHookChanged("_trace_hook", threading_trace)) {
      Finding(out, "loader.hook.disabled", {{"hook", "threading.settrace"}});
    }
  }
};

}  // namespace

// Identity snapshot of the objects the loader's Python half is made of:
// module globals, functions (code, defaults, closure cells, globals),
// classes (metaclass, bases, MRO, every class-dict entry) and the dicts they
// hold (unpickler dispatch tables), down to the pure-Python and joblib
// unpickler classes in their MROs. Keeps references (taken once, in the
// zygote; children only compare pointers). Immutable types and
// modules other than the loader's own are recorded by identity only (the
// integrity diff watches library modules).
class Loader::Seal {
 public:
  // Records `root` and everything reachable from it under the rules above.
  // `skip` names globals of a root module that are recorded by identity only
  // (state the loader itself mutates).
  void AddRoot(PyObject* root, const std::string& label,
               const absl::flat_hash_set<std::string>& skip = {}) {
    skip_ = &skip;
    Visit(root, label, /*root=*/true);
    skip_ = nullptr;
  }

  // Re-records dict[key] (a binding the loader itself changed).
  void Rebind(PyObject* dict, const char* key) {
    for (Entry& e : entries_) {
      if (e.holder.get() != dict) continue;
      if (e.slot == Slot::kDictSize) {
        e.size = PyDict_GET_SIZE(dict);
      } else if (e.slot == Slot::kDictItem && PyUnicode_Check(e.key.get()) &&
                 PyUnicode_CompareWithASCIIString(e.key.get(), key) == 0) {
        e.value = PyRef::Borrow(PyDict_GetItemString(dict, key));
      }
    }
  }

  // One INTEGRITY event per changed entry (at most kMaxFindings, then one
  // with the count of the rest).
  void Check(std::vector<proto::Event>& out) const {
    size_t changed = 0;
    for (const Entry& e : entries_) {
      const char* change = Compare(e);
      if (change == nullptr) continue;
      if (++changed <= kMaxFindings) {
        Finding(out, "loader.tampered",
                {{"what", e.label}, {"change", change}});
      }
    }
    if (changed > kMaxFindings) {
      Finding(out, "loader.tampered",
              {{"what", "<more>"},
               {"change", absl::StrCat(changed - kMaxFindings)}});
    }
    PyErr_Clear();
  }

  size_t size() const { return entries_.size(); }

 private:
  static constexpr size_t kMaxEntries = 100000;
  static constexpr size_t kMaxFindings = 64;
  enum class Slot {
    kDictItem,
    kDictSize,
    kCode,
    kDefaults,
    kKwdefaults,
    kClosure,
    kGlobals,
    kCell,
    kObType,
    kBases,
    kMro,
  };
  struct Entry {
    Slot slot;
    PyRef holder;
    PyRef key;
    PyRef value;
    Py_ssize_t size = 0;
    std::string label;
  };

  static PyObject* Current(const Entry& e) {
    PyObject* h = e.holder.get();
    switch (e.slot) {
      case Slot::kCode:
        return reinterpret_cast<PyFunctionObject*>(h)->func_code;
      case Slot::kDefaults:
        return reinterpret_cast<PyFunctionObject*>(h)->func_defaults;
      case Slot::kKwdefaults:
        return reinterpret_cast<PyFunctionObject*>(h)->func_kwdefaults;
      case Slot::kClosure:
        return reinterpret_cast<PyFunctionObject*>(h)->func_closure;
      case Slot::kGlobals:
        return reinterpret_cast<PyFunctionObject*>(h)->func_globals;
      case Slot::kCell:
        return PyCell_GET(h);
      case Slot::kObType:
        return reinterpret_cast<PyObject*>(Py_TYPE(h));
      case Slot::kBases:
        return reinterpret_cast<PyTypeObject*>(h)->tp_bases;
      case Slot::kMro:
        return reinterpret_cast<PyTypeObject*>(h)->tp_mro;
      case Slot::kDictItem:
      case Slot::kDictSize:
        break;
    }
    return nullptr;
  }

  // nullptr when unchanged, else how it changed.
  static const char* Compare(const Entry& e) {
    if (e.slot == Slot::kDictSize) {
      return PyDict_GET_SIZE(e.holder.get()) != e.size ? "resized" : nullptr;
    }
    if (e.slot == Slot::kDictItem) {
      // Keys are str or int: the lookup runs no Python code.
      PyObject* now = PyDict_GetItemWithError(e.holder.get(), e.key.get());
      if (now == nullptr) {
        PyErr_Clear();
        return "removed";
      }
      return now != e.value.get() ? "rebound" : nullptr;
    }
    return Current(e) != e.value.get() ? "rebound" : nullptr;
  }

  void Add(Slot slot, PyObject* holder, PyObject* key, PyObject* value,
           std::string label) {
    if (entries_.size() >= kMaxEntries) return;
    Entry e;
    e.slot = slot;
    e.holder = PyRef::Borrow(holder);
    e.key = PyRef::Borrow(key);
    e.value = PyRef::Borrow(value);
    if (slot == Slot::kDictSize) e.size = PyDict_GET_SIZE(holder);
    e.label = std::move(label);
    entries_.push_back(std::move(e));
  }

  static std::string KeyLabel(PyObject* key) {
    if (PyUnicode_Check(key)) return hooks::PyUtf8(key, "?");
    if (PyLong_Check(key)) {
      long v = PyLong_AsLong(key);
      PyErr_Clear();
      return absl::StrCat("[", v, "]");
    }
    return "<key>";
  }

  // A class whose dict Python code can change.
  static bool MutableClass(PyObject* obj) {
    if (!PyType_Check(obj)) return false;
    unsigned long flags = reinterpret_cast<PyTypeObject*>(obj)->tp_flags;
    return (flags & Py_TPFLAGS_HEAPTYPE) != 0 &&
           (flags & Py_TPFLAGS_IMMUTABLETYPE) == 0;
  }

  void RecordDict(PyObject* dict, const std::string& label, bool visit_values,
                  bool loader_only) {
    Add(Slot::kDictSize, dict, nullptr, nullptr, label);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    std::vector<std::pair<PyObject*, std::string>> to_visit;
    while (PyDict_Next(dict, &pos, &key, &value)) {
      std::string name = absl::StrCat(label, ".", KeyLabel(key));
      Add(Slot::kDictItem, dict, key, value, name);
      if (!visit_values) continue;
      if (skip_ != nullptr && PyUnicode_Check(key) &&
          skip_->contains(hooks::PyUtf8(key, "?"))) {
        continue;
      }
      if (loader_only && !FromLoader(value)) continue;
      to_visit.emplace_back(value, std::move(name));
    }
    for (auto& [v, name] : to_visit) Visit(v, name, false);
  }

  // Defined by the loader code (its functions share the loader's globals;
  // its classes name the loader module).
  bool FromLoader(PyObject* obj) const {
    if (PyFunction_Check(obj)) {
      return reinterpret_cast<PyFunctionObject*>(obj)->func_globals ==
             loader_globals_;
    }
    if (PyType_Check(obj)) {
      PyObject* d = reinterpret_cast<PyTypeObject*>(obj)->tp_dict;
      PyObject* m =
          d != nullptr ? PyDict_GetItemString(d, "__module__") : nullptr;
      return m != nullptr && PyUnicode_Check(m) &&
             PyUnicode_CompareWithASCIIString(m, kLoaderModule) == 0;
    }
    return false;
  }

  void Visit(PyObject* obj, const std::string& label, bool root) {
    if (obj == nullptr || entries_.size() >= kMaxEntries) return;
    if (!visited_.insert(obj).second) return;
    keep_.push_back(PyRef::Borrow(obj));
    if (PyModule_Check(obj)) {
      const char* name = PyModule_GetName(obj);
      PyErr_Clear();
      const bool own =
          root || (name != nullptr && strcmp(name, kPickleModule) == 0);
      if (!own) return;  // library modules: the integrity diff's job
      PyObject* dict = PyModule_GetDict(obj);
      if (root && loader_globals_ == nullptr) loader_globals_ = dict;
      RecordDict(dict, label, true, /*loader_only=*/!root);
      return;
    }
    if (PyFunction_Check(obj)) {
      auto* f = reinterpret_cast<PyFunctionObject*>(obj);
      Add(Slot::kCode, obj, nullptr, f->func_code, label + ".__code__");
      Add(Slot::kDefaults, obj, nullptr, f->func_defaults,
          label + ".__defaults__");
      Add(Slot::kKwdefaults, obj, nullptr, f->func_kwdefaults,
          label + ".__kwdefaults__");
      Add(Slot::kGlobals, obj, nullptr, f->func_globals,
          label + ".__globals__");
      Add(Slot::kClosure, obj, nullptr, f->func_closure,
          label + ".__closure__");
      if (f->func_closure != nullptr && PyTuple_Check(f->func_closure)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(f->func_closure); ++i) {
          PyObject* cell = PyTuple_GET_ITEM(f->func_closure, i);
          if (!PyCell_Check(cell)) continue;
          std::string name = absl::StrCat(label, ".__closure__[", i, "]");
          Add(Slot::kCell, cell, nullptr, PyCell_GET(cell), name);
          PyObject* v = PyCell_GET(cell);
          if (v != nullptr && (PyFunction_Check(v) || PyType_Check(v))) {
            Visit(v, name, false);
          }
        }
      }
      return;
    }
    if (PyType_Check(obj)) {
      if (!MutableClass(obj)) return;
      auto* t = reinterpret_cast<PyTypeObject*>(obj);
      Add(Slot::kObType, obj, nullptr,
          reinterpret_cast<PyObject*>(Py_TYPE(obj)), label + ".__class__");
      Add(Slot::kBases, obj, nullptr, t->tp_bases, label + ".__bases__");
      Add(Slot::kMro, obj, nullptr, t->tp_mro, label + ".__mro__");
      if (t->tp_dict != nullptr) RecordDict(t->tp_dict, label, true, false);
      Visit(reinterpret_cast<PyObject*>(Py_TYPE(obj)), label + ".__class__",
            false);
      if (t->tp_mro != nullptr && PyTuple_Check(t->tp_mro)) {
        for (Py_ssize_t i = 1; i < PyTuple_GET_SIZE(t->tp_mro); ++i) {
          PyObject* base = PyTuple_GET_ITEM(t->tp_mro, i);
          Visit(base, PyTypeName(reinterpret_cast<PyTypeObject*>(base)), false);
        }
      }
      return;
    }
    if (PyDict_Check(obj)) {
      RecordDict(obj, label, true, false);
      return;
    }
    if (Py_IS_TYPE(obj, &PyProperty_Type)) {
      // fget/fset/fdel are read-only attributes of a property.
      for (const char* attr : {"fget", "fset", "fdel"}) {
        PyRef f(PyObject_GetAttrString(obj, attr));
        if (!f) {
          PyErr_Clear();
          continue;
        }
        if (PyFunction_Check(f.get())) {
          Visit(f.get(), absl::StrCat(label, ".", attr), false);
        }
      }
    }
    // Anything else: its binding is recorded by identity only.
  }

  static constexpr char kLoaderModule[] = "dynahug_loader";
  static constexpr char kPickleModule[] = "dynahug_pickle";
  std::vector<Entry> entries_;
  absl::flat_hash_set<const PyObject*> visited_;
  std::vector<PyRef> keep_;  // visited objects stay alive (no address reuse)
  PyObject* loader_globals_ = nullptr;
  const absl::flat_hash_set<std::string>* skip_ = nullptr;
};

namespace {
// Globals the loader itself mutates: recorded by binding only.
const absl::flat_hash_set<std::string>& MutableGlobals() {
  static const auto* names = new absl::flat_hash_set<std::string>{
      "_STATE", "_stubs", "_ELEMENT_SIZE", "_OPS", "sys", "__builtins__"};
  return *names;
}
// Python thread states of the interpreter (threads that run or are about
// to run Python code).
int ThreadCount() {
  int n = 0;
  PyThreadState* self = PyThreadState_Get();
  for (PyThreadState* t = PyInterpreterState_ThreadHead(self->interp);
       t != nullptr; t = PyThreadState_Next(t)) {
    ++n;
  }
  return n;
}

// Interval timers and the signal each delivers.
constexpr std::pair<int, int> kTimers[] = {{ITIMER_REAL, SIGALRM},
                                           {ITIMER_VIRTUAL, SIGVTALRM},
                                           {ITIMER_PROF, SIGPROF}};

bool Armed(const itimerval& t) {
  return t.it_value.tv_sec != 0 || t.it_value.tv_usec != 0;
}

// Whether Python code installed a handler for `signum` (a callable, not
// SIG_DFL/SIG_IGN). `getsignal` is _signal.getsignal, a builtin: reading
// its table makes no system call.
bool HasPythonHandler(PyObject* getsignal, int signum) {
  PyRef h(PyObject_CallFunction(getsignal, "i", signum));
  const bool callable = h && PyCallable_Check(h.get());
  PyErr_Clear();
  return callable;
}

// Armed timers whose signal runs a Python handler: the only timers that
// can run anything (with SIG_DFL the process dies, with SIG_IGN nothing
// happens). getitimer() only for those, so that a load that installed no
// handler adds no system call to its trace.
std::vector<int> PendingTimers(PyObject* getsignal) {
  std::vector<int> out;
  for (const auto& [which, signum] : kTimers) {
    if (!HasPythonHandler(getsignal, signum)) continue;
    itimerval t{};
    if (getitimer(which, &t) == 0 && Armed(t)) out.push_back(which);
  }
  return out;
}

// Brings the timers `which` that would fire more than `within_ms` from now
// forward to fire in a millisecond (their interval is kept).
void BringTimersForward(const std::vector<int>& timers, double within_ms) {
  for (int which : timers) {
    itimerval t{};
    if (getitimer(which, &t) != 0 || !Armed(t)) continue;
    const double ms =
        static_cast<double>(t.it_value.tv_sec) * 1000.0 +
        static_cast<double>(t.it_value.tv_usec) / 1000.0;
    if (ms <= within_ms) continue;
    t.it_value.tv_sec = 0;
    t.it_value.tv_usec = 1000;
    setitimer(which, &t, nullptr);
  }
}

// Sleeps `ms` with the GIL released (other Python threads run).
void SleepWithoutGil(double ms) {
  timespec ts{0, static_cast<long>(ms * 1e6)};
  Py_BEGIN_ALLOW_THREADS;
  nanosleep(&ts, nullptr);
  Py_END_ALLOW_THREADS;
}

// Runs the Python handlers of signals that arrived; an exception a handler
// raises is dropped (at exit nobody would catch it either).
void RunSignalHandlers() {
  if (PyErr_CheckSignals() != 0) PyErr_Clear();
}

// A LOG event (same shape as an INTEGRITY finding).
proto::Event LogEvent(
    std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string>> args) {
  proto::Event e = hooks::IntegrityFinding(name, args);
  e.set_kind(proto::Event::LOG);
  return e;
}

}  // namespace

Loader::Loader() = default;
Loader::Loader(Loader&&) noexcept = default;
Loader& Loader::operator=(Loader&&) noexcept = default;
Loader::~Loader() = default;

absl::StatusOr<Loader> Loader::Create(const Interpreter& interpreter) {
  if (!interpreter.active() || !Py_IsInitialized()) {
    return absl::FailedPreconditionError("Loader::Create: no interpreter");
  }
  Loader loader;
  absl::StatusOr<PyRef> bridge = hooks::CreateUnpicklerBridge();
  if (!bridge.ok()) return bridge.status();
  loader.bridge_ = std::move(*bridge);
  // One piece of code in one namespace: the instrumented unpickler, then the
  // drivers that use it.
  const std::string source = std::string(hooks::kUnpicklerSource) +
                             std::string(internal::kValueDigestSource) +
                             std::string(internal::kLoaderSource);
  PyRef code(Py_CompileString(source.c_str(), kLoaderFilename, Py_file_input));
  if (!code) return StatusFromPyErr("Loader::Create: compile loader");
  if (absl::Status s = hooks::AllowBridgeCaller(code.get()); !s.ok()) return s;
  loader.module_ = PyRef(PyModule_New("dynahug_loader"));
  if (!loader.module_) return StatusFromPyErr("Loader::Create: module");
  PyObject* globals = PyModule_GetDict(loader.module_.get());  // borrowed
  PyRef table = LoaderTableForPython();
  if (!table ||
      PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) !=
          0 ||
      PyDict_SetItemString(globals, "_dh", loader.bridge_.get()) != 0 ||
      PyDict_SetItemString(globals, "_loaders", table.get()) != 0) {
    return StatusFromPyErr("Loader::Create: globals");
  }
  PyRef result(PyEval_EvalCode(code.get(), globals, globals));
  if (!result) return StatusFromPyErr("Loader::Create: run loader code");
  // The bridge's functions and the table's drivers are bound in the
  // namespace; the bridge module and the table themselves need not be.
  if (PyDict_DelItemString(globals, "_dh") != 0 ||
      PyDict_DelItemString(globals, "_loaders") != 0) {
    return StatusFromPyErr("Loader::Create: hide the bridge");
  }
  // The pure-Python unpickler's own frames are transparent to the profiler.
  PyRef pickle(PyImport_ImportModule("pickle"));
  if (!pickle) return StatusFromPyErr("Loader::Create: import pickle");
  PyRef file(PyObject_GetAttrString(pickle.get(), "__file__"));
  if (!file) return StatusFromPyErr("Loader::Create: pickle.__file__");
  loader.pickle_file_ = hooks::PyUtf8(file.get(), "");
  loader.prepare_ = PyRef::Borrow(PyDict_GetItemString(globals, "prepare"));
  loader.result_ = PyRef::Borrow(PyDict_GetItemString(globals, "result"));
  loader.digest_ =
      PyRef::Borrow(PyDict_GetItemString(globals, "digest"));
  if (!loader.prepare_ || !loader.result_ || !loader.digest_) {
    return absl::InternalError(
        "Loader::Create: loader code defines no "
        "prepare()/result()/digest()");
  }
  PyRef atexit(PyImport_ImportModule("atexit"));
  if (atexit) {
    loader.atexit_count_ =
        PyRef(PyObject_GetAttrString(atexit.get(), "_ncallbacks"));
    loader.atexit_run_ =
        PyRef(PyObject_GetAttrString(atexit.get(), "_run_exitfuncs"));
  }
  if (!loader.atexit_count_ || !loader.atexit_run_) {
    return StatusFromPyErr("Loader::Create: atexit");
  }
  PyRef signal(PyImport_ImportModule("_signal"));
  if (signal) {
    loader.signal_getsignal_ =
        PyRef(PyObject_GetAttrString(signal.get(), "getsignal"));
  }
  if (!loader.signal_getsignal_) {
    return StatusFromPyErr("Loader::Create: _signal.getsignal");
  }
  loader.seal_ = std::make_unique<Seal>();
  loader.seal_->AddRoot(loader.module_.get(), "dynahug_loader",
                        MutableGlobals());
  loader.seal_->AddRoot(loader.bridge_.get(), "_dynahug_bridge");
  return loader;
}

hooks::PyRef Loader::Digest(PyObject* value, int64_t lazy_threshold) {
  // A pending error (result() failed) must not reach the digest call.
  PyObject *type = nullptr, *exc = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &exc, &tb);
  PyRef digest(PyObject_CallFunction(digest_.get(), "OL", value,
                                     static_cast<long long>(lazy_threshold)));
  if (!digest || !PyUnicode_Check(digest.get())) {
    PyObject *dtype = nullptr, *dexc = nullptr, *dtb = nullptr;
    PyErr_Fetch(&dtype, &dexc, &dtb);
    const std::string name =
        dtype != nullptr && PyType_Check(dtype)
            ? PyTypeName(reinterpret_cast<PyTypeObject*>(dtype))
            : "not a str";
    Py_XDECREF(dtype);
    Py_XDECREF(dexc);
    Py_XDECREF(dtb);
    digest = PyRef(PyUnicode_FromString(("error: " + name).c_str()));
    PyErr_Clear();
  }
  PyErr_Restore(type, exc, tb);
  return digest;
}

absl::StatusOr<LoadResult> Loader::Load(const std::string& path,
                                        const LoadOptions& options,
                                        hooks::EventSink& sink) {
  if (!prepare_) {
    return absl::FailedPreconditionError("Loader::Load: moved-from");
  }
  LoadResult out;
  if (options.loader == "auto") {
    absl::StatusOr<std::string> loader = DefaultLoaderFor(options.format);
    if (!loader.ok()) return loader.status();
    out.loader = *loader;
  } else {
    if (FindLoader(options.loader) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown loader \"", options.loader, "\""));
    }
    out.loader = options.loader;
  }
  hooks::PathContext paths = options.paths;
  if (paths.model_path.empty()) paths.model_path = path;

  auto start = std::chrono::steady_clock::now();
  // Member name for events of torch zips, found before observers start.
  std::string member;
  if (out.loader == "torch.load") {
    PyRef name(PyObject_CallMethod(module_.get(), "torch_zip_member", "s",
                                   path.c_str()));
    if (!name) return StatusFromPyErr("Loader::Load: torch_zip_member");
    member = hooks::PyUtf8(name.get(), "");
  }
  PyRef prepared(
      PyObject_CallFunction(prepare_.get(), "ssiLis", path.c_str(),
                            out.loader.c_str(), options.opcodes ? 1 : 0,
                            static_cast<long long>(options.lazy_storage_bytes),
                            options.record_calls ? 0 : 1, member.c_str()));
  if (!prepared) return StatusFromPyErr("Loader::Load: prepare");
  if (!PyTuple_Check(prepared.get()) || PyTuple_GET_SIZE(prepared.get()) != 2) {
    return absl::InternalError("Loader::Load: malformed prepare() result");
  }
  PyObject* driver = PyTuple_GET_ITEM(prepared.get(), 0);
  PyObject* new_class = PyTuple_GET_ITEM(prepared.get(), 1);
  if (new_class != Py_None) {
    // Built by prepare() (joblib's unpickler subclass): sealed from now on.
    seal_->Rebind(PyModule_GetDict(module_.get()), "_joblib_unpickler");
    seal_->AddRoot(new_class, "dynahug_loader._joblib_unpickler");
  }
  PyRef path_obj(PyUnicode_DecodeFSDefault(path.c_str()));
  if (!path_obj) return StatusFromPyErr("Loader::Load: path");

  hooks::EventRecorder recorder(&sink, options.recorder_limits);
  std::optional<hooks::IntegritySnapshot> snapshot;
  if (options.integrity_diff && options.integrity_baseline == nullptr) {
    absl::StatusOr<hooks::IntegritySnapshot> s =
        hooks::IntegritySnapshot::Take(options.integrity);
    if (!s.ok()) return s.status();
    snapshot = std::move(*s);
  }
  hooks::CallProfiler profiler(options.profiler_limits, kLoaderFilename,
                               {{pickle_file_, {"_Unpickler.", "_Unframer."}}});
  std::vector<proto::Event> findings;
  PyRef result;
  PyRef digest;
  {
    LoadPhase phase(&recorder, std::move(paths), options.audit_limits);
    if (options.profile_calls) {
      if (absl::Status s = profiler.Start(); !s.ok()) return s;
    }
    const HookState hooks_before = HookState::Capture();
    hooks::AuditHook& audit = hooks::AuditHook::Instance();
    // The recording window: switched here only, never from Python.
    audit.SetRecording(true);
    PyRef value(PyObject_CallOneArg(driver, path_obj.get()));
    bool ok = static_cast<bool>(value);
    if (!ok) {
      PyObject *type = nullptr, *exc = nullptr, *tb = nullptr;
      PyErr_Fetch(&type, &exc, &tb);
      PyErr_NormalizeException(&type, &exc, &tb);
      PyRef type_ref(type), tb_ref(tb);
      value = PyRef(exc);
      if (!value) value = PyRef::Borrow(Py_None);
    }
    // Described while still recording: str() of the payload's exception or
    // type name may run its code.
    result = PyRef(PyObject_CallFunction(result_.get(), "OO",
                                         ok ? Py_True : Py_False, value.get()));
    if (!audit.recording()) {
      Finding(findings, "loader.hook.disabled", {{"hook", "audit.recording"}});
    }
    audit.SetRecording(false);
    // Every hook, checked against its state before the call.
    hooks_before.Compare(findings);
    if (options.profile_calls && !profiler.Stop()) {
      Finding(findings, "loader.hook.disabled", {{"hook", "profiler"}});
    }
    if (ok && options.value_digest) {
      digest = Digest(value.get(), out.loader == "torch.load"
                                       ? options.lazy_storage_bytes
                                       : -1);
    }
    value = PyRef();
  }
  if (!result) return StatusFromPyErr("Loader::Load: loader result");
  if (!PyTuple_Check(result.get()) || PyTuple_GET_SIZE(result.get()) != 5) {
    return absl::InternalError("Loader::Load: malformed driver result");
  }
  out.loaded = PyObject_IsTrue(PyTuple_GET_ITEM(result.get(), 0)) == 1;
  out.loaded_type = hooks::PyUtf8(PyTuple_GET_ITEM(result.get(), 1), "");
  out.loaded_type_is_stub =
      PyObject_IsTrue(PyTuple_GET_ITEM(result.get(), 2)) == 1;
  out.error_type = hooks::PyUtf8(PyTuple_GET_ITEM(result.get(), 3), "");
  out.error_message = hooks::PyUtf8(PyTuple_GET_ITEM(result.get(), 4), "");
  if (digest) out.loaded_digest = hooks::PyUtf8(digest.get(), "");
  PyErr_Clear();
  result = PyRef();
  digest = PyRef();

  if (!hooks::AuditHook::Instance().VerifyActive().ok()) {
    Finding(findings, "loader.hook.disabled", {{"hook", "audit.hook"}});
  }
  if (!hooks::AuditHook::Instance().CtypesInterposerIntact()) {
    Finding(findings, "loader.hook.disabled", {{"hook", "ctypes.interposer"}});
  }
  seal_->Check(findings);
  PyErr_Clear();

  if (options.profile_calls) profiler.EmitTo(recorder);
  hooks::TakeBridgeFindings(recorder);
  for (proto::Event& e : findings) recorder.Emit(std::move(e));
  const hooks::IntegritySnapshot* baseline =
      snapshot.has_value() ? &*snapshot : options.integrity_baseline;
  if (options.integrity_diff && baseline != nullptr) {
    absl::StatusOr<size_t> diff = baseline->DiffAndEmit(recorder);
    if (!diff.ok()) return diff.status();
  }
  recorder.Flush();
  out.dropped_events = recorder.dropped();
  out.load_ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - start)
                    .count();
  return out;
}

DeferredWork Loader::CaptureDeferred() const {
  DeferredWork w;
  w.threads = ThreadCount();
  if (atexit_count_) {
    PyRef n(PyObject_CallNoArgs(atexit_count_.get()));
    w.atexit_callbacks = n ? static_cast<int>(PyLong_AsLong(n.get())) : 0;
    PyErr_Clear();
  }
  return w;
}

absl::StatusOr<ShutdownResult> Loader::RunShutdown(
    const DeferredWork& before, const ShutdownOptions& options,
    hooks::EventSink& sink) {
  if (!atexit_run_) {
    return absl::FailedPreconditionError("Loader::RunShutdown: moved-from");
  }
  ShutdownResult out;
  const DeferredWork now = CaptureDeferred();
  out.atexit_added = std::max(0, now.atexit_callbacks - before.atexit_callbacks);
  out.threads_added = std::max(0, now.threads - before.threads);
  out.timers_armed =
      static_cast<int>(PendingTimers(signal_getsignal_.get()).size());
  if (out.atexit_added == 0 && out.threads_added == 0 &&
      out.timers_armed == 0) {
    return out;  // the common case: costs the three counts above
  }
  out.ran = true;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed_ms = [&start] {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now() - start)
        .count();
  };
  hooks::EventRecorder recorder(&sink, options.recorder_limits);
  recorder.Emit(LogEvent("shutdown.begin",
                         {{"atexit", absl::StrCat(out.atexit_added)},
                          {"threads", absl::StrCat(out.threads_added)},
                          {"timers", absl::StrCat(out.timers_armed)}}));
  hooks::CallProfiler profiler(options.profiler_limits, kLoaderFilename,
                               {{pickle_file_, {"_Unpickler.", "_Unframer."}}});
  {
    LoadPhase phase(&recorder, options.paths, options.audit_limits);
    if (options.profile_calls) {
      if (absl::Status s = profiler.Start(); !s.ok()) return s;
    }
    hooks::AuditHook& audit = hooks::AuditHook::Instance();
    audit.SetRecording(true);
    RunSignalHandlers();
    if (options.grace_ms > 0) {
      BringTimersForward(PendingTimers(signal_getsignal_.get()),
                         options.grace_ms);
      constexpr double kPollMs = 2;
      while (elapsed_ms() < options.grace_ms &&
             (ThreadCount() > before.threads ||
              !PendingTimers(signal_getsignal_.get()).empty())) {
        SleepWithoutGil(kPollMs);
        RunSignalHandlers();
      }
    }
    // atexit handlers run whatever the loads registered (the count may
    // also have dropped: atexit.unregister, atexit._clear).
    if (now.atexit_callbacks > 0) {
      PyRef r(PyObject_CallNoArgs(atexit_run_.get()));
      PyErr_Clear();  // handlers' exceptions are printed to stderr, not raised
    }
    RunSignalHandlers();
    audit.SetRecording(false);
    if (options.profile_calls) profiler.Stop();
  }
  out.threads_left = std::max(0, ThreadCount() - before.threads);
  out.shutdown_ms = elapsed_ms();
  if (options.profile_calls) profiler.EmitTo(recorder);
  recorder.Emit(LogEvent("shutdown.end",
                         {{"threads_left", absl::StrCat(out.threads_left)},
                          {"ms", absl::StrCat(out.shutdown_ms)}}));
  recorder.Flush();
  return out;
}

}  // namespace dynahug::runtime

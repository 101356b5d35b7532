#include "hooks/integrity_diff.h"

#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dynahug::hooks {
namespace {

std::string Describe(PyObject* obj) {
  if (obj == nullptr) return "<none>";
  if (obj == Py_None) return "None";
  std::string type = PyTypeName(Py_TYPE(obj));
  PyObject* qual = nullptr;
  if (PyFunction_Check(obj)) {
    qual = reinterpret_cast<PyFunctionObject*>(obj)->func_qualname;
    PyObject* mod = reinterpret_cast<PyFunctionObject*>(obj)->func_module;
    return absl::StrCat(type, ":", PyUtf8(mod, "?"), ".", PyUtf8(qual, "?"));
  }
  if (PyCFunction_Check(obj)) {
    return absl::StrCat(
        type, ":", reinterpret_cast<PyCFunctionObject*>(obj)->m_ml->ml_name);
  }
  if (PyType_Check(obj)) {
    return absl::StrCat("type:",
                        PyTypeName(reinterpret_cast<PyTypeObject*>(obj)));
  }
  return type;
}

// Calls module.func() with no arguments and returns it as a long, or -1.
long CallCount(const char* module, const char* func, bool length) {
  PyRef name(PyUnicode_FromString(module));
  PyRef mod(name ? PyImport_GetModule(name.get()) : nullptr);
  if (!mod) {
    PyErr_Clear();
    return -1;
  }
  PyRef r(length ? PyObject_GetAttrString(mod.get(), func)
                 : PyObject_CallMethod(mod.get(), func, nullptr));
  if (!r) {
    PyErr_Clear();
    return -1;
  }
  long v = length ? (PyList_Check(r.get()) ? PyList_GET_SIZE(r.get()) : -1)
                  : PyLong_AsLong(r.get());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    return -1;
  }
  return v;
}

PyRef ListCopy(PyObject* list) {
  if (list == nullptr || !PyList_Check(list)) return PyRef();
  return PyRef(PyList_GetSlice(list, 0, PyList_GET_SIZE(list)));
}

bool SameList(PyObject* a, PyObject* b) {
  if (a == nullptr || b == nullptr) return a == b;
  if (!PyList_Check(b) || PyList_GET_SIZE(a) != PyList_GET_SIZE(b))
    return false;
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(a); ++i) {
    if (PyList_GET_ITEM(a, i) != PyList_GET_ITEM(b, i)) return false;
  }
  return true;
}

PyRef SysCall(const char* func) {
  PyObject* f = PySys_GetObject(func);  // borrowed; sys.gettrace etc.
  if (f == nullptr) return PyRef();
  PyRef r(PyObject_CallNoArgs(f));
  if (!r) PyErr_Clear();
  return r;
}

class Emitter {
 public:
  Emitter(EventSink& sink, size_t max) : sink_(sink), max_(max) {}
  void Finding(
      std::string name,
      std::initializer_list<std::pair<std::string_view, std::string>> args) {
    ++count_;
    if (count_ > max_) return;
    proto::Event e = IntegrityFinding(name, args);
    for (proto::Argument& a : *e.mutable_args()) {
      if (a.value().size() > 200) a.set_value(a.value().substr(0, 200) + "...");
    }
    sink_.Emit(std::move(e));
  }
  size_t Finish() {
    if (count_ > max_) {
      proto::Event e;
      e.set_kind(proto::Event::INTEGRITY);
      e.set_name("integrity.truncated");
      proto::Argument* a = e.add_args();
      a->set_key("not_emitted");
      a->set_value(absl::StrCat(count_ - max_));
      sink_.Emit(std::move(e));
    }
    return count_;
  }

 private:
  EventSink& sink_;
  size_t max_;
  size_t count_ = 0;
};

std::string ModuleOrigin(PyObject* value) {
  if (!PyModule_Check(value)) return "non-module:" + Describe(value);
  PyObject* dict = PyModule_GetDict(value);  // borrowed
  PyObject* spec =
      dict != nullptr ? PyDict_GetItemString(dict, "__spec__") : nullptr;
  return spec != nullptr && spec != Py_None ? "import" : "no-spec";
}

}  // namespace

absl::StatusOr<IntegritySnapshot> IntegritySnapshot::Take(
    const IntegrityOptions& options) {
  IntegritySnapshot snap;
  snap.options_ = options;
  PyObject* modules = PyImport_GetModuleDict();  // borrowed
  if (modules == nullptr) return StatusFromPyErr("integrity: sys.modules");
  snap.modules_ = PyRef(PyDict_Copy(modules));
  if (!snap.modules_) return StatusFromPyErr("integrity: copy sys.modules");
  for (const std::string& name : options.watched_modules) {
    PyObject* mod = PyDict_GetItemString(modules, name.c_str());  // borrowed
    if (mod == nullptr || !PyModule_Check(mod)) continue;
    PyRef dict(PyDict_Copy(PyModule_GetDict(mod)));
    if (!dict) return StatusFromPyErr("integrity: copy " + name);
    snap.watched_.push_back({name, PyRef::Borrow(mod), std::move(dict)});
  }
  snap.meta_path_ = ListCopy(PySys_GetObject("meta_path"));
  snap.path_hooks_ = ListCopy(PySys_GetObject("path_hooks"));
  snap.path_ = ListCopy(PySys_GetObject("path"));
  snap.trace_ = SysCall("gettrace");
  snap.profile_ = SysCall("getprofile");
  PyThreadState* ts = PyThreadState_Get();
  snap.c_trace_ = reinterpret_cast<void*>(ts->c_tracefunc);
  snap.c_profile_ = reinterpret_cast<void*>(ts->c_profilefunc);
  snap.threads_ = CallCount("_thread", "_count", false);
  snap.atexit_ = CallCount("atexit", "_ncallbacks", false);
  snap.gc_callbacks_ = CallCount("gc", "callbacks", true);
  PyErr_Clear();
  return snap;
}

namespace {

// Attributes that CPython's own fork protocol rebinds in the child
// (threading._after_fork, run by PyOS_AfterFork_Child): a snapshot taken in
// the zygote before fork and diffed in the child must not report them.
bool RebindsOnFork(const std::string& module, PyObject* key) {
  if (module != "threading" || !PyUnicode_Check(key)) return false;
  const char* name = PyUnicode_AsUTF8(key);
  if (name == nullptr) {
    PyErr_Clear();
    return false;
  }
  const std::string_view attr(name);
  return attr == "_active_limbo_lock" || attr == "_main_thread" ||
         attr == "_shutdown_locks_lock" || attr == "_shutdown_locks";
}

}  // namespace

absl::StatusOr<size_t> IntegritySnapshot::DiffAndEmit(EventSink& sink) const {
  Emitter out(sink, options_.max_findings);
  PyObject* modules = PyImport_GetModuleDict();
  if (modules == nullptr || !modules_) {
    return StatusFromPyErr("integrity: sys.modules");
  }
  // sys.modules
  {
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(modules, &pos, &key, &value)) {
      PyObject* old = PyDict_GetItemWithError(modules_.get(), key);
      if (old == nullptr) {
        PyErr_Clear();
        out.Finding("sys.modules.added", {{"module", PyUtf8(key, "?")},
                                          {"origin", ModuleOrigin(value)}});
      } else if (old != value) {
        out.Finding("sys.modules.replaced", {{"module", PyUtf8(key, "?")},
                                             {"new", ModuleOrigin(value)}});
      }
    }
    pos = 0;
    while (PyDict_Next(modules_.get(), &pos, &key, &value)) {
      if (PyDict_GetItemWithError(modules, key) == nullptr) {
        PyErr_Clear();
        out.Finding("sys.modules.removed", {{"module", PyUtf8(key, "?")}});
      }
    }
  }
  // Watched module attributes.
  for (const Watched& w : watched_) {
    PyObject* now = PyModule_GetDict(w.module.get());
    if (now == nullptr) continue;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(w.dict.get(), &pos, &key, &value)) {
      PyObject* cur = PyDict_GetItemWithError(now, key);
      if (cur == nullptr) {
        PyErr_Clear();
        out.Finding("module.attr.removed", {{"module", w.name},
                                            {"attr", PyUtf8(key, "?")},
                                            {"old", Describe(value)}});
      } else if (cur != value && !RebindsOnFork(w.name, key)) {
        out.Finding("module.attr.rebound", {{"module", w.name},
                                            {"attr", PyUtf8(key, "?")},
                                            {"old", Describe(value)},
                                            {"new", Describe(cur)}});
      }
    }
    pos = 0;
    while (PyDict_Next(now, &pos, &key, &value)) {
      if (PyDict_GetItemWithError(w.dict.get(), key) != nullptr) continue;
      PyErr_Clear();
      std::string attr = PyUtf8(key, "?");
      if (attr.starts_with("__") && attr.ends_with("__")) continue;
      if (PyModule_Check(value)) {
        const char* n = PyModule_GetName(value);
        if (n == nullptr) PyErr_Clear();
        if (n != nullptr && std::string(n) == absl::StrCat(w.name, ".", attr)) {
          continue;  // submodule bound by its import
        }
      }
      out.Finding(
          "module.attr.added",
          {{"module", w.name}, {"attr", attr}, {"new", Describe(value)}});
    }
  }
  // sys hooks not stored as attributes.
  PyRef trace = SysCall("gettrace");
  PyRef profile = SysCall("getprofile");
  if (trace.get() != trace_.get()) {
    out.Finding("sys.settrace", {{"before", Describe(trace_.get())},
                                 {"after", Describe(trace.get())}});
  }
  if (profile.get() != profile_.get()) {
    out.Finding("sys.setprofile", {{"before", Describe(profile_.get())},
                                   {"after", Describe(profile.get())}});
  }
  PyThreadState* ts = PyThreadState_Get();
  if (reinterpret_cast<void*>(ts->c_tracefunc) != c_trace_) {
    out.Finding("c.tracefunc.changed", {});
  }
  if (reinterpret_cast<void*>(ts->c_profilefunc) != c_profile_) {
    out.Finding("c.profilefunc.changed", {});
  }
  struct ListCheck {
    const char* name;
    const PyRef& before;
  };
  for (const ListCheck& c :
       {ListCheck{"meta_path", meta_path_},
        ListCheck{"path_hooks", path_hooks_}, ListCheck{"path", path_}}) {
    PyObject* now = PySys_GetObject(c.name);
    if (!SameList(c.before.get(), now)) {
      out.Finding(
          absl::StrCat("sys.", c.name, ".changed"),
          {{"before",
            absl::StrCat(c.before ? PyList_GET_SIZE(c.before.get()) : -1)},
           {"after", absl::StrCat(now != nullptr && PyList_Check(now)
                                      ? PyList_GET_SIZE(now)
                                      : -1)}});
    }
  }
  struct CountCheck {
    const char* finding;
    long before;
    long after;
  };
  for (const CountCheck& c :
       {CountCheck{"threads.started", threads_,
                   CallCount("_thread", "_count", false)},
        CountCheck{"atexit.registered", atexit_,
                   CallCount("atexit", "_ncallbacks", false)},
        CountCheck{"gc.callbacks.changed", gc_callbacks_,
                   CallCount("gc", "callbacks", true)}}) {
    if (c.after != c.before) {
      out.Finding(c.finding, {{"before", absl::StrCat(c.before)},
                              {"after", absl::StrCat(c.after)}});
    }
  }
  PyErr_Clear();
  return out.Finish();
}

}  // namespace dynahug::hooks

#include "hooks/integrity_diff.h"

#include <algorithm>
#include <functional>

#include "absl/container/flat_hash_set.h"
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


std::string ModuleOrigin(PyObject* value) {
  if (!PyModule_Check(value)) return "non-module:" + Describe(value);
  PyObject* dict = PyModule_GetDict(value);  // borrowed
  PyObject* spec =
      dict != nullptr ? PyDict_GetItemString(dict, "__spec__") : nullptr;
  return spec != nullptr && spec != Py_None ? "import" : "no-spec";
}

// Top-level package of a dotted module name ("torch" for "torch.nn").
std::string_view TopLevel(std::string_view module) {
  return module.substr(0, module.find('.'));
}

bool InPackages(PyObject* module_name, const std::vector<std::string>& pkgs) {
  if (module_name == nullptr || !PyUnicode_Check(module_name)) return false;
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(module_name, &size);
  if (utf8 == nullptr) {
    PyErr_Clear();
    return false;
  }
  const std::string_view top = TopLevel(std::string_view(utf8, size));
  for (const std::string& p : pkgs) {
    if (top == p) return true;
  }
  return false;
}

// A class whose dict Python code can change, defined in a library package.
bool LibraryClass(PyObject* obj, const std::vector<std::string>& pkgs) {
  if (!PyType_Check(obj)) return false;
  auto* t = reinterpret_cast<PyTypeObject*>(obj);
  if ((t->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0 ||
      (t->tp_flags & Py_TPFLAGS_IMMUTABLETYPE) != 0 || t->tp_dict == nullptr) {
    return false;
  }
  return InPackages(PyDict_GetItemString(t->tp_dict, "__module__"), pkgs);
}

bool LibraryFunction(PyObject* obj, const std::vector<std::string>& pkgs) {
  return PyFunction_Check(obj) &&
         InPackages(reinterpret_cast<PyFunctionObject*>(obj)->func_module,
                    pkgs);
}

// `now` is a function defined in a library module (by its __globals__, which
// functools.wraps does not copy, unlike __module__) whose __wrapped__ is
// `old`: a library decorating a method of its own (torch.optim.Optimizer
// wraps its subclass's step with a profiling hook whenever an optimizer is
// created).
bool WrapsOld(PyObject* now, PyObject* old,
              const std::vector<std::string>& pkgs) {
  if (!PyFunction_Check(now)) return false;
  PyObject* globals = reinterpret_cast<PyFunctionObject*>(now)->func_globals;
  if (globals == nullptr || !PyDict_Check(globals) ||
      !InPackages(PyDict_GetItemString(globals, "__name__"), pkgs)) {
    return false;
  }
  PyObject* dict = reinterpret_cast<PyFunctionObject*>(now)->func_dict;
  return dict != nullptr && PyDict_Check(dict) &&
         PyDict_GetItemString(dict, "__wrapped__") == old;
}

uint64_t DictVersion(PyObject* dict) {
  return reinterpret_cast<PyDictObject*>(dict)->ma_version_tag;
}

// "torch.nn.modules.linear.Linear".
std::string ClassName(PyTypeObject* t) {
  PyObject* module = t->tp_dict != nullptr
                         ? PyDict_GetItemString(t->tp_dict, "__module__")
                         : nullptr;
  const std::string qual =
      (t->tp_flags & Py_TPFLAGS_HEAPTYPE) != 0
          ? PyUtf8(reinterpret_cast<PyHeapTypeObject*>(t)->ht_qualname, "?")
          : std::string(t->tp_name);
  return absl::StrCat(PyUtf8(module, "?"), ".", qual);
}

// "torch.nn.modules.linear.Linear.forward".
std::string FunctionName(PyObject* obj) {
  auto* f = reinterpret_cast<PyFunctionObject*>(obj);
  return absl::StrCat(PyUtf8(f->func_module, "?"), ".",
                      PyUtf8(f->func_qualname, "?"));
}

std::string DescribeTuple(PyObject* tuple) {
  if (tuple == nullptr) return "<none>";
  if (!PyTuple_Check(tuple)) return Describe(tuple);
  std::string out = "(";
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); ++i) {
    if (i > 0) out += ", ";
    out += Describe(PyTuple_GET_ITEM(tuple, i));
  }
  return out + ")";
}

}  // namespace

class IntegritySnapshot::Emitter {
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
  snap.WatchLibraries();
  snap.SortByAddress();
  PyErr_Clear();
  return snap;
}

void IntegritySnapshot::WatchLibraries() {
  const std::vector<std::string>& pkgs = options_.library_packages;
  if (pkgs.empty()) return;
  absl::flat_hash_set<PyObject*> seen;
  std::vector<PyObject*> class_queue;
  auto add_function = [&](PyObject* obj) {
    if (!LibraryFunction(obj, pkgs) || !seen.insert(obj).second) return;
    auto* f = reinterpret_cast<PyFunctionObject*>(obj);
    functions_.push_back(
        {PyRef::Borrow(obj), PyRef::Borrow(f->func_code),
         PyRef::Borrow(f->func_defaults), PyRef::Borrow(f->func_kwdefaults),
         PyRef::Borrow(f->func_closure)});
    if (f->func_closure == nullptr || !PyTuple_Check(f->func_closure)) return;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(f->func_closure); ++i) {
      PyObject* cell = PyTuple_GET_ITEM(f->func_closure, i);
      if (!PyCell_Check(cell)) continue;
      cells_.push_back({cell, obj, PyRef::Borrow(PyCell_GET(cell)),
                        static_cast<uint32_t>(i)});
    }
  };
  auto add_class = [&](PyObject* obj) {
    if (!LibraryClass(obj, pkgs) || !seen.insert(obj).second) return;
    class_queue.push_back(obj);
  };
  // Module attributes of every library module (a snapshot of sys.modules:
  // nothing here imports).
  PyObject *name, *module;
  Py_ssize_t pos = 0;
  while (PyDict_Next(modules_.get(), &pos, &name, &module)) {
    if (!InPackages(name, pkgs) || !PyModule_Check(module)) continue;
    PyObject* dict = PyModule_GetDict(module);
    PyObject *key, *value;
    Py_ssize_t p = 0;
    while (PyDict_Next(dict, &p, &key, &value)) {
      add_function(value);
      add_class(value);
    }
  }
  // Classes (with the library classes of their MROs) and the functions in
  // their dicts.
  for (size_t i = 0; i < class_queue.size(); ++i) {
    auto* t = reinterpret_cast<PyTypeObject*>(class_queue[i]);
    PyRef copy(PyDict_Copy(t->tp_dict));
    if (!copy) {
      PyErr_Clear();
      continue;
    }
    classes_.push_back({PyRef::Borrow(class_queue[i]),
                        DictVersion(t->tp_dict), PyRef::Borrow(t->tp_bases),
                        PyRef::Borrow(t->tp_mro), std::move(copy)});
    if (t->tp_mro != nullptr && PyTuple_Check(t->tp_mro)) {
      for (Py_ssize_t j = 1; j < PyTuple_GET_SIZE(t->tp_mro); ++j) {
        add_class(PyTuple_GET_ITEM(t->tp_mro, j));
      }
    }
    PyObject *key, *value;
    Py_ssize_t p = 0;
    while (PyDict_Next(t->tp_dict, &p, &key, &value)) {
      if (PyFunction_Check(value)) {
        add_function(value);
      } else if (Py_IS_TYPE(value, &PyStaticMethod_Type) ||
                 Py_IS_TYPE(value, &PyClassMethod_Type)) {
        PyRef f(PyObject_GetAttrString(value, "__func__"));
        if (f) add_function(f.get());
      } else if (Py_IS_TYPE(value, &PyProperty_Type)) {
        for (const char* accessor : {"fget", "fset", "fdel"}) {
          PyRef f(PyObject_GetAttrString(value, accessor));
          if (f) add_function(f.get());
        }
      } else {
        add_class(value);  // nested class
      }
      PyErr_Clear();
    }
  }
}

void IntegritySnapshot::SortByAddress() {
  // The diff reads every watched object once: in address order, memory is
  // walked forward (measured: bench/integrity_bench).
  std::sort(classes_.begin(), classes_.end(),
            [](const WatchedClass& a, const WatchedClass& b) {
              return std::less<PyObject*>()(a.type.get(), b.type.get());
            });
  std::sort(functions_.begin(), functions_.end(),
            [](const WatchedFunction& a, const WatchedFunction& b) {
              return std::less<PyObject*>()(a.function.get(), b.function.get());
            });
  std::sort(cells_.begin(), cells_.end(),
            [](const WatchedCell& a, const WatchedCell& b) {
              return std::less<PyObject*>()(a.cell, b.cell);
            });
}

void IntegritySnapshot::EmitLibraryChanges(Emitter& out) const {
  for (const WatchedClass& c : classes_) {
    auto* t = reinterpret_cast<PyTypeObject*>(c.type.get());
    if (t->tp_bases != c.bases.get() || t->tp_mro != c.mro.get()) {
      out.Finding("class.bases.changed",
                  {{"class", ClassName(t)},
                   {"before", DescribeTuple(c.bases.get())},
                   {"after", DescribeTuple(t->tp_bases)}});
    }
    if (DictVersion(t->tp_dict) == c.version) continue;
    // The dict changed: name what (a value set back to itself is no
    // finding).
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(c.dict.get(), &pos, &key, &value)) {
      PyObject* cur = PyDict_GetItemWithError(t->tp_dict, key);
      if (cur == nullptr) {
        PyErr_Clear();
        out.Finding("class.attr.removed", {{"class", ClassName(t)},
                                           {"attr", PyUtf8(key, "?")},
                                           {"old", Describe(value)}});
      } else if (cur != value) {
        out.Finding(WrapsOld(cur, value, options_.library_packages)
                        ? "class.attr.wrapped"
                        : "class.attr.rebound",
                    {{"class", ClassName(t)},
                                           {"attr", PyUtf8(key, "?")},
                                           {"old", Describe(value)},
                                           {"new", Describe(cur)}});
      }
    }
    pos = 0;
    while (PyDict_Next(t->tp_dict, &pos, &key, &value)) {
      if (PyDict_GetItemWithError(c.dict.get(), key) != nullptr) continue;
      PyErr_Clear();
      std::string attr = PyUtf8(key, "?");
      if (attr == "__slotnames__") continue;  // copyreg's cache
      out.Finding("class.attr.added", {{"class", ClassName(t)},
                                       {"attr", std::move(attr)},
                                       {"new", Describe(value)}});
    }
  }
  // The hot loop: four pointers a function, in one cache line of it.
  for (const WatchedFunction& w : functions_) {
    const auto* f = reinterpret_cast<PyFunctionObject*>(w.function.get());
    if (f->func_code == w.code.get() && f->func_defaults == w.defaults.get() &&
        f->func_kwdefaults == w.kwdefaults.get() &&
        f->func_closure == w.closure.get()) {
      continue;
    }
    struct Slot {
      const char* attr;
      PyObject* before;
      PyObject* after;
      bool tuple;
    };
    for (const Slot& s :
         {Slot{"__code__", w.code.get(), f->func_code, false},
          Slot{"__defaults__", w.defaults.get(), f->func_defaults, true},
          Slot{"__kwdefaults__", w.kwdefaults.get(), f->func_kwdefaults, false},
          Slot{"__closure__", w.closure.get(), f->func_closure, true}}) {
      if (s.before == s.after) continue;
      out.Finding(
          "function.attr.rebound",
          {{"function", FunctionName(w.function.get())},
           {"attr", s.attr},
           {"old", s.tuple ? DescribeTuple(s.before) : Describe(s.before)},
           {"new", s.tuple ? DescribeTuple(s.after) : Describe(s.after)}});
    }
  }
  for (const WatchedCell& c : cells_) {
    PyObject* now = PyCell_GET(c.cell);
    if (now == c.contents.get()) continue;
    out.Finding("function.attr.rebound",
                {{"function", FunctionName(c.function)},
                 {"attr", absl::StrCat("__closure__[", c.index, "]")},
                 {"old", Describe(c.contents.get())},
                 {"new", Describe(now)}});
  }
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
  EmitLibraryChanges(out);
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

#include "hooks/unpickler_hooks.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "hooks/audit_hook.h"
#include "hooks/internal/text.h"

namespace dynahug::hooks {
namespace {

// One watched unpickler: what its hook bindings were at watch().
struct Watched {
  PyRef instance;
  PyRef type;
  PyRef find_class;       // instance __dict__["find_class"], or null
  PyRef persistent_load;  // C unpickler's own getter result, or null
};

// Per-process bridge state (one interpreter, one load at a time).
struct BridgeState {
  EventSink* sink = nullptr;
  absl::flat_hash_set<const PyObject*> allowed;
  std::vector<PyRef> allowed_refs;
  uint64_t foreign_calls = 0;
  std::string first_foreign;  // "<function> (<file>)" of the first one
  std::vector<Watched> watched;
  uint64_t watch_overflow = 0;
};

BridgeState& State() {
  static BridgeState* state = new BridgeState();
  return *state;
}

// A str argument as UTF-8 cut to at most `max` bytes (on a character
// boundary, then "..."); "" for anything else.
std::string BoundedUtf8(PyObject* obj, size_t max) {
  if (obj == nullptr || !PyUnicode_Check(obj)) return "";
  return internal::TruncateUtf8(PyUtf8(obj, "<undecodable>"), max);
}

// True when the Python frame calling the bridge runs registered loader code;
// otherwise counts the call. Reads the frame's code object only.
bool CallerAllowed() {
  BridgeState& state = State();
  PyFrameObject* frame = PyEval_GetFrame();  // borrowed
  PyRef code(frame != nullptr
                 ? reinterpret_cast<PyObject*>(PyFrame_GetCode(frame))
                 : nullptr);
  if (code && state.allowed.contains(code.get())) return true;
  if (state.sink == nullptr) return false;  // not loading: nothing to report
  if (state.foreign_calls++ == 0) {
    if (code) {
      auto* c = reinterpret_cast<PyCodeObject*>(code.get());
      state.first_foreign = absl::StrCat(BoundedUtf8(c->co_qualname, 96), " (",
                                         BoundedUtf8(c->co_filename, 96), ")");
    } else {
      state.first_foreign = "<no Python frame>";
    }
  }
  return false;
}

PyObject* Emit(PyObject*, PyObject* args) {
  int kind = 0;
  PyObject* name = nullptr;
  PyObject* pairs = nullptr;
  long long offset = -1;
  unsigned long long count = 1;
  PyObject* member = nullptr;
  if (!PyArg_ParseTuple(args, "iUO|LKU:emit", &kind, &name, &pairs, &offset,
                        &count, &member)) {
    return nullptr;
  }
  if (!proto::Event::Kind_IsValid(kind)) {
    PyErr_Format(PyExc_ValueError, "emit: bad event kind %d", kind);
    return nullptr;
  }
  if (!PyTuple_Check(pairs)) {
    PyErr_SetString(PyExc_TypeError, "emit: args must be a tuple of pairs");
    return nullptr;
  }
  EventSink* sink = State().sink;
  if (sink == nullptr || !CallerAllowed()) Py_RETURN_NONE;
  proto::Event event;
  event.set_kind(static_cast<proto::Event::Kind>(kind));
  event.set_name(BoundedUtf8(name, kBridgeMaxValueBytes));
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pairs) && i < kBridgeMaxArgs;
       ++i) {
    PyObject* pair = PyTuple_GET_ITEM(pairs, i);
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) continue;
    proto::Argument* arg = event.add_args();
    arg->set_key(BoundedUtf8(PyTuple_GET_ITEM(pair, 0), 64));
    arg->set_value(
        BoundedUtf8(PyTuple_GET_ITEM(pair, 1), kBridgeMaxValueBytes));
  }
  if (offset >= 0) event.set_pickle_offset(static_cast<uint64_t>(offset));
  if (member != nullptr)
    event.set_member(BoundedUtf8(member, kBridgeMaxValueBytes));
  event.set_count(count == 0 ? 1 : count);
  sink->Emit(std::move(event));
  Py_RETURN_NONE;
}

PyObject* SetOffset(PyObject*, PyObject* arg) {
  long long offset = PyLong_AsLongLong(arg);
  if (offset == -1 && PyErr_Occurred()) return nullptr;
  if (!CallerAllowed()) Py_RETURN_NONE;
  AuditHook::Instance().SetPickleOffset(
      offset >= 0 ? std::optional<uint64_t>(offset) : std::nullopt);
  Py_RETURN_NONE;
}

// Instance __dict__["find_class"] (new reference) or null; no Python code.
PyRef InstanceFindClass(PyObject* obj) {
  PyObject** dict_ptr = _PyObject_GetDictPtr(obj);
  PyRef dict;
  if (dict_ptr != nullptr && *dict_ptr != nullptr) {
    dict = PyRef::Borrow(*dict_ptr);
  } else {
    dict = PyRef(PyObject_GenericGetDict(obj, nullptr));
  }
  if (!dict || !PyDict_Check(dict.get())) {
    PyErr_Clear();
    return PyRef();
  }
  PyObject* v = PyDict_GetItemString(dict.get(), "find_class");  // borrowed
  return PyRef::Borrow(v);
}

// The C unpickler's persistent_load as its own getset getter reports it
// (new reference), or null for unpicklers without one. Calls the getter's C
// function directly: no descriptor on a subclass can intervene.
PyRef CPersistentLoad(PyObject* obj) {
  PyObject* mro = Py_TYPE(obj)->tp_mro;
  if (mro == nullptr || !PyTuple_Check(mro)) return PyRef();
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); ++i) {
    auto* t = reinterpret_cast<PyTypeObject*>(PyTuple_GET_ITEM(mro, i));
    if (t->tp_dict == nullptr) continue;
    PyObject* d = PyDict_GetItemString(t->tp_dict, "persistent_load");
    if (d == nullptr || !Py_IS_TYPE(d, &PyGetSetDescr_Type)) continue;
    auto* descr = reinterpret_cast<PyGetSetDescrObject*>(d);
    PyGetSetDef* def = descr->d_getset;
    // A descriptor copied into a class of another layout must not run.
    if (def == nullptr || def->get == nullptr ||
        !PyObject_TypeCheck(obj, descr->d_common.d_type)) {
      return PyRef();
    }
    PyRef v(def->get(obj, def->closure));
    if (!v) PyErr_Clear();
    return v;
  }
  return PyRef();
}

bool SameCallable(PyObject* a, PyObject* b) {
  if (a == b) return true;
  if (a == nullptr || b == nullptr) return false;
  if (PyMethod_Check(a) && PyMethod_Check(b)) {
    return PyMethod_GET_FUNCTION(a) == PyMethod_GET_FUNCTION(b) &&
           PyMethod_GET_SELF(a) == PyMethod_GET_SELF(b);
  }
  return false;
}

PyObject* Watch(PyObject*, PyObject* obj) {
  BridgeState& state = State();
  if (state.sink == nullptr || !CallerAllowed()) Py_RETURN_NONE;
  for (const Watched& w : state.watched) {
    if (w.instance.get() == obj) Py_RETURN_NONE;
  }
  if (state.watched.size() >= kBridgeMaxWatched) {
    ++state.watch_overflow;
    Py_RETURN_NONE;
  }
  Watched w;
  w.instance = PyRef::Borrow(obj);
  w.type = PyRef::Borrow(reinterpret_cast<PyObject*>(Py_TYPE(obj)));
  w.find_class = InstanceFindClass(obj);
  w.persistent_load = CPersistentLoad(obj);
  state.watched.push_back(std::move(w));
  Py_RETURN_NONE;
}

PyObject* Ident(PyObject*, PyObject* arg) { return PyLong_FromVoidPtr(arg); }

PyMethodDef kMethods[] = {
    {"emit", Emit, METH_VARARGS, "Report one event to the current sink."},
    {"set_offset", SetOffset, METH_O,
     "Set the pickle offset stamped on audit events (-1 clears)."},
    {"watch", Watch, METH_O,
     "Register an unpickler whose hook bindings are checked after the load."},
    {"ident", Ident, METH_O, "id() without an audit event."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT,
    "_dynahug_bridge",
    "dynahug loader bridge (not importable)",
    -1,
    kMethods,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

void Finding(
    EventSink& sink, std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string>> args) {
  sink.Emit(IntegrityFinding(name, args));
}

}  // namespace

absl::StatusOr<PyRef> CreateUnpicklerBridge() {
  PyRef module(PyModule_Create(&kModule));
  if (!module) return StatusFromPyErr("CreateUnpicklerBridge");
  // The event kinds emit() takes, by name.
  const google::protobuf::EnumDescriptor* kinds =
      proto::Event::Kind_descriptor();
  for (int i = 0; i < kinds->value_count(); ++i) {
    const google::protobuf::EnumValueDescriptor* kind = kinds->value(i);
    if (PyModule_AddIntConstant(module.get(), kind->name().c_str(),
                                kind->number()) != 0) {
      return StatusFromPyErr("CreateUnpicklerBridge: " + kind->name());
    }
  }
  return module;
}

absl::Status AllowBridgeCaller(PyObject* code) {
  if (code == nullptr || !PyCode_Check(code)) {
    return absl::InvalidArgumentError("AllowBridgeCaller: not a code object");
  }
  BridgeState& state = State();
  std::vector<PyObject*> todo = {code};
  while (!todo.empty()) {
    PyObject* c = todo.back();
    todo.pop_back();
    if (!state.allowed.insert(c).second) continue;
    state.allowed_refs.push_back(PyRef::Borrow(c));
    PyObject* consts = reinterpret_cast<PyCodeObject*>(c)->co_consts;
    if (consts == nullptr || !PyTuple_Check(consts)) continue;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); ++i) {
      PyObject* k = PyTuple_GET_ITEM(consts, i);
      if (PyCode_Check(k)) todo.push_back(k);
    }
  }
  return absl::OkStatus();
}

void SetBridgeSink(EventSink* sink) {
  BridgeState& state = State();
  state.sink = sink;
  if (sink != nullptr) {
    state.foreign_calls = 0;
    state.first_foreign.clear();
    state.watched.clear();
    state.watch_overflow = 0;
  }
}

size_t TakeBridgeFindings(EventSink& sink) {
  BridgeState& state = State();
  size_t findings = 0;
  if (state.foreign_calls > 0) {
    Finding(sink, "loader.bridge.foreign_call",
            {{"calls", absl::StrCat(state.foreign_calls)},
             {"first", state.first_foreign}});
    ++findings;
  }
  for (const Watched& w : state.watched) {
    PyObject* obj = w.instance.get();
    std::string type =
        PyTypeName(reinterpret_cast<PyTypeObject*>(w.type.get()));
    if (reinterpret_cast<PyObject*>(Py_TYPE(obj)) != w.type.get()) {
      Finding(sink, "loader.hook.replaced",
              {{"hook", "unpickler.__class__"}, {"type", type}});
      ++findings;
      continue;
    }
    if (InstanceFindClass(obj).get() != w.find_class.get()) {
      Finding(sink, "loader.hook.replaced",
              {{"hook", "unpickler.find_class"}, {"type", type}});
      ++findings;
    }
    PyRef pl = CPersistentLoad(obj);
    if (!SameCallable(pl.get(), w.persistent_load.get())) {
      Finding(sink, "loader.hook.replaced",
              {{"hook", "unpickler.persistent_load"}, {"type", type}});
      ++findings;
    }
  }
  if (state.watch_overflow > 0) {
    Finding(sink, "loader.hook.unchecked",
            {{"unpicklers", absl::StrCat(state.watch_overflow)}});
    ++findings;
  }
  state.foreign_calls = 0;
  state.first_foreign.clear();
  state.watched.clear();
  state.watch_overflow = 0;
  PyErr_Clear();
  return findings;
}

}  // namespace dynahug::hooks

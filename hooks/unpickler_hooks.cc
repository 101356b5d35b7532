#include "hooks/unpickler_hooks.h"

#include <string>

#include "hooks/audit_hook.h"

namespace dynahug::hooks {
namespace {

EventSink* g_sink = nullptr;

std::string Utf8(PyObject* obj, size_t max) {
  if (obj == nullptr || !PyUnicode_Check(obj)) return "";
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(obj, &n);
  if (s == nullptr) {
    PyErr_Clear();
    return "<undecodable>";
  }
  std::string out(s, static_cast<size_t>(n));
  if (out.size() > max) {
    size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    out.resize(cut);
    out += "...";
  }
  return out;
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
  if (g_sink == nullptr) Py_RETURN_NONE;
  proto::Event event;
  event.set_kind(static_cast<proto::Event::Kind>(kind));
  event.set_name(Utf8(name, kBridgeMaxValueBytes));
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pairs) && i < kBridgeMaxArgs;
       ++i) {
    PyObject* pair = PyTuple_GET_ITEM(pairs, i);
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) continue;
    proto::Argument* arg = event.add_args();
    arg->set_key(Utf8(PyTuple_GET_ITEM(pair, 0), 64));
    arg->set_value(Utf8(PyTuple_GET_ITEM(pair, 1), kBridgeMaxValueBytes));
  }
  if (offset >= 0) event.set_pickle_offset(static_cast<uint64_t>(offset));
  if (member != nullptr) event.set_member(Utf8(member, kBridgeMaxValueBytes));
  event.set_count(count == 0 ? 1 : count);
  g_sink->Emit(std::move(event));
  Py_RETURN_NONE;
}

PyObject* SetOffset(PyObject*, PyObject* arg) {
  long long offset = PyLong_AsLongLong(arg);
  if (offset == -1 && PyErr_Occurred()) return nullptr;
  AuditHook::Instance().SetPickleOffset(
      offset >= 0 ? std::optional<uint64_t>(offset) : std::nullopt);
  Py_RETURN_NONE;
}

PyObject* SetRecording(PyObject*, PyObject* arg) {
  int on = PyObject_IsTrue(arg);
  if (on < 0) return nullptr;
  AuditHook::Instance().SetRecording(on != 0);
  Py_RETURN_NONE;
}

PyObject* Ident(PyObject*, PyObject* arg) { return PyLong_FromVoidPtr(arg); }

PyMethodDef kMethods[] = {
    {"emit", Emit, METH_VARARGS, "Report one event to the current sink."},
    {"set_offset", SetOffset, METH_O,
     "Set the pickle offset stamped on audit events (-1 clears)."},
    {"set_recording", SetRecording, METH_O,
     "Switch audit-event recording on or off."},
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

}  // namespace

absl::StatusOr<runtime::PyRef> CreateUnpicklerBridge() {
  runtime::PyRef module(PyModule_Create(&kModule));
  if (!module) return runtime::StatusFromPyErr("CreateUnpicklerBridge");
  return module;
}

void SetBridgeSink(EventSink* sink) { g_sink = sink; }

}  // namespace dynahug::hooks

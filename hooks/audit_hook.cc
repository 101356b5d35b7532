#include "hooks/audit_hook.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "hooks/base/py_ref.h"
#include "hooks/internal/text.h"

namespace dynahug::hooks {
namespace {

constexpr char kProbeEvent[] = "dynahug.audit_selftest";

// --- native events -----------------------------------------------------------

enum class NativeKind {
  kNone,       // not a native event
  kStackOnly,  // dlopen, dlsym, mmap: the stack
  kMemory,     // arg 0 is an address that is read or wrapped: + target
  kCall,       // arg 0 is a function pointer about to be called: + code
};

NativeKind NativeKindOf(std::string_view name) {
  if (name.empty() || (name[0] != 'c' && name[0] != 'm')) {
    return NativeKind::kNone;
  }
  if (name == "ctypes.call_function") return NativeKind::kCall;
  if (name == "ctypes.cdata" || name == "ctypes.cdata/buffer" ||
      name == "ctypes.string_at" || name == "ctypes.wstring_at") {
    return NativeKind::kMemory;
  }
  if (name == "ctypes.dlopen" || name == "ctypes.dlsym" ||
      name == "ctypes.dlsym/handle" || name == "mmap.__new__") {
    return NativeKind::kStackOnly;
  }
  return NativeKind::kNone;
}

// Frames of this hook (its interposer included).
bool IsObserverFrame(std::string_view function) {
  return function.starts_with("dynahug::hooks::AuditHook::") ||
         function.starts_with("dynahug::hooks::(anonymous namespace)::Event");
}

// Frames of CPython's audit dispatch.
bool IsAuditDispatchFrame(std::string_view function) {
  return function.starts_with("PySys_Audit") ||
         function.starts_with("_PySys_Audit") ||
         function == "sys_audit_tstate" || function == "sys_audit";
}

// At most this many frames of the observer itself sit above the C function
// raising the event.
constexpr int kAuditFrames = 12;

class NativeArgs {
 public:
  NativeArgs(proto::Event* event, const NativeLimits& limits)
      : event_(event), limits_(limits) {}
  void Add(std::string_view key, std::string_view value) {
    if (event_->args_size() >= limits_.max_args) return;
    proto::Argument* arg = event_->add_args();
    arg->set_key(std::string(key));
    arg->set_value(internal::TruncateUtf8(value, limits_.max_value_bytes));
  }

 private:
  proto::Event* event_;
  const NativeLimits& limits_;
};

// Functions through which a call can change the process's mappings; a call
// to one (or to code that cannot be named) invalidates the maps snapshot.
bool MayRemap(std::string_view symbol) {
  static const auto* names = new absl::flat_hash_set<std::string_view>{
      "mmap",    "mmap64",  "munmap",  "mprotect",          "pkey_mprotect",
      "mremap",  "shmat",   "shmdt",   "remap_file_pages",  "dlopen",
      "dlmopen", "dlclose", "syscall", "__libc_dlopen_mode"};
  return symbol.empty() || names->contains(symbol);
}

// target* arguments for `addr` and, for calls into anything but read-only
// code of a file, code* arguments with a bounded disassembly. Returns whether
// the call may change the mappings (see MayRemap; always for non-file code).
bool DescribeTarget(uint64_t addr, bool call, const NativeLimits& limits,
                    const PathContext& ctx, MapsCache& maps, NativeArgs& out) {
  // Calls trust a cached answer only for file code: an anonymous target must
  // be seen as it is now.
  absl::StatusOr<AddressInfo> info = maps.Classify(addr, call);
  if (!info.ok()) {
    out.Add("target", "unknown");
    out.Add("target_error", std::string(info.status().message()));
    return call;
  }
  out.Add("target", info->Label());
  if (info->cls != MemoryClass::kUnmapped) out.Add("target_prot", info->Prot());
  if (info->cls == MemoryClass::kFile || info->cls == MemoryClass::kMemfd) {
    out.Add("target_object", NativeObjectName(info->mapping.path, ctx));
  }
  if (!call) return false;
  std::string symbol;
  if (info->cls == MemoryClass::kFile) {
    Dl_info dl;
    if (dladdr(reinterpret_cast<void*>(addr), &dl) != 0 &&
        dl.dli_sname != nullptr) {
      symbol = dl.dli_sname;
      out.Add("target_symbol", symbol);
    }
  }
  if (info->IsFileCode()) return MayRemap(symbol);
  absl::StatusOr<Disassembly> code =
      DisassembleAt(*info, addr, limits.disasm_bytes, limits.disasm_insns);
  if (!code.ok()) {
    out.Add("code_error", std::string(code.status().message()));
    return true;
  }
  out.Add("code_disasm", absl::StrJoin(code->lines, "; "));
  out.Add("code_hex", code->hex);
  out.Add("code_sha256", code->sha256);
  out.Add("code_size", absl::StrCat(code->size));
  return true;
}

// The native stack of the code that raised the audit event (or called the
// foreign function): the observer and audit dispatch frames above it are
// dropped (they are kept when they cannot be named, e.g. in a stripped
// binary).
std::vector<proto::Frame> EventStack(
    const NativeLimits& limits, const PathContext& ctx,
    absl::flat_hash_map<std::string, std::string>& object_names) {
  std::vector<proto::Frame> frames =
      CaptureNativeStack(limits.max_frames + kAuditFrames);
  // The leading run of observer frames, possibly interleaved with frames
  // that cannot be named (static functions of a stripped libpython).
  // Past the audit dispatch (PySys_Audit) when it is among them.
  size_t first = 0;
  bool leading = true;
  for (size_t i = 0; i < frames.size() && i < kAuditFrames; ++i) {
    const std::string& fn = frames[i].function();
    if (IsAuditDispatchFrame(fn) || (leading && IsObserverFrame(fn))) {
      first = i + 1;
    } else if (!fn.empty()) {
      leading = false;
    }
  }
  frames.erase(frames.begin(),
               frames.begin() + static_cast<std::ptrdiff_t>(first));
  if (frames.size() > static_cast<size_t>(std::max(limits.max_frames, 0))) {
    frames.resize(static_cast<size_t>(std::max(limits.max_frames, 0)));
  }
  for (proto::Frame& f : frames) {
    f.set_function(
        internal::TruncateUtf8(f.function(), limits.max_value_bytes));
    auto it = object_names.find(f.file());
    if (it == object_names.end()) {
      if (object_names.size() >= 4096) object_names.clear();
      it =
          object_names.emplace(f.file(), NativeObjectName(f.file(), ctx)).first;
    }
    f.set_file(it->second);
  }
  return frames;
}

// CFuncPtr's own tp_call, once interposed (process-wide; see
// AuditHook::InterposeCtypesCalls).
ternaryfunc g_cfuncptr_call = nullptr;
// The interposed CFuncPtr type and its "__call__" slot wrapper.
PyTypeObject* g_cfuncptr_type = nullptr;
PyWrapperDescrObject* g_cfuncptr_wrapper = nullptr;

// Replaces `from` by `to` in `type` and in every subclass that inherited it.
// Uses type.__subclasses__ of the built-in type, so no payload code runs.
void PatchCall(PyTypeObject* type, ternaryfunc from, ternaryfunc to,
               int depth) {
  if (type->tp_call == from) type->tp_call = to;
  if (depth > 32) return;
  PyRef subs(PyObject_CallMethod(reinterpret_cast<PyObject*>(&PyType_Type),
                                 "__subclasses__", "O", type));
  if (!subs || !PyList_Check(subs.get())) {
    PyErr_Clear();
    return;
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(subs.get()); ++i) {
    PyObject* sub = PyList_GET_ITEM(subs.get(), i);
    if (PyType_Check(sub)) {
      PatchCall(reinterpret_cast<PyTypeObject*>(sub), from, to, depth + 1);
    }
  }
}

}  // namespace

AuditHook& AuditHook::Instance() {
  static AuditHook* hook = new AuditHook();
  return *hook;
}

absl::Status AuditHook::Install() {
  if (installed_) return absl::OkStatus();
  if (Py_IsInitialized()) {
    return absl::FailedPreconditionError(
        "AuditHook::Install: the interpreter is already initialised; the "
        "hook must be installed before Py_InitializeFromConfig");
  }
  if (PySys_AddAuditHook(&AuditHook::Callback, this) != 0) {
    return absl::InternalError("PySys_AddAuditHook failed");
  }
  installed_ = true;
  return absl::OkStatus();
}

absl::Status AuditHook::VerifyActive() {
  if (!installed_) {
    return absl::FailedPreconditionError("audit hook: not installed");
  }
  std::random_device rd;
  probe_nonce_ = (uint64_t{rd()} << 32 | rd()) | 1;
  probe_seen_ = false;
  int rc = PySys_Audit(kProbeEvent, "(K)",
                       static_cast<unsigned long long>(probe_nonce_));
  probe_nonce_ = 0;
  if (rc != 0) return StatusFromPyErr("audit hook: PySys_Audit");
  if (!probe_seen_) {
    return absl::InternalError(
        "audit hook: installed but did not receive the self-test event");
  }
  return absl::OkStatus();
}

void AuditHook::Start(EventSink* sink, PathContext ctx, AuditLimits limits) {
  sink_ = sink;
  ctx_ = std::move(ctx);
  limits_ = limits;
  recording_ = false;
  offset_.reset();
  native_events_ = 0;
  maps_.Invalidate();
  object_names_.clear();
  if (Py_IsInitialized() && PyGILState_Check()) InterposeCtypesCalls();
}

void AuditHook::Stop() {
  recording_ = false;
  sink_ = nullptr;
  offset_.reset();
}

int AuditHook::Callback(const char* event, PyObject* args, void* user_data) {
  auto* self = static_cast<AuditHook*>(user_data);
  self->events_seen_.fetch_add(1, std::memory_order_relaxed);
  if (self->probe_nonce_ != 0 && strcmp(event, kProbeEvent) == 0) {
    PyObject* nonce = AuditArg(args, 0);
    if (nonce != nullptr && PyLong_Check(nonce) &&
        PyLong_AsUnsignedLongLongMask(nonce) == self->probe_nonce_) {
      self->probe_seen_ = true;
    }
    PyErr_Clear();
    return 0;
  }
  if (!self->recording_ || self->sink_ == nullptr) return 0;
  self->Record(event, args, nullptr);
  return 0;
}

void AuditHook::Record(const char* event, PyObject* args, const char* via) {
  static thread_local bool in_hook = false;
  if (in_hook) return;
  in_hook = true;
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  if (g_cfuncptr_call == nullptr) InterposeCtypesCalls();
  proto::Event e = NormalizeAuditEvent(event, args, ctx_, limits_);
  if (offset_.has_value()) e.set_pickle_offset(*offset_);
  if (via != nullptr) {
    proto::Argument* arg = e.add_args();
    arg->set_key("via");
    arg->set_value(via);
    EmitNative(event, args, e);
  } else if (limits_.native.enabled &&
             NativeKindOf(event) != NativeKind::kNone) {
    sink_->Emit(e);
    EmitNative(event, args, e);
  } else {
    sink_->Emit(std::move(e));
  }
  if (PyErr_Occurred()) PyErr_Clear();
  PyErr_Restore(type, value, tb);
  in_hook = false;
}

bool AuditHook::InterposeCtypesCalls() {
  if (g_cfuncptr_call != nullptr) return true;
  // Interned once for the life of the process (one interpreter).
  static PyObject* name = PyUnicode_InternFromString("_ctypes");
  // The interpreter's module dict (not sys.modules): no payload code runs.
  PyRef module(name != nullptr ? PyImport_GetModule(name) : nullptr);
  if (!module || !PyModule_Check(module.get())) {
    PyErr_Clear();
    return false;
  }
  // The module dict, not getattr: no module __getattr__ runs.
  PyObject* dict = PyModule_GetDict(module.get());  // borrowed
  PyObject* cls =
      dict != nullptr ? PyDict_GetItemString(dict, "CFuncPtr") : nullptr;
  if (cls == nullptr || !PyType_Check(cls)) {
    PyErr_Clear();
    return false;
  }
  auto* type = reinterpret_cast<PyTypeObject*>(cls);
  // The built-in (static) type only: a look-alike put in its place is not
  // what CDLL and CFUNCTYPE build on.
  if ((type->tp_flags & Py_TPFLAGS_HEAPTYPE) != 0 ||
      strcmp(type->tp_name, "_ctypes.CFuncPtr") != 0 ||
      type->tp_call == nullptr) {
    return false;
  }
  if (type->tp_call == &AuditHook::ForeignCall) return true;
  // Subclasses created later take tp_call from the "__call__" slot wrapper
  // in CFuncPtr's dict (typeobject.c update_one_slot uses its d_wrapped), so
  // that wrapper must forward to the interposer too; explicit
  // CFuncPtr.__call__(f) calls then go through it as well.
  PyObject* descr = PyDict_GetItemString(type->tp_dict, "__call__");
  if (descr == nullptr || !Py_IS_TYPE(descr, &PyWrapperDescr_Type)) {
    PyErr_Clear();
    return false;
  }
  auto* wrapper = reinterpret_cast<PyWrapperDescrObject*>(descr);
  if (wrapper->d_wrapped != reinterpret_cast<void*>(type->tp_call)) {
    return false;
  }
  g_cfuncptr_call = type->tp_call;
  g_cfuncptr_type = type;
  Py_INCREF(descr);  // kept for CtypesInterposerIntact, like the type
  g_cfuncptr_wrapper = wrapper;
  wrapper->d_wrapped = reinterpret_cast<void*>(&AuditHook::ForeignCall);
  PatchCall(type, g_cfuncptr_call, &AuditHook::ForeignCall, 0);
  return true;
}

bool AuditHook::ctypes_interposed() const { return g_cfuncptr_call != nullptr; }

bool AuditHook::CtypesInterposerIntact() const {
  if (g_cfuncptr_call == nullptr) return true;
  return g_cfuncptr_type->tp_call == &AuditHook::ForeignCall &&
         g_cfuncptr_wrapper->d_wrapped ==
             reinterpret_cast<void*>(&AuditHook::ForeignCall);
}

PyObject* AuditHook::ForeignCall(PyObject* self, PyObject* args,
                                 PyObject* kwargs) {
  AuditHook& hook = Instance();
  if (hook.recording_ && hook.sink_ != nullptr && hook.limits_.native.enabled) {
    // The function pointer is the object's buffer (public buffer protocol;
    // CFuncPtr defines no Python-level buffer hooks in 3.11).
    PyRef pointer;
    Py_buffer view;
    if (PyObject_GetBuffer(self, &view, PyBUF_SIMPLE) == 0) {
      if (view.buf != nullptr &&
          view.len >= static_cast<Py_ssize_t>(sizeof(void*))) {
        void* fn = nullptr;
        memcpy(&fn, view.buf, sizeof(fn));
        pointer = PyRef(PyLong_FromVoidPtr(fn));
      }
      PyBuffer_Release(&view);
    }
    PyErr_Clear();
    PyRef tuple(Py_BuildValue("(OO)", pointer ? pointer.get() : Py_None,
                              args != nullptr ? args : Py_None));
    if (tuple) {
      hook.Record("ctypes.call_function", tuple.get(), "CFuncPtr.__call__");
    }
    PyErr_Clear();
  }
  return g_cfuncptr_call(self, args, kwargs);
}

void AuditHook::EmitNative(const char* event, PyObject* args,
                           const proto::Event& audit) {
  const NativeLimits& limits = limits_.native;
  const NativeKind kind = NativeKindOf(event);
  if (!limits.enabled || kind == NativeKind::kNone) return;
  if (native_events_ > limits.max_events) return;
  if (native_events_++ == limits.max_events) {
    proto::Event marker;
    marker.set_kind(proto::Event::NATIVE);
    marker.set_name("dynahug.native_budget_exhausted");
    proto::Argument* arg = marker.add_args();
    arg->set_key("max_events");
    arg->set_value(absl::StrCat(limits.max_events));
    if (audit.has_pickle_offset()) {
      marker.set_pickle_offset(audit.pickle_offset());
    }
    sink_->Emit(std::move(marker));
    return;
  }
  proto::Event e = audit;
  e.set_kind(proto::Event::NATIVE);
  NativeArgs out(&e, limits);
  if (kind == NativeKind::kCall || kind == NativeKind::kMemory) {
    PyObject* addr = AuditArg(args, 0);
    if (addr != nullptr && PyLong_Check(addr)) {
      uint64_t v = PyLong_AsUnsignedLongLongMask(addr);
      if (PyErr_Occurred()) {
        PyErr_Clear();
      } else {
        if (DescribeTarget(v, kind == NativeKind::kCall, limits, ctx_, maps_,
                           out)) {
          maps_.Invalidate();
        }
      }
    } else if (kind == NativeKind::kCall) {
      maps_.Invalidate();  // a call to code we could not locate
    }
  } else {
    maps_.Invalidate();  // dlopen, dlsym, mmap: new mappings may follow
  }
  for (proto::Frame& f : EventStack(limits, ctx_, object_names_)) {
    *e.add_stack() = std::move(f);
  }
  sink_->Emit(std::move(e));
}

}  // namespace dynahug::hooks

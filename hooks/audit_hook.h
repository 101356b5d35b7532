// PEP 578 audit hook that turns audit events raised during the load phase
// into proto::Event{kind=AUDIT} with normalised, bounded arguments
// (hooks/audit_args.h; paths: hooks/path_classifier.h).
//
// ctypes and mmap audit events additionally produce a
// proto::Event{kind=NATIVE} right after their AUDIT event, with the native
// stack and, for calls into memory that is not read-only code of a file, a
// disassembly of the target (see hooks/native_inspector.h for the arguments).
//
// Audit hooks observe, they do not confine (PEP 578): the sandbox is the
// boundary.
#ifndef DYNAHUG_HOOKS_AUDIT_HOOK_H_
#define DYNAHUG_HOOKS_AUDIT_HOOK_H_

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "hooks/audit_args.h"
#include "hooks/event_sink.h"
#include "hooks/native_inspector.h"
#include "hooks/path_classifier.h"
#include "proto/dynahug.pb.h"

namespace dynahug::hooks {

// The process-wide hook. CPython keeps audit hooks for the life of the
// process, so this is a singleton: Install() it once before
// Py_InitializeFromConfig, then Start()/Stop() around each load.
class AuditHook {
 public:
  static AuditHook& Instance();

  // Registers the C hook with PySys_AddAuditHook. Call before the
  // interpreter is initialised; idempotent.
  absl::Status Install();
  bool installed() const { return installed_; }

  // Raises a private audit event with a fresh nonce and checks that the hook
  // received it. Requires an initialised interpreter and the GIL.
  absl::Status VerifyActive();

  // Makes calls of ctypes foreign functions observable. CPython 3.11 raises
  // "ctypes.call_function" only from _ctypes.call_function(), not when a
  // foreign-function object (_ctypes.CFuncPtr and its subclasses: CDLL
  // attributes, CFUNCTYPE(...)(address)) is called, so this interposes
  // CFuncPtr's tp_call. While recording, each such call first produces a
  // NATIVE "ctypes.call_function" event (arguments as for the audit event
  // plus via=CFuncPtr.__call__; no AUDIT event, since CPython raised none);
  // otherwise the interposer only forwards. Never imports _ctypes: returns
  // false when it is not loaded (or its CFuncPtr is not the built-in type).
  // Called by Start() and at each recorded audit event until it succeeds, so
  // callers rarely need it. Requires the GIL. Process-wide, permanent.
  bool InterposeCtypesCalls();
  bool ctypes_interposed() const;
  // False when the interposition was made and CFuncPtr's call slot or its
  // "__call__" wrapper no longer points at the interposer (something undid
  // it, e.g. through ctypes writes). True when never interposed.
  bool CtypesInterposerIntact() const;

  // NATIVE events emitted since Start() (the budget marker included).
  uint64_t native_events() const { return native_events_; }

  // Audit events seen since Install(), recording or not.
  uint64_t events_seen() const { return events_seen_.load(); }

  // Sets where events go and how paths are classified; recording itself is
  // switched by SetRecording (the loader turns it on only around the real
  // library call). `sink` must stay valid until Stop().
  void Start(EventSink* sink, PathContext ctx, AuditLimits limits = {});
  void Stop();
  // Not reachable from Python: only C++ (the loader) switches recording.
  void SetRecording(bool on) {
    recording_ = on && sink_ != nullptr;
    ++toggles_;
  }
  // Number of SetRecording calls so far.
  uint64_t recording_toggles() const { return toggles_; }
  bool recording() const { return recording_; }

  // Offset of the pickle opcode currently executing (set by the loader), or
  // nullopt; stamped onto recorded events.
  void SetPickleOffset(std::optional<uint64_t> offset) { offset_ = offset; }

 private:
  AuditHook() = default;
  static int Callback(const char* event, PyObject* args, void* user_data);
  // Records one event while recording: the AUDIT event for `event`/`args`
  // (unless `via` is set: then only the NATIVE event, with that argument)
  // and its NATIVE event when it has one. Requires the GIL; keeps any
  // pending exception.
  void Record(const char* event, PyObject* args, const char* via);
  // Emits the NATIVE event accompanying `audit` (for the native audit events
  // only), within the per-load budget.
  void EmitNative(const char* event, PyObject* args, const proto::Event& audit);
  // CFuncPtr's interposed tp_call.
  static PyObject* ForeignCall(PyObject* self, PyObject* args,
                               PyObject* kwargs);

  bool installed_ = false;
  std::atomic<uint64_t> events_seen_{0};
  uint64_t probe_nonce_ = 0;
  bool probe_seen_ = false;
  bool recording_ = false;
  uint64_t toggles_ = 0;
  EventSink* sink_ = nullptr;
  PathContext ctx_;
  AuditLimits limits_;
  std::optional<uint64_t> offset_;
  uint64_t native_events_ = 0;
  // Reset by Start(); invalidated whenever a recorded native event may have
  // changed the mappings (see EmitNative).
  MapsCache maps_;
  // Shared object path -> its name in frames (NativeObjectName); reset by
  // Start() since it depends on the PathContext.
  absl::flat_hash_map<std::string, std::string> object_names_;
};

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_AUDIT_HOOK_H_

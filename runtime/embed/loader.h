// Loader drivers: load one model file for real, with the real library
// loader, inside the embedded interpreter, and report what the load did as
// proto::Event messages through a hooks::EventSink.
//
//   torch.load(path, map_location="cpu", pickle_module=<instrumented>)
//   joblib.load(path)              (joblib's NumpyUnpickler instrumented)
//   numpy.load(path, allow_pickle=True)  (npz members are all read)
//   pickle.load(f)                 (instrumented Unpickler)
//
// Events of one load, in order: GLOBAL / PICKLE_CALL / OPCODE events and
// AUDIT events as they happen (interleaved), then PYTHON_CALL events from
// the call profiler, then INTEGRITY findings. The loaded value's digest
// (LoadResult::loaded_digest) is computed between the two, outside the
// recording window. All go through an
// hooks::EventRecorder (sequence numbers, timestamps, folding, limits).
//
// Tamper checks. The loaded code can reach the loader's Python half (any of
// its functions' __globals__), so the recording switch lives in C++ only and
// every hook is checked from C++ after the library call against the state
// captured before it. Each change is an INTEGRITY event emitted by C++
// (the loaded code cannot suppress it short of killing the process):
//   loader.hook.disabled {hook}   hook = "audit.recording" (recording found
//       off), "audit.hook" (the audit hook no longer receives events),
//       "ctypes.interposer" (CFuncPtr's call slot restored), "profiler"
//       (sys.setprofile / PyEval_SetProfile replaced it on the loading
//       thread), "threading.setprofile", "threading.settrace",
//       "sys.settrace" (a trace function was installed or removed on the
//       loading thread)
//   loader.hook.replaced {hook, type}  an unpickler's find_class,
//       persistent_load or class was rebound (hooks/unpickler_hooks.h)
//   loader.bridge.foreign_call {calls, first}  the bridge was called by code
//       that is not the loader's (hooks/unpickler_hooks.h)
//   loader.tampered {what, change}  the loader's sealed namespace changed:
//       a global, a function's code/defaults/closure, a class attribute or
//       base, an entry of an unpickler dispatch table, the pure-Python or
//       joblib unpickler classes it builds on. change = "rebound",
//       "removed" or "resized" (entries added or removed).
//
// SAFETY: this executes the file's pickle code. Outside tests on benign
// files it must only ever run inside the sandboxed child.
//
// Threading: the interpreter's thread only, one Load at a time.
#ifndef DYNAHUG_RUNTIME_EMBED_LOADER_H_
#define DYNAHUG_RUNTIME_EMBED_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "hooks/audit_hook.h"
#include "hooks/base/py_ref.h"
#include "hooks/call_profiler.h"
#include "hooks/event_sink.h"
#include "hooks/integrity_diff.h"
#include "runtime/embed/interpreter.h"
#include "runtime/embed/loader_table.h"

namespace dynahug::runtime {

struct LoadOptions {
  // "auto" (DefaultLoaderFor(format)), or the name of a loader of the table
  // (loader_table.h; e.g. "torch.load" for a raw pickle named .bin, which
  // torch falls back to legacy-loading).
  std::string loader = "auto";
  // Sniffed format name; used when loader == "auto".
  std::string format;
  // Analyst mode: an OPCODE event before every opcode (implies
  // record_calls).
  bool opcodes = false;
  // true: CPython's pure-Python reference unpickler with its dispatch
  // wrapped: GLOBAL (with offsets), PICKLE_CALL for every REDUCE, NEWOBJ,
  // NEWOBJ_EX, OBJ, INST, BUILD and persistent id. About 7-9x slower per
  // opcode than the C unpickler (1-2 us/opcode).
  // false: the C unpickler (_pickle) with find_class and persistent_load
  // recorded (no offsets, no call events; the audit hook and the profiler
  // still see the calls). joblib always uses its own pure-Python unpickler
  // and is instrumented fully either way.
  bool record_calls = true;
  // torch storages larger than this (zip and legacy non-zip files) are
  // created on the meta device instead of being allocated and read (-1:
  // always read); a legacy file's skipped storage bytes are checked as
  // torch would (count, length), not read (hooks/unpickler.py). Type and
  // structure of the loaded object are unchanged; tensor values are not
  // materialised. 1 MiB: no payload lives in storage bytes, so reading them
  // only costs (a 9 MB state dict: ~25 ms of the child's ~40 ms of CPU,
  // bench/python_load_bench.py); smaller storages are still read, so the
  // value digest (BenignCorpusTest) still compares real tensor bytes. A
  // pickle that decodes code out of a lazy storage fails in the sandbox: an
  // inconclusive verdict, never a clean one.
  int64_t lazy_storage_bytes = int64_t{1} << 20;
  bool profile_calls = true;
  bool integrity_diff = true;
  // Digest of the loaded value (LoadResult::loaded_digest), computed after
  // the recording window (audit recording off, profiler stopped, so the
  // trace's events are those of the load alone) and before the tamper
  // checks and the integrity diff, which therefore also cover any code the
  // digest runs.
  bool value_digest = true;
  // Paths used to classify audit-event arguments (model_path is filled in
  // from the path passed to Load when empty).
  hooks::PathContext paths;
  hooks::AuditLimits audit_limits;
  hooks::RecorderLimits recorder_limits;
  hooks::ProfilerLimits profiler_limits;
  hooks::IntegrityOptions integrity;
  // When set, the integrity diff compares against this snapshot instead of
  // taking one per load. The zygote takes it once (after Preimport,
  // Loader::Create and any warm-up loads) and children only read it:
  // a per-child snapshot copies module dicts and increments the reference
  // count of every module attribute, which copy-on-write faults thousands of
  // pages in the child. Not owned; must outlive the Load call.
  const hooks::IntegritySnapshot* integrity_baseline = nullptr;
};

// What a process that loaded files still runs before it exits, counted
// before the loads (Loader::CaptureDeferred) so that RunShutdown can tell
// what the loads added.
struct DeferredWork {
  int atexit_callbacks = 0;  // atexit._ncallbacks()
  int threads = 0;           // Python thread states of the interpreter
};

struct ShutdownOptions {
  // Longest time given to threads and armed interval timers (alarm,
  // setitimer) to finish or fire, milliseconds. Only spent while one is
  // still pending; 0 skips the wait (atexit handlers still run).
  double grace_ms = 300;
  bool profile_calls = true;
  hooks::PathContext paths;
  hooks::AuditLimits audit_limits;
  hooks::RecorderLimits recorder_limits;
  hooks::ProfilerLimits profiler_limits;
};

struct ShutdownResult {
  // Something was pending: the shutdown phase ran (and was recorded).
  bool ran = false;
  int atexit_added = 0;    // handlers the loads registered
  int threads_added = 0;   // threads alive after the loads
  int timers_armed = 0;    // armed timers with a Python signal handler
  int threads_left = 0;    // threads still alive when the grace ended
  double shutdown_ms = 0;  // wall time of the phase
};

struct LoadResult {
  // The loader that ran ("torch.load", ...).
  std::string loader;
  // True when the loader returned an object.
  bool loaded = false;
  // Qualified type name of the loaded object ("collections.OrderedDict").
  std::string loaded_type;
  // The loaded object is an inert stub of a class from a missing module.
  bool loaded_type_is_stub = false;
  // value_digest(loaded object) (runtime/embed/value_digest.py):
  // "sha256:<hex> nodes=N bytes=B[ truncated]", with the torch loader's
  // lazy_storage_bytes as threshold (-1 for the other loaders). Empty when
  // nothing loaded or LoadOptions::value_digest is off; "error: <type>"
  // when the digest raised.
  std::string loaded_digest;
  // When !loaded: exception type ("builtins.RuntimeError") and message.
  std::string error_type;
  std::string error_message;
  // Wall time of the library call plus hooks, milliseconds.
  double load_ms = 0;
  // Events dropped by the recorder limits.
  uint64_t dropped_events = 0;
};

class Loader {
 public:
  // Compiles the embedded loader code into a private namespace and imports
  // what it needs. Requires a live interpreter.
  static absl::StatusOr<Loader> Create(const Interpreter& interpreter);

  Loader(Loader&&) noexcept;
  Loader& operator=(Loader&&) noexcept;
  ~Loader();

  // Loads `path`. A file that fails to load is a result (loaded == false),
  // not an error; errors are for bad options or a broken loader. Events go
  // to `sink` (flushed before returning).
  absl::StatusOr<LoadResult> Load(const std::string& path,
                                  const LoadOptions& options,
                                  hooks::EventSink& sink);

  // Counts the deferred work that exists now (call before the loads).
  DeferredWork CaptureDeferred() const;

  // The interpreter's normal shutdown, bounded, for the work the loads left
  // behind (compared with `before`): atexit handlers the loads registered,
  // threads they started (daemon or not, threading.Timer), interval timers
  // armed (signal.alarm, signal.setitimer) whose signal has a Python
  // handler. When none is pending it returns at once (ran == false), emits
  // nothing and makes no system call (the trace's syscall counts are
  // features). Otherwise, with the
  // audit hook recording and the call profiler running as in Load:
  //   1. LOG "shutdown.begin" {atexit, threads, timers} (what is pending);
  //   2. armed timers that would fire after the grace period are brought
  //      forward to fire now (a long-lived victim process would see them);
  //   3. up to grace_ms, while a thread is alive or a timer armed: the GIL
  //      is released in short sleeps and Python signal handlers run;
  //   4. atexit._run_exitfuncs(): every registered handler, last registered
  //      first, as at interpreter exit (those of the libraries imported
  //      before the loads too);
  //   5. PYTHON_CALL edges of the phase, "profiler.yielded" events, then
  //      LOG "shutdown.end" {threads_left, ms}.
  // Events between shutdown.begin and shutdown.end belong to the shutdown
  // phase; those before, to the loads. Threads still running after it are
  // left to die with the process (as daemon threads do at exit). Errors are
  // for a broken interpreter only.
  //
  // SAFETY: runs the loaded code's deferred work: sandboxed child only (or
  // tests on benign inputs).
  absl::StatusOr<ShutdownResult> RunShutdown(const DeferredWork& before,
                                             const ShutdownOptions& options,
                                             hooks::EventSink& sink);

 private:
  class Seal;
  Loader();
  // digest(value, lazy_threshold) of loader.py as a str ("error: <type>" when it
  // raised); any pending Python error is kept.
  hooks::PyRef Digest(PyObject* value, int64_t lazy_threshold);
  hooks::PyRef module_;   // the loader namespace
  hooks::PyRef prepare_;  // its prepare() and result() functions
  hooks::PyRef result_;
  hooks::PyRef digest_;  // value_digest()
  hooks::PyRef bridge_;
  std::string pickle_file_;     // pickle.py, whose unpickler is transparent
  // atexit._ncallbacks, atexit._run_exitfuncs and _signal.getsignal as
  // they were at Create (before any loaded code could rebind them).
  hooks::PyRef atexit_count_;
  hooks::PyRef atexit_run_;
  hooks::PyRef signal_getsignal_;  // _signal.getsignal
  std::unique_ptr<Seal> seal_;  // identity snapshot of the namespace
};

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_EMBED_LOADER_H_

// Post-load integrity diff: a cheap snapshot of interpreter state taken
// before the load, compared after it. Findings become INTEGRITY events:
//
//   sys.modules.added / .replaced / .removed    {module, origin}
//   module.attr.rebound / .removed / .added     {module, attr, old, new}
//     (watched modules only; "added" skips submodules bound by import and
//      new dunder names such as __warningregistry__)
//   sys.gettrace / sys.getprofile changed, a C-level trace/profile function
//     installed on this thread            {before, after}
//   sys.meta_path / sys.path_hooks / sys.path changed  {before, after}
//   threads.started                       {before, after}
//   atexit.registered                     {before, after}
//   gc.callbacks.changed                  {before, after}
//
// The snapshot keeps shallow copies (dicts and lists of references, no deep
// copies): cost is O(number of attributes of the watched modules). CPython
// 3.11 offers no way to count audit hooks; "sys.addaudithook" is recorded
// by the audit hook instead.
//
// Requires the GIL for every call, including destruction.
#ifndef DYNAHUG_HOOKS_INTEGRITY_DIFF_H_
#define DYNAHUG_HOOKS_INTEGRITY_DIFF_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hooks/base/py_ref.h"
#include "hooks/event_sink.h"

namespace dynahug::hooks {

struct IntegrityOptions {
  // Modules whose attributes are compared; those not imported at snapshot
  // time are skipped.
  std::vector<std::string> watched_modules = {"builtins",
                                              "sys",
                                              "os",
                                              "posix",
                                              "io",
                                              "_io",
                                              "subprocess",
                                              "socket",
                                              "pickle",
                                              "_pickle",
                                              "copyreg",
                                              "marshal",
                                              "importlib",
                                              "types",
                                              "functools",
                                              "operator",
                                              "threading",
                                              "atexit",
                                              "gc",
                                              "ctypes",
                                              "torch",
                                              "torch.nn.functional",
                                              "torch.serialization",
                                              "torch._utils",
                                              "torch.nn.modules.module",
                                              "numpy",
                                              "numpy.lib.format",
                                              "numpy.lib.npyio",
                                              "joblib",
                                              "joblib.numpy_pickle",
                                              "sklearn"};
  // Findings emitted at most; the rest are counted in one
  // "integrity.truncated" event.
  size_t max_findings = 256;
};

class IntegritySnapshot {
 public:
  static absl::StatusOr<IntegritySnapshot> Take(
      const IntegrityOptions& options = {});

  IntegritySnapshot(IntegritySnapshot&&) = default;
  IntegritySnapshot& operator=(IntegritySnapshot&&) = default;

  // Compares the current state to the snapshot and emits one INTEGRITY
  // event per finding (bounded). Returns the number of findings, including
  // those not emitted.
  absl::StatusOr<size_t> DiffAndEmit(EventSink& sink) const;

 private:
  IntegritySnapshot() = default;
  struct Watched {
    std::string name;
    PyRef module;
    PyRef dict;  // shallow copy of module.__dict__
  };
  IntegrityOptions options_;
  PyRef modules_;  // shallow copy of sys.modules
  std::vector<Watched> watched_;
  PyRef meta_path_, path_hooks_, path_;  // list copies
  PyRef trace_, profile_;                // sys.gettrace/getprofile
  void* c_trace_ = nullptr;
  void* c_profile_ = nullptr;
  long threads_ = 0;
  long atexit_ = 0;
  long gc_callbacks_ = 0;
};

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_INTEGRITY_DIFF_H_

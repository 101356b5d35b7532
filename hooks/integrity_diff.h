// Post-load integrity diff: a cheap snapshot of interpreter state taken
// before the load, compared after it. Findings become INTEGRITY events:
//
//   sys.modules.added / .replaced / .removed    {module, origin}
//   module.attr.rebound / .removed / .added     {module, attr, old, new}
//     (watched modules only; "added" skips submodules bound by import and
//      new dunder names such as __warningregistry__)
//   class.attr.rebound / .removed / .added      {class, attr, old, new}
//   class.attr.wrapped                          {class, attr, old, new}
//     (a rebinding to a function of a library module, by its __globals__,
//      whose __wrapped__ is the old
//      value: a library decorating its own method, e.g. the profiling hook
//      torch.optim.Optimizer puts on its subclass's step)
//   class.bases.changed                         {class, before, after}
//     (classes of library packages: heap types defined in a module of a
//      library package and bound as an attribute of one, with the library
//      classes of their MROs; "added" skips __slotnames__, the cache
//      copyreg._slotnames adds whenever an instance is pickled or copied)
//   function.attr.rebound                       {function, attr, old, new}
//     attr = __code__, __defaults__, __kwdefaults__, __closure__ or
//     __closure__[i] (a cell's contents): functions of library packages
//     bound in those modules or classes (plain functions, staticmethod /
//     classmethod functions, property accessors). Only what was imported
//     at Take() is watched: a library module first imported during the load
//     (e.g. sklearn.linear_model, which the zygote does not import) has no
//     baseline, and changes to its classes are not seen.
//   sys.gettrace / sys.getprofile changed, a C-level trace/profile function
//     installed on this thread            {before, after}
//   sys.meta_path / sys.path_hooks / sys.path changed  {before, after}
//   threads.started                       {before, after}
//   atexit.registered                     {before, after}
//   gc.callbacks.changed                  {before, after}
//
// The snapshot keeps shallow copies (dicts and lists of references, no deep
// copies): cost is O(number of attributes of the watched modules). Library
// classes and functions are many (torch, numpy, sklearn, pandas, scipy:
// ~2,700 classes, ~23,000 functions), so the diff reads them through a flat
// array built by Take(): one dict version tag (CPython 3.11's
// PyDictObject::ma_version_tag, bumped by every change of the dict) per
// class and four pointers per function. Only a class whose tag moved has its
// dict compared with the copy kept by Take(). Take() is meant to run once in
// the zygote; DiffAndEmit() only reads and is cheap in forked children (see
// bench/README.md for the measured cost). CPython 3.11 offers no way to
// count audit hooks; "sys.addaudithook" is recorded by the audit hook
// instead.
//
// Requires the GIL for every call, including destruction.
#ifndef DYNAHUG_HOOKS_INTEGRITY_DIFF_H_
#define DYNAHUG_HOOKS_INTEGRITY_DIFF_H_

#include <cstdint>
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
  // Top-level packages whose classes and functions are watched (those not
  // imported at snapshot time are skipped). The zygote passes its
  // preimport allowlist (runtime/trace/trace_runner.h).
  std::vector<std::string> library_packages = {
      "numpy", "torch", "joblib", "sklearn", "pandas", "scipy", "xgboost"};
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

  // Library classes and functions watched (for tests and benchmarks).
  size_t library_classes() const { return classes_.size(); }
  size_t library_functions() const { return functions_.size(); }

 private:
  IntegritySnapshot() = default;
  struct Watched {
    std::string name;
    PyRef module;
    PyRef dict;  // shallow copy of module.__dict__
  };
  // A library class: its dict's version tag, bases and MRO at Take(), and a
  // shallow copy of its dict for naming what changed. Every reference is
  // kept, so that nothing watched is freed (or its address reused) before
  // the diff.
  struct WatchedClass {
    PyRef type;
    uint64_t version;
    PyRef bases;
    PyRef mro;
    PyRef dict;  // shallow copy of type.__dict__
  };
  // A library function and its mutable slots at Take().
  struct WatchedFunction {
    PyRef function;
    PyRef code;
    PyRef defaults;
    PyRef kwdefaults;
    PyRef closure;
  };
  // A closure cell of a watched function and its contents at Take().
  struct WatchedCell {
    PyObject* cell;      // kept alive by its function's closure
    PyObject* function;  // kept alive by functions_
    PyRef contents;
    uint32_t index;  // position in the closure
  };
  class Emitter;
  void WatchLibraries();
  void SortByAddress();
  void EmitLibraryChanges(Emitter& out) const;

  IntegrityOptions options_;
  std::vector<WatchedClass> classes_;
  std::vector<WatchedFunction> functions_;
  std::vector<WatchedCell> cells_;
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

#include "runtime/loader.h"

#include <chrono>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "hooks/unpickler_hooks.h"

namespace dynahug::runtime {
namespace internal {
extern const std::string_view kLoaderSource;
}  // namespace internal
namespace {

constexpr char kLoaderFilename[] = "<dynahug-loader>";

std::string Utf8(PyObject* obj) {
  if (obj == nullptr || !PyUnicode_Check(obj)) return "";
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(obj, &n);
  if (s == nullptr) {
    PyErr_Clear();
    return "";
  }
  return std::string(s, static_cast<size_t>(n));
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

}  // namespace

absl::StatusOr<std::string> DefaultLoaderFor(std::string_view format) {
  static const auto* table =
      new absl::flat_hash_map<std::string_view, std::string_view>{
          {"torch-zip", "torch.load"},
          {"torch-legacy", "torch.load"},
          {"torch-legacy-tar", "torch.load"},
          {"torchscript-zip", "torch.load"},
          {"joblib", "joblib.load"},
          {"gzip", "joblib.load"},
          {"zlib", "joblib.load"},
          {"bzip2", "joblib.load"},
          {"xz", "joblib.load"},
          {"lzma", "joblib.load"},
          {"npy", "numpy.load"},
          {"npz", "numpy.load"},
          {"raw-pickle", "pickle.load"},
      };
  auto it = table->find(format);
  if (it == table->end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no loader for format \"", std::string(format), "\""));
  }
  return std::string(it->second);
}

absl::StatusOr<Loader> Loader::Create(const Interpreter& interpreter) {
  if (!interpreter.active() || !Py_IsInitialized()) {
    return absl::FailedPreconditionError("Loader::Create: no interpreter");
  }
  Loader loader;
  absl::StatusOr<PyRef> bridge = hooks::CreateUnpicklerBridge();
  if (!bridge.ok()) return bridge.status();
  loader.bridge_ = std::move(*bridge);
  std::string source(internal::kLoaderSource);
  PyRef code(Py_CompileString(source.c_str(), kLoaderFilename, Py_file_input));
  if (!code) return StatusFromPyErr("Loader::Create: compile loader");
  loader.module_ = PyRef(PyModule_New("dynahug_loader"));
  if (!loader.module_) return StatusFromPyErr("Loader::Create: module");
  PyObject* globals = PyModule_GetDict(loader.module_.get());  // borrowed
  if (PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) !=
          0 ||
      PyDict_SetItemString(globals, "_dh", loader.bridge_.get()) != 0) {
    return StatusFromPyErr("Loader::Create: globals");
  }
  PyRef result(PyEval_EvalCode(code.get(), globals, globals));
  if (!result) return StatusFromPyErr("Loader::Create: run loader code");
  // The pure-Python unpickler's own frames are transparent to the profiler.
  PyRef pickle(PyImport_ImportModule("pickle"));
  if (!pickle) return StatusFromPyErr("Loader::Create: import pickle");
  PyRef file(PyObject_GetAttrString(pickle.get(), "__file__"));
  if (!file) return StatusFromPyErr("Loader::Create: pickle.__file__");
  loader.pickle_file_ = Utf8(file.get());
  loader.run_ = PyRef::Borrow(PyDict_GetItemString(globals, "run"));
  if (!loader.run_) {
    return absl::InternalError("Loader::Create: loader code defines no run()");
  }
  return loader;
}

absl::StatusOr<LoadResult> Loader::Load(const std::string& path,
                                        const LoadOptions& options,
                                        hooks::EventSink& sink) {
  if (!run_) return absl::FailedPreconditionError("Loader::Load: moved-from");
  LoadResult out;
  if (options.loader == "auto") {
    absl::StatusOr<std::string> loader = DefaultLoaderFor(options.format);
    if (!loader.ok()) return loader.status();
    out.loader = *loader;
  } else {
    static constexpr std::string_view kKnown[] = {"torch.load", "joblib.load",
                                                  "numpy.load", "pickle.load"};
    bool known = false;
    for (std::string_view k : kKnown) known |= options.loader == k;
    if (!known) {
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
    member = Utf8(name.get());
  }
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
  PyRef result;
  const uint64_t toggles_before =
      hooks::AuditHook::Instance().recording_toggles();
  {
    LoadPhase phase(&recorder, std::move(paths), options.audit_limits);
    if (options.profile_calls) {
      if (absl::Status s = profiler.Start(); !s.ok()) return s;
    }
    result = PyRef(PyObject_CallFunction(
        run_.get(), "ssiLis", path.c_str(), out.loader.c_str(),
        options.opcodes ? 1 : 0,
        static_cast<long long>(options.lazy_storage_bytes),
        options.record_calls ? 0 : 1, member.c_str()));
    if (options.profile_calls) profiler.Stop();
  }
  if (!result) return StatusFromPyErr("Loader::Load: loader driver");
  if (!PyTuple_Check(result.get()) || PyTuple_GET_SIZE(result.get()) != 5) {
    return absl::InternalError("Loader::Load: malformed driver result");
  }
  out.loaded = PyObject_IsTrue(PyTuple_GET_ITEM(result.get(), 0)) == 1;
  out.loaded_type = Utf8(PyTuple_GET_ITEM(result.get(), 1));
  out.loaded_type_is_stub =
      PyObject_IsTrue(PyTuple_GET_ITEM(result.get(), 2)) == 1;
  out.error_type = Utf8(PyTuple_GET_ITEM(result.get(), 3));
  out.error_message = Utf8(PyTuple_GET_ITEM(result.get(), 4));
  PyErr_Clear();
  result = PyRef();

  const uint64_t toggles =
      hooks::AuditHook::Instance().recording_toggles() - toggles_before;
  if (toggles != 2) {
    proto::Event e;
    e.set_kind(proto::Event::INTEGRITY);
    e.set_name("loader.recording.tampered");
    proto::Argument* a = e.add_args();
    a->set_key("toggles");
    a->set_value(absl::StrCat(toggles));
    recorder.Emit(std::move(e));
  }
  if (options.profile_calls) profiler.EmitTo(recorder);
  const hooks::IntegritySnapshot* baseline =
      snapshot.has_value() ? &*snapshot : options.integrity_baseline;
  if (options.integrity_diff && baseline != nullptr) {
    absl::StatusOr<size_t> findings = baseline->DiffAndEmit(recorder);
    if (!findings.ok()) return findings.status();
  }
  recorder.Flush();
  out.dropped_events = recorder.dropped();
  out.load_ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - start)
                    .count();
  return out;
}

}  // namespace dynahug::runtime

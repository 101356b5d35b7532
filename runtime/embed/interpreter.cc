#include "runtime/embed/interpreter.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>  // PyMemberDef of sys.flags' type

#include <atomic>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hooks/audit_hook.h"
#include "hooks/base/py_ref.h"

namespace dynahug::runtime {
namespace {

using hooks::PyRef;
using hooks::StatusFromPyErr;

std::atomic<bool> g_created{false};

absl::Status StatusFromPyStatus(std::string_view context, PyStatus status) {
  std::string message = absl::StrCat(
      std::string(context), ": ", status.func != nullptr ? status.func : "",
      status.func != nullptr ? ": " : "",
      status.err_msg != nullptr ? status.err_msg : "failed");
  if (PyStatus_IsExit(status)) {
    absl::StrAppend(&message, " (exit code ", status.exitcode, ")");
  }
  return absl::InternalError(message);
}

// Frees the PyConfig on every path out of Create().
class ConfigGuard {
 public:
  explicit ConfigGuard(PyConfig* config) : config_(config) {}
  ~ConfigGuard() { PyConfig_Clear(config_); }
  ConfigGuard(const ConfigGuard&) = delete;
  ConfigGuard& operator=(const ConfigGuard&) = delete;

 private:
  PyConfig* config_;
};

absl::Status SetString(PyConfig* config, wchar_t** field,
                       const std::string& value, std::string_view name) {
  PyStatus status = PyConfig_SetBytesString(config, field, value.c_str());
  if (PyStatus_Exception(status)) {
    return StatusFromPyStatus(absl::StrCat("PyConfig ", std::string(name)),
                              status);
  }
  return absl::OkStatus();
}

absl::Status AppendList(PyWideStringList* list, const std::string& value,
                        std::string_view name) {
  wchar_t* decoded = Py_DecodeLocale(value.c_str(), nullptr);
  if (decoded == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Interpreter::Create: cannot decode ", std::string(name), " ", value));
  }
  PyStatus status = PyWideStringList_Append(list, decoded);
  PyMem_RawFree(decoded);
  if (PyStatus_Exception(status)) {
    return StatusFromPyStatus(absl::StrCat("PyConfig ", std::string(name)),
                              status);
  }
  return absl::OkStatus();
}

// sys.flags fields that read as in a plain `python3` process.
constexpr const char* kPlainZeroFlags[] = {
    "isolated", "ignore_environment", "no_user_site", "no_site", "safe_path"};

// See "Disguise" in the header. Requires the GIL; runs before any untrusted
// code.
absl::Status Disguise() {
  PyRef site(PyImport_ImportModule("site"));  // sys.flags.no_site: no main()
  if (!site) return StatusFromPyErr("Disguise: import site");
  for (const char* fn : {"setquit", "setcopyright", "sethelper"}) {
    PyRef r(PyObject_CallMethod(site.get(), fn, nullptr));
    if (!r) return StatusFromPyErr(absl::StrCat("Disguise: site.", fn));
  }
  PyObject* flags = PySys_GetObject("flags");  // borrowed
  if (flags == nullptr) return absl::InternalError("Disguise: no sys.flags");
  PyTypeObject* type = Py_TYPE(flags);
  PyRef copy(PyStructSequence_New(type));
  if (!copy) return StatusFromPyErr("Disguise: sys.flags copy");
  const Py_ssize_t n = PyTuple_GET_SIZE(flags);
  for (Py_ssize_t i = 0; i < n; ++i) {
    const char* name = type->tp_members[i].name;
    bool zero = false;
    for (const char* z : kPlainZeroFlags) {
      zero |= name != nullptr && strcmp(name, z) == 0;
    }
    PyObject* value = zero ? PyLong_FromLong(0)
                           : Py_NewRef(PyStructSequence_GetItem(flags, i));
    if (value == nullptr) return StatusFromPyErr("Disguise: flag value");
    PyStructSequence_SetItem(copy.get(), i, value);  // steals
  }
  if (PySys_SetObject("flags", copy.get()) != 0) {
    return StatusFromPyErr("Disguise: set sys.flags");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Interpreter> Interpreter::Create(
    const InterpreterOptions& options) {
  if (options.module_search_paths.empty()) {
    return absl::InvalidArgumentError(
        "Interpreter::Create: module_search_paths is empty");
  }
  if (g_created.exchange(true) || Py_IsInitialized()) {
    return absl::FailedPreconditionError(
        "Interpreter::Create: an interpreter was already initialised in this "
        "process");
  }
  // The hook goes in first so that it is in place before any Python code
  // (including the interpreter's own start-up) runs.
  if (absl::Status s = hooks::AuditHook::Instance().Install(); !s.ok()) {
    return s;
  }

  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  ConfigGuard guard(&config);
  config.isolated = 1;
  config.use_environment = 0;
  config.user_site_directory = 0;
  config.site_import = 0;
  config.safe_path = 1;
  config.parse_argv = 0;
  config.install_signal_handlers = 0;
  config.write_bytecode = 0;
  config.pathconfig_warnings = 0;
  config.faulthandler = 0;
  config.tracemalloc = 0;
  config.dev_mode = 0;
  config.inspect = 0;
  config.interactive = 0;
  config.buffered_stdio = 1;
  for (auto [field, value, name] :
       {std::tuple{&config.program_name, &options.program_name, "program_name"},
        std::tuple{&config.executable, &options.program_name, "executable"},
        std::tuple{&config.home, &options.home, "home"}}) {
    if (absl::Status s = SetString(&config, field, *value, name); !s.ok()) {
      return s;
    }
  }
  config.module_search_paths_set = 1;
  for (const std::string& path : options.module_search_paths) {
    wchar_t* decoded = Py_DecodeLocale(path.c_str(), nullptr);
    if (decoded == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("Interpreter::Create: cannot decode path ", path));
    }
    PyStatus status =
        PyWideStringList_Append(&config.module_search_paths, decoded);
    PyMem_RawFree(decoded);
    if (PyStatus_Exception(status)) {
      return StatusFromPyStatus("PyConfig module_search_paths", status);
    }
  }
  if (absl::Status s = AppendList(&config.argv, options.argv0, "argv");
      !s.ok()) {
    return s;
  }
  for (const std::string& arg : options.orig_argv) {
    if (absl::Status s = AppendList(&config.orig_argv, arg, "orig_argv");
        !s.ok()) {
      return s;
    }
  }

  auto start = std::chrono::steady_clock::now();
  PyStatus status = Py_InitializeFromConfig(&config);
  double init_ms = std::chrono::duration<double, std::milli>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  if (PyStatus_Exception(status)) {
    return StatusFromPyStatus("Py_InitializeFromConfig", status);
  }
  Interpreter interpreter(options.finalize_on_destroy, init_ms);
  if (absl::Status s = hooks::AuditHook::Instance().VerifyActive(); !s.ok()) {
    return s;
  }
  if (options.disguise) {
    if (absl::Status s = Disguise(); !s.ok()) return s;
  }
  return interpreter;
}

Interpreter::Interpreter(Interpreter&& other) noexcept
    : active_(std::exchange(other.active_, false)),
      finalize_(other.finalize_),
      init_ms_(other.init_ms_) {}

Interpreter& Interpreter::operator=(Interpreter&& other) noexcept {
  if (this != &other) {
    if (active_ && finalize_) Py_FinalizeEx();
    active_ = std::exchange(other.active_, false);
    finalize_ = other.finalize_;
    init_ms_ = other.init_ms_;
  }
  return *this;
}

Interpreter::~Interpreter() {
  if (active_ && finalize_) Py_FinalizeEx();
}

absl::Status Interpreter::Preimport(const std::vector<std::string>& modules) {
  if (!active_)
    return absl::FailedPreconditionError("Preimport: no interpreter");
  for (const std::string& name : modules) {
    PyRef module(PyImport_ImportModule(name.c_str()));
    if (!module) {
      return StatusFromPyErr(absl::StrCat("Preimport: import ", name),
                             absl::StatusCode::kNotFound);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Interpreter::PackageDirectory(
    const std::string& name) {
  if (!active_) {
    return absl::FailedPreconditionError("PackageDirectory: no interpreter");
  }
  PyObject* modules = PyImport_GetModuleDict();  // borrowed
  PyObject* module = PyDict_GetItemString(modules, name.c_str());  // borrowed
  if (module == nullptr || !PyModule_Check(module)) {
    return absl::NotFoundError(
        absl::StrCat("PackageDirectory: ", name, " is not imported"));
  }
  // Read from the module's dict: no attribute hooks run.
  PyObject* dict = PyModule_GetDict(module);  // borrowed
  PyObject* path = PyDict_GetItemString(dict, "__path__");  // borrowed
  if (path == nullptr || !PyList_Check(path) || PyList_GET_SIZE(path) < 1 ||
      !PyUnicode_Check(PyList_GET_ITEM(path, 0))) {
    return absl::NotFoundError(
        absl::StrCat("PackageDirectory: ", name, " is not a package"));
  }
  Py_ssize_t n = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(path, 0), &n);
  if (utf8 == nullptr) return StatusFromPyErr("PackageDirectory: utf-8");
  return std::string(utf8, static_cast<size_t>(n));
}

absl::Status Interpreter::Exec(const std::string& source) {
  if (!active_) return absl::FailedPreconditionError("Exec: no interpreter");
  PyObject* main = PyImport_AddModule("__main__");  // borrowed
  if (main == nullptr) return StatusFromPyErr("Exec: __main__");
  PyRef globals(PyDict_Copy(PyModule_GetDict(main)));
  if (!globals) return StatusFromPyErr("Exec: globals");
  PyRef result(PyRun_String(source.c_str(), Py_file_input, globals.get(),
                            globals.get()));
  if (!result) {
    return StatusFromPyErr("Exec", absl::StatusCode::kInvalidArgument);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Interpreter::Eval(const std::string& expr) {
  if (!active_) return absl::FailedPreconditionError("Eval: no interpreter");
  PyObject* main = PyImport_AddModule("__main__");  // borrowed
  if (main == nullptr) return StatusFromPyErr("Eval: __main__");
  PyObject* globals = PyModule_GetDict(main);  // borrowed
  PyRef result(PyRun_String(expr.c_str(), Py_eval_input, globals, globals));
  if (!result) {
    return StatusFromPyErr("Eval", absl::StatusCode::kInvalidArgument);
  }
  PyRef text(PyObject_Str(result.get()));
  if (!text) return StatusFromPyErr("Eval: str()");
  Py_ssize_t n = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(text.get(), &n);
  if (utf8 == nullptr) return StatusFromPyErr("Eval: utf-8");
  return std::string(utf8, static_cast<size_t>(n));
}

void Interpreter::BeforeFork() { PyOS_BeforeFork(); }
void Interpreter::AfterForkParent() { PyOS_AfterFork_Parent(); }
void Interpreter::AfterForkChild() { PyOS_AfterFork_Child(); }

}  // namespace dynahug::runtime

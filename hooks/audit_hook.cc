#include "hooks/audit_hook.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "hooks/base/py_ref.h"
#include "hooks/base/sha256.h"

namespace dynahug::hooks {
namespace {

constexpr char kProbeEvent[] = "dynahug.audit_selftest";

// --- argument building -------------------------------------------------------

std::string Truncate(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  // Do not cut a UTF-8 sequence in half.
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n)) + "...";
}

class ArgBuilder {
 public:
  ArgBuilder(proto::Event* event, const PathContext& ctx,
             const AuditLimits& limits)
      : event_(event), ctx_(ctx), limits_(limits) {}

  void Add(std::string_view key, std::string_view value) {
    if (event_->args_size() >= limits_.max_args) return;
    proto::Argument* arg = event_->add_args();
    arg->set_key(std::string(key));
    arg->set_value(Truncate(value, limits_.max_value_bytes));
  }

  const PathContext& ctx() const { return ctx_; }

 private:
  proto::Event* event_;
  const PathContext& ctx_;
  const AuditLimits& limits_;
};

PyObject* Arg(PyObject* args, Py_ssize_t i) {
  if (args == nullptr || !PyTuple_Check(args) || i >= PyTuple_GET_SIZE(args)) {
    return nullptr;
  }
  return PyTuple_GET_ITEM(args, i);
}

// The bytes of a str (filesystem encoding, surrogateescape) or bytes object.
std::optional<std::string> RawString(PyObject* obj) {
  if (obj == nullptr) return std::nullopt;
  if (PyBytes_Check(obj)) {
    return std::string(PyBytes_AS_STRING(obj),
                       static_cast<size_t>(PyBytes_GET_SIZE(obj)));
  }
  if (PyByteArray_Check(obj)) {
    return std::string(PyByteArray_AS_STRING(obj),
                       static_cast<size_t>(PyByteArray_GET_SIZE(obj)));
  }
  if (PyUnicode_Check(obj)) {
    Py_ssize_t n = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(obj, &n);
    if (utf8 != nullptr) return std::string(utf8, static_cast<size_t>(n));
    PyErr_Clear();
    PyRef b(PyUnicode_EncodeFSDefault(obj));
    if (!b) {
      PyErr_Clear();
      return std::nullopt;
    }
    return std::string(PyBytes_AS_STRING(b.get()),
                       static_cast<size_t>(PyBytes_GET_SIZE(b.get())));
  }
  return std::nullopt;
}

std::string TypeName(PyObject* obj) {
  if (obj == nullptr) return "<missing>";
  return PyTypeName(Py_TYPE(obj));
}

// A scalar's value, or the type name for anything else (never calls
// payload-defined __repr__).
std::string Scalar(PyObject* obj) {
  if (obj == nullptr) return "<missing>";
  if (obj == Py_None) return "None";
  if (PyBool_Check(obj)) return obj == Py_True ? "True" : "False";
  if (PyLong_CheckExact(obj)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow != 0 || (v == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return "int(big)";
    }
    return absl::StrCat(v);
  }
  if (PyFloat_CheckExact(obj)) return absl::StrCat(PyFloat_AS_DOUBLE(obj));
  if (PyUnicode_CheckExact(obj)) return RawString(obj).value_or("<str>");
  if (PyBytes_CheckExact(obj)) {
    return absl::StrCat("bytes[", PyBytes_GET_SIZE(obj), "]");
  }
  if (PyTuple_CheckExact(obj) || PyList_CheckExact(obj)) {
    return absl::StrCat(TypeName(obj), "[", PySequence_Fast_GET_SIZE(obj), "]");
  }
  if (PyDict_CheckExact(obj)) {
    return absl::StrCat("dict[", PyDict_GET_SIZE(obj), "]");
  }
  return TypeName(obj);
}

std::string_view Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string Extension(std::string_view path) {
  std::string_view base = Basename(path);
  size_t dot = base.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || base.size() - dot > 9) {
    return "";
  }
  for (char c : base.substr(dot + 1)) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_') return "";
  }
  return std::string(base.substr(dot));
}

bool Under(std::string_view path, std::string_view dir) {
  if (dir.empty()) return false;
  if (dir == "/") return true;
  return path == dir || (path.starts_with(dir) && path.size() > dir.size() &&
                         path[dir.size()] == '/');
}

std::string Cwd(const PathContext& ctx) {
  if (!ctx.cwd.empty()) return ctx.cwd;
  char buf[4096];
  if (getcwd(buf, sizeof(buf)) == nullptr) return "/";
  return buf;
}

std::string ModelDir(const PathContext& ctx) {
  std::string n = NormalizePath(ctx.model_path, "/");
  size_t slash = n.rfind('/');
  if (ctx.model_path.empty() || slash == 0 || slash == std::string::npos) {
    return "";
  }
  return n.substr(0, slash);
}

// Adds "<key>" = class, "<key>_ext" = extension and, inside the model
// directory or scratch, "<key>_rel" = the relative path.
void AddPath(ArgBuilder& b, std::string_view key, PyObject* obj) {
  if (obj == nullptr) return;
  if (PyLong_Check(obj)) {
    b.Add(key, "fd");
    return;
  }
  PyRef fspath;
  if (!PyUnicode_Check(obj) && !PyBytes_Check(obj) &&
      std::string_view(Py_TYPE(obj)->tp_name).ends_with("Path")) {
    fspath = PyRef(PyOS_FSPath(obj));
    if (!fspath) PyErr_Clear();
    obj = fspath ? fspath.get() : obj;
  }
  std::optional<std::string> raw = RawString(obj);
  if (!raw.has_value()) {
    b.Add(key, absl::StrCat("object:", TypeName(obj)));
    return;
  }
  const PathContext& ctx = b.ctx();
  std::string cls = ClassifyPath(*raw, ctx);
  b.Add(key, cls);
  std::string ext = Extension(*raw);
  if (!ext.empty()) b.Add(std::string(key) + "_ext", ext);
  std::string dir;
  if (cls == "scratch") dir = NormalizePath(ctx.scratch_dir, "/");
  if (cls == "model-dir") dir = ModelDir(ctx);
  if (!dir.empty()) {
    std::string norm = NormalizePath(*raw, Cwd(ctx));
    b.Add(std::string(key) + "_rel",
          norm.size() > dir.size() ? norm.substr(dir.size() + 1) : ".");
  }
}

void AddCode(ArgBuilder& b, std::string_view data) {
  b.Add("sha256", Sha256Prefix(data));
  b.Add("size", absl::StrCat(data.size()));
}

std::string ModeFromFlags(PyObject* flags_obj) {
  if (flags_obj == nullptr || !PyLong_Check(flags_obj)) return "?";
  long flags = PyLong_AsLong(flags_obj);
  if (flags == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return "?";
  }
  std::string mode;
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      mode = "r";
      break;
    case O_WRONLY:
      mode = "w";
      break;
    default:
      mode = "rw";
      break;
  }
  if (flags & O_CREAT) mode += "c";
  if (flags & O_TRUNC) mode += "t";
  if (flags & O_APPEND) mode += "a";
  return mode;
}

// Executable named by an argv-like object (list/tuple/str/bytes).
std::string FirstArgv(PyObject* argv) {
  if (argv == nullptr) return "";
  if (PyUnicode_Check(argv) || PyBytes_Check(argv)) {
    std::string s = RawString(argv).value_or("");
    size_t begin = s.find_first_not_of(' ');
    if (begin == std::string::npos) return "";
    return s.substr(begin, s.find(' ', begin) - begin);
  }
  if ((PyList_Check(argv) || PyTuple_Check(argv)) &&
      PySequence_Fast_GET_SIZE(argv) > 0) {
    return RawString(PySequence_Fast_GET_ITEM(argv, 0)).value_or("<object>");
  }
  return "";
}

std::string ArgCount(PyObject* argv) {
  if (argv != nullptr && (PyList_Check(argv) || PyTuple_Check(argv))) {
    return absl::StrCat(PySequence_Fast_GET_SIZE(argv));
  }
  return "?";
}

std::string Address(PyObject* addr, std::string* family,
                    const PathContext& ctx) {
  if (addr == nullptr) return "";
  if (PyTuple_Check(addr) && PyTuple_GET_SIZE(addr) >= 2) {
    std::string host = RawString(PyTuple_GET_ITEM(addr, 0)).value_or("?");
    *family = host.find(':') != std::string::npos ? "AF_INET6" : "AF_INET";
    return absl::StrCat(host, ":", Scalar(PyTuple_GET_ITEM(addr, 1)));
  }
  if (PyUnicode_Check(addr) || PyBytes_Check(addr)) {
    *family = "AF_UNIX";
    std::string raw = RawString(addr).value_or("");
    if (!raw.empty() && raw[0] == '\0') return "abstract";
    return ClassifyPath(raw, ctx);
  }
  *family = "?";
  return TypeName(addr);
}

std::string FamilyName(PyObject* obj) {
  if (obj == nullptr || !PyLong_Check(obj)) return "?";
  long f = PyLong_AsLong(obj);
  if (f == -1 && PyErr_Occurred()) PyErr_Clear();
  switch (f) {
    case 1:
      return "AF_UNIX";
    case 2:
      return "AF_INET";
    case 10:
      return "AF_INET6";
    case 16:
      return "AF_NETLINK";
    case 17:
      return "AF_PACKET";
    default:
      return absl::StrCat("AF_", f);
  }
}

using Handler = std::function<void(PyObject* args, ArgBuilder& b)>;

void PathArgs(PyObject* args, ArgBuilder& b, std::initializer_list<int> idx,
              std::initializer_list<const char*> keys) {
  auto key = keys.begin();
  for (int i : idx) AddPath(b, *key++, Arg(args, i));
}

const absl::flat_hash_map<std::string_view, Handler>& Handlers() {
  static const auto* handlers =
      new absl::flat_hash_map<std::string_view, Handler>{
          {"open",
           [](PyObject* a, ArgBuilder& b) {
             AddPath(b, "path", Arg(a, 0));
             PyObject* mode = Arg(a, 1);
             b.Add("mode", mode != nullptr && PyUnicode_Check(mode)
                               ? RawString(mode).value_or("?")
                               : ModeFromFlags(Arg(a, 2)));
           }},
          {"import",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("module", RawString(Arg(a, 0)).value_or("?"));
           }},
          {"exec",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* code = Arg(a, 0);
             if (code == nullptr || !PyCode_Check(code)) {
               b.Add("code", TypeName(code));
               return;
             }
             auto* co = reinterpret_cast<PyCodeObject*>(code);
             PyRef bytecode(PyCode_GetCode(co));
             if (!bytecode) {
               PyErr_Clear();
             } else {
               AddCode(b, RawString(bytecode.get()).value_or(""));
             }
             b.Add("name", RawString(co->co_name).value_or("?"));
             std::string file = RawString(co->co_filename).value_or("?");
             if (file.starts_with("<")) {
               b.Add("filename", file);
             } else {
               AddPath(b, "filename", co->co_filename);
             }
           }},
          {"compile",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* src = Arg(a, 0);
             std::optional<std::string> raw = RawString(src);
             if (raw.has_value()) {
               AddCode(b, *raw);
             } else {
               b.Add("source", TypeName(src));
             }
             std::string file = RawString(Arg(a, 1)).value_or("?");
             if (file.starts_with("<") || file == "?") {
               b.Add("filename", file);
             } else {
               AddPath(b, "filename", Arg(a, 1));
             }
           }},
          {"marshal.loads",
           [](PyObject* a, ArgBuilder& b) {
             AddCode(b, RawString(Arg(a, 0)).value_or(""));
           }},
          {"subprocess.Popen",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* exe = Arg(a, 0);
             b.Add("executable", exe != nullptr && exe != Py_None
                                     ? RawString(exe).value_or("<object>")
                                     : FirstArgv(Arg(a, 1)));
             b.Add("argc", ArgCount(Arg(a, 1)));
             PyObject* env = Arg(a, 3);
             b.Add("env", env == nullptr || env == Py_None ? "inherit" : "set");
           }},
          {"os.system",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable", FirstArgv(Arg(a, 0)));
             AddCode(b, RawString(Arg(a, 0)).value_or(""));
           }},
          {"os.exec",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable", RawString(Arg(a, 0)).value_or("<object>"));
             b.Add("argc", ArgCount(Arg(a, 1)));
           }},
          {"os.posix_spawn",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable", RawString(Arg(a, 0)).value_or("<object>"));
             b.Add("argc", ArgCount(Arg(a, 1)));
           }},
          {"os.spawn",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable", RawString(Arg(a, 1)).value_or("<object>"));
             b.Add("argc", ArgCount(Arg(a, 2)));
           }},
          {"os.kill",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("pid", Scalar(Arg(a, 0)));
             b.Add("signal", Scalar(Arg(a, 1)));
           }},
          {"os.putenv",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("key", RawString(Arg(a, 0)).value_or("?"));
           }},
          {"os.unsetenv",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("key", RawString(Arg(a, 0)).value_or("?"));
           }},
          {"socket.__new__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("family", FamilyName(Arg(a, 1)));
             b.Add("type", Scalar(Arg(a, 2)));
           }},
          {"socket.connect",
           [](PyObject* a, ArgBuilder& b) {
             std::string family;
             std::string address = Address(Arg(a, 1), &family, b.ctx());
             b.Add("family", family);
             b.Add("address", address);
           }},
          {"socket.bind",
           [](PyObject* a, ArgBuilder& b) {
             std::string family;
             std::string address = Address(Arg(a, 1), &family, b.ctx());
             b.Add("family", family);
             b.Add("address", address);
           }},
          {"socket.sendto",
           [](PyObject* a, ArgBuilder& b) {
             std::string family;
             std::string address = Address(Arg(a, 1), &family, b.ctx());
             b.Add("family", family);
             b.Add("address", address);
           }},
          {"socket.getaddrinfo",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("host", RawString(Arg(a, 0)).value_or(Scalar(Arg(a, 0))));
             b.Add("port", Scalar(Arg(a, 1)));
           }},
          {"socket.gethostbyname",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("host", RawString(Arg(a, 0)).value_or("?"));
           }},
          {"ctypes.dlopen",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* name = Arg(a, 0);
             std::optional<std::string> raw = RawString(name);
             if (!raw.has_value()) {
               b.Add("library", Scalar(name));
             } else if (raw->find('/') == std::string::npos) {
               b.Add("library", *raw);
             } else {
               b.Add("library", std::string(Basename(*raw)));
               AddPath(b, "path", name);
             }
           }},
          {"ctypes.dlsym",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("symbol", RawString(Arg(a, 1)).value_or(Scalar(Arg(a, 1))));
           }},
          {"ctypes.dlsym/handle",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("symbol", RawString(Arg(a, 1)).value_or(Scalar(Arg(a, 1))));
           }},
          {"ctypes.call_function",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* ptr = Arg(a, 0);
             if (ptr != nullptr && PyLong_Check(ptr)) {
               unsigned long long v = PyLong_AsUnsignedLongLongMask(ptr);
               b.Add("function", absl::StrCat("0x", absl::Hex(v)));
             }
             b.Add("argc", ArgCount(Arg(a, 1)));
           }},
          {"pickle.find_class",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("module", RawString(Arg(a, 0)).value_or(Scalar(Arg(a, 0))));
             b.Add("name", RawString(Arg(a, 1)).value_or(Scalar(Arg(a, 1))));
           }},
          {"object.__setattr__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("object", TypeName(Arg(a, 0)));
             b.Add("attribute", RawString(Arg(a, 1)).value_or("?"));
             b.Add("value", TypeName(Arg(a, 2)));
           }},
          {"object.__delattr__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("object", TypeName(Arg(a, 0)));
             b.Add("attribute", RawString(Arg(a, 1)).value_or("?"));
           }},
          {"object.__getattr__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("object", TypeName(Arg(a, 0)));
             b.Add("attribute", RawString(Arg(a, 1)).value_or("?"));
           }},
          // Arguments carry no information worth keeping (ids, frames).
          {"builtins.id", [](PyObject*, ArgBuilder&) {}},
          {"sys._getframe", [](PyObject*, ArgBuilder&) {}},
          {"urllib.Request",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("url", RawString(Arg(a, 0)).value_or("?"));
             b.Add("method", Scalar(Arg(a, 3)));
           }},
          {"http.client.connect",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("host", RawString(Arg(a, 1)).value_or("?"));
             b.Add("port", Scalar(Arg(a, 2)));
           }},
          {"os.rename",
           [](PyObject* a, ArgBuilder& b) {
             PathArgs(a, b, {0, 1}, {"src", "dst"});
           }},
          {"os.replace",
           [](PyObject* a, ArgBuilder& b) {
             PathArgs(a, b, {0, 1}, {"src", "dst"});
           }},
          {"os.link",
           [](PyObject* a, ArgBuilder& b) {
             PathArgs(a, b, {0, 1}, {"src", "dst"});
           }},
          {"os.symlink",
           [](PyObject* a, ArgBuilder& b) {
             PathArgs(a, b, {0, 1}, {"src", "dst"});
           }},
          {"shutil.copyfile",
           [](PyObject* a, ArgBuilder& b) {
             PathArgs(a, b, {0, 1}, {"src", "dst"});
           }},
          {"shutil.move",
           [](PyObject* a, ArgBuilder& b) {
             PathArgs(a, b, {0, 1}, {"src", "dst"});
           }},
      };
  return *handlers;
}

// Unknown events: strings that look like paths are classified, other
// scalars kept, everything else reduced to its type name.
void GenericArgs(PyObject* args, ArgBuilder& b) {
  if (args == nullptr || !PyTuple_Check(args)) return;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); ++i) {
    PyObject* item = PyTuple_GET_ITEM(args, i);
    std::string key = absl::StrCat(i);
    std::optional<std::string> raw =
        PyUnicode_Check(item) || PyBytes_Check(item) ? RawString(item)
                                                     : std::nullopt;
    if (raw.has_value() && raw->find('/') != std::string::npos) {
      AddPath(b, key, item);
    } else if (raw.has_value() && PyBytes_Check(item)) {
      b.Add(key, absl::StrCat("bytes[", raw->size(), "]"));
    } else {
      b.Add(key, Scalar(item));
    }
  }
}

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

// A shared object or mapped file as it may appear in a NATIVE event: whole
// for system and Python-library files, memfd names and loader names that
// are not paths ("linux-vdso.so.1") as they are, otherwise
// "<class>:<basename>" so that host paths do not leak.
std::string NativeObjectName(std::string_view path, const PathContext& ctx) {
  if (path.find('/') == std::string_view::npos || path.starts_with("/memfd:")) {
    return std::string(path);
  }
  std::string cls = ClassifyPath(path, ctx);
  if (cls == "system" || cls == "python-lib") return NormalizePath(path, "/");
  return absl::StrCat(cls, ":", std::string(Basename(path)));
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
    arg->set_value(Truncate(value, limits_.max_value_bytes));
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
    f.set_function(Truncate(f.function(), limits.max_value_bytes));
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

std::string NormalizePath(std::string_view path, std::string_view cwd) {
  std::vector<std::string_view> parts;
  auto push = [&parts](std::string_view p) {
    while (!p.empty()) {
      size_t slash = p.find('/');
      std::string_view part = p.substr(0, slash);
      p = slash == std::string_view::npos ? std::string_view()
                                          : p.substr(slash + 1);
      if (part.empty() || part == ".") continue;
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
        continue;
      }
      parts.push_back(part);
    }
  };
  if (path.empty() || path[0] != '/') push(cwd);
  push(path);
  std::string out;
  for (std::string_view part : parts) {
    out += '/';
    out += part;
  }
  return out.empty() ? "/" : out;
}

std::string ClassifyPath(std::string_view path, const PathContext& ctx) {
  std::string p = NormalizePath(path, Cwd(ctx));
  if (!ctx.model_path.empty() && p == NormalizePath(ctx.model_path, "/")) {
    return "model-file";
  }
  if (!ctx.scratch_dir.empty() &&
      Under(p, NormalizePath(ctx.scratch_dir, "/"))) {
    return "scratch";
  }
  std::string model_dir = ModelDir(ctx);
  if (!model_dir.empty() && Under(p, model_dir)) return "model-dir";
  if ((!ctx.home_dir.empty() && ctx.home_dir != "/" &&
       Under(p, NormalizePath(ctx.home_dir, "/"))) ||
      Under(p, "/home") || Under(p, "/root")) {
    return "home";
  }
  if (Under(p, "/tmp") || Under(p, "/var/tmp") || Under(p, "/dev/shm")) {
    return "tmp";
  }
  for (std::string_view lib : {"/usr/lib/", "/usr/local/lib/"}) {
    if (std::string_view(p).starts_with(lib) &&
        std::string_view(p).substr(lib.size()).starts_with("python3")) {
      return "python-lib";
    }
  }
  if (Under(p, "/etc")) return "etc";
  if (Under(p, "/proc") || Under(p, "/sys")) return "proc";
  if (Under(p, "/dev")) return "dev";
  for (std::string_view sys : {"/usr", "/lib", "/lib64", "/lib32", "/bin",
                               "/sbin", "/opt", "/var/lib", "/var/cache"}) {
    if (Under(p, sys)) return "system";
  }
  return "other";
}

proto::Event NormalizeAuditEvent(std::string_view name, PyObject* args,
                                 const PathContext& ctx,
                                 const AuditLimits& limits) {
  proto::Event event;
  event.set_kind(proto::Event::AUDIT);
  event.set_name(Truncate(name, limits.max_value_bytes));
  ArgBuilder builder(&event, ctx, limits);
  const auto& handlers = Handlers();
  auto it = handlers.find(name);
  if (it != handlers.end()) {
    it->second(args, builder);
  } else {
    GenericArgs(args, builder);
  }
  if (PyErr_Occurred()) PyErr_Clear();
  return event;
}

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
    PyObject* nonce = Arg(args, 0);
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
    PyObject* addr = Arg(args, 0);
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

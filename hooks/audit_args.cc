#include "hooks/audit_args.h"

#include <fcntl.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "hooks/base/py_ref.h"
#include "hooks/base/sha256.h"
#include "hooks/internal/text.h"

namespace dynahug::hooks {
namespace {

class ArgBuilder {
 public:
  ArgBuilder(proto::Event* event, const PathContext& ctx,
             const AuditLimits& limits)
      : event_(event), ctx_(ctx), limits_(limits) {}

  void Add(std::string_view key, std::string_view value) {
    if (event_->args_size() >= limits_.max_args) return;
    proto::Argument* arg = event_->add_args();
    arg->set_key(std::string(key));
    arg->set_value(internal::TruncateUtf8(value, limits_.max_value_bytes));
  }

  const PathContext& ctx() const { return ctx_; }

 private:
  proto::Event* event_;
  const PathContext& ctx_;
  const AuditLimits& limits_;
};

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
  const PathView view = ViewPath(*raw, b.ctx());
  b.Add(key, view.cls);
  if (!view.ext.empty()) b.Add(std::string(key) + "_ext", view.ext);
  if (!view.rel.empty()) b.Add(std::string(key) + "_rel", view.rel);
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
  for (int i : idx) AddPath(b, *key++, AuditArg(args, i));
}

const absl::flat_hash_map<std::string_view, Handler>& Handlers() {
  static const auto* handlers =
      new absl::flat_hash_map<std::string_view, Handler>{
          {"open",
           [](PyObject* a, ArgBuilder& b) {
             AddPath(b, "path", AuditArg(a, 0));
             PyObject* mode = AuditArg(a, 1);
             b.Add("mode", mode != nullptr && PyUnicode_Check(mode)
                               ? RawString(mode).value_or("?")
                               : ModeFromFlags(AuditArg(a, 2)));
           }},
          {"import",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("module", RawString(AuditArg(a, 0)).value_or("?"));
           }},
          {"exec",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* code = AuditArg(a, 0);
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
             PyObject* src = AuditArg(a, 0);
             std::optional<std::string> raw = RawString(src);
             if (raw.has_value()) {
               AddCode(b, *raw);
             } else {
               b.Add("source", TypeName(src));
             }
             std::string file = RawString(AuditArg(a, 1)).value_or("?");
             if (file.starts_with("<") || file == "?") {
               b.Add("filename", file);
             } else {
               AddPath(b, "filename", AuditArg(a, 1));
             }
           }},
          {"marshal.loads",
           [](PyObject* a, ArgBuilder& b) {
             AddCode(b, RawString(AuditArg(a, 0)).value_or(""));
           }},
          {"subprocess.Popen",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* exe = AuditArg(a, 0);
             b.Add("executable", exe != nullptr && exe != Py_None
                                     ? RawString(exe).value_or("<object>")
                                     : FirstArgv(AuditArg(a, 1)));
             b.Add("argc", ArgCount(AuditArg(a, 1)));
             PyObject* env = AuditArg(a, 3);
             b.Add("env", env == nullptr || env == Py_None ? "inherit" : "set");
           }},
          {"os.system",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable", FirstArgv(AuditArg(a, 0)));
             AddCode(b, RawString(AuditArg(a, 0)).value_or(""));
           }},
          {"os.exec",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable",
                   RawString(AuditArg(a, 0)).value_or("<object>"));
             b.Add("argc", ArgCount(AuditArg(a, 1)));
           }},
          {"os.posix_spawn",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable",
                   RawString(AuditArg(a, 0)).value_or("<object>"));
             b.Add("argc", ArgCount(AuditArg(a, 1)));
           }},
          {"os.spawn",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("executable",
                   RawString(AuditArg(a, 1)).value_or("<object>"));
             b.Add("argc", ArgCount(AuditArg(a, 2)));
           }},
          {"os.kill",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("pid", Scalar(AuditArg(a, 0)));
             b.Add("signal", Scalar(AuditArg(a, 1)));
           }},
          {"os.putenv",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("key", RawString(AuditArg(a, 0)).value_or("?"));
           }},
          {"os.unsetenv",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("key", RawString(AuditArg(a, 0)).value_or("?"));
           }},
          {"socket.__new__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("family", FamilyName(AuditArg(a, 1)));
             b.Add("type", Scalar(AuditArg(a, 2)));
           }},
          {"socket.connect",
           [](PyObject* a, ArgBuilder& b) {
             std::string family;
             std::string address = Address(AuditArg(a, 1), &family, b.ctx());
             b.Add("family", family);
             b.Add("address", address);
           }},
          {"socket.bind",
           [](PyObject* a, ArgBuilder& b) {
             std::string family;
             std::string address = Address(AuditArg(a, 1), &family, b.ctx());
             b.Add("family", family);
             b.Add("address", address);
           }},
          {"socket.sendto",
           [](PyObject* a, ArgBuilder& b) {
             std::string family;
             std::string address = Address(AuditArg(a, 1), &family, b.ctx());
             b.Add("family", family);
             b.Add("address", address);
           }},
          {"socket.getaddrinfo",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("host",
                   RawString(AuditArg(a, 0)).value_or(Scalar(AuditArg(a, 0))));
             b.Add("port", Scalar(AuditArg(a, 1)));
           }},
          {"socket.gethostbyname",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("host", RawString(AuditArg(a, 0)).value_or("?"));
           }},
          {"ctypes.dlopen",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* name = AuditArg(a, 0);
             std::optional<std::string> raw = RawString(name);
             if (!raw.has_value()) {
               b.Add("library", Scalar(name));
             } else if (raw->find('/') == std::string::npos) {
               b.Add("library", *raw);
             } else {
               b.Add("library", std::string(PathBasename(*raw)));
               AddPath(b, "path", name);
             }
           }},
          {"ctypes.dlsym",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("symbol",
                   RawString(AuditArg(a, 1)).value_or(Scalar(AuditArg(a, 1))));
           }},
          {"ctypes.dlsym/handle",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("symbol",
                   RawString(AuditArg(a, 1)).value_or(Scalar(AuditArg(a, 1))));
           }},
          {"ctypes.call_function",
           [](PyObject* a, ArgBuilder& b) {
             PyObject* ptr = AuditArg(a, 0);
             if (ptr != nullptr && PyLong_Check(ptr)) {
               unsigned long long v = PyLong_AsUnsignedLongLongMask(ptr);
               b.Add("function", absl::StrCat("0x", absl::Hex(v)));
             }
             b.Add("argc", ArgCount(AuditArg(a, 1)));
           }},
          {"pickle.find_class",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("module",
                   RawString(AuditArg(a, 0)).value_or(Scalar(AuditArg(a, 0))));
             b.Add("name",
                   RawString(AuditArg(a, 1)).value_or(Scalar(AuditArg(a, 1))));
           }},
          {"object.__setattr__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("object", TypeName(AuditArg(a, 0)));
             b.Add("attribute", RawString(AuditArg(a, 1)).value_or("?"));
             b.Add("value", TypeName(AuditArg(a, 2)));
           }},
          {"object.__delattr__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("object", TypeName(AuditArg(a, 0)));
             b.Add("attribute", RawString(AuditArg(a, 1)).value_or("?"));
           }},
          {"object.__getattr__",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("object", TypeName(AuditArg(a, 0)));
             b.Add("attribute", RawString(AuditArg(a, 1)).value_or("?"));
           }},
          // Arguments carry no information worth keeping (ids, frames).
          {"builtins.id", [](PyObject*, ArgBuilder&) {}},
          {"sys._getframe", [](PyObject*, ArgBuilder&) {}},
          {"urllib.Request",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("url", RawString(AuditArg(a, 0)).value_or("?"));
             b.Add("method", Scalar(AuditArg(a, 3)));
           }},
          {"http.client.connect",
           [](PyObject* a, ArgBuilder& b) {
             b.Add("host", RawString(AuditArg(a, 1)).value_or("?"));
             b.Add("port", Scalar(AuditArg(a, 2)));
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

}  // namespace

PyObject* AuditArg(PyObject* args, Py_ssize_t i) {
  if (args == nullptr || !PyTuple_Check(args) || i >= PyTuple_GET_SIZE(args)) {
    return nullptr;
  }
  return PyTuple_GET_ITEM(args, i);
}

proto::Event NormalizeAuditEvent(std::string_view name, PyObject* args,
                                 const PathContext& ctx,
                                 const AuditLimits& limits) {
  proto::Event event;
  event.set_kind(proto::Event::AUDIT);
  event.set_name(internal::TruncateUtf8(name, limits.max_value_bytes));
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

}  // namespace dynahug::hooks

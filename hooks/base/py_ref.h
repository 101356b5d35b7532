// RAII ownership of CPython object references, and conversion of the
// pending Python exception into an absl::Status.
//
// Every function here requires the calling thread to hold the GIL (including
// PyRef's destructor and assignment, which may drop a reference).
#ifndef DYNAHUG_HOOKS_BASE_PY_REF_H_
#define DYNAHUG_HOOKS_BASE_PY_REF_H_

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dynahug::hooks {

// Owns one strong reference (or none). Move-only.
class PyRef {
 public:
  PyRef() = default;
  // Takes ownership of a new reference; `owned` may be null (e.g. the result
  // of a failed C API call).
  explicit PyRef(PyObject* owned) : obj_(owned) {}
  // Adds a reference to a borrowed pointer.
  static PyRef Borrow(PyObject* borrowed) {
    Py_XINCREF(borrowed);
    return PyRef(borrowed);
  }
  ~PyRef() { Py_XDECREF(obj_); }
  PyRef(PyRef&& other) noexcept : obj_(std::exchange(other.obj_, nullptr)) {}
  PyRef& operator=(PyRef&& other) noexcept {
    if (this != &other) {
      PyObject* old = std::exchange(obj_, std::exchange(other.obj_, nullptr));
      Py_XDECREF(old);
    }
    return *this;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;

  PyObject* get() const { return obj_; }
  // Gives up ownership; the caller now owns the reference.
  PyObject* release() { return std::exchange(obj_, nullptr); }
  explicit operator bool() const { return obj_ != nullptr; }

 private:
  PyObject* obj_ = nullptr;
};

// The contents of `obj` as UTF-8 (embedded NULs included) when it is a str,
// else `fallback`; also `fallback` when it cannot be encoded (lone
// surrogates; the error is cleared). Calls no Python code.
inline std::string PyUtf8(PyObject* obj, std::string_view fallback) {
  if (obj == nullptr || !PyUnicode_Check(obj)) return std::string(fallback);
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(obj, &n);
  if (s == nullptr) {
    PyErr_Clear();
    return std::string(fallback);
  }
  return std::string(s, static_cast<size_t>(n));
}

// str(obj) as UTF-8, or `fallback` when that fails (the error is cleared).
// Calls obj's __str__: use only on objects whose type is trusted.
inline std::string PyStr(PyObject* obj, std::string_view fallback = "<?>") {
  if (obj == nullptr) return std::string(fallback);
  PyRef s(PyObject_Str(obj));
  if (!s) {
    PyErr_Clear();
    return std::string(fallback);
  }
  return PyUtf8(s.get(), fallback);
}

// Qualified name of a type: "module.QualName" ("builtins" omitted for
// builtin types is NOT applied: "builtins.dict").
inline std::string PyTypeName(PyTypeObject* type) {
  PyRef qual(PyType_GetQualName(type));
  PyRef mod(
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__module__"));
  if (!qual || !mod) PyErr_Clear();
  std::string q = qual ? PyStr(qual.get()) : std::string(type->tp_name);
  if (mod && PyUnicode_Check(mod.get())) return PyStr(mod.get()) + "." + q;
  return q;
}

// Converts the pending Python exception (if any) into a status
// "<context>: <ExceptionType>: <message>" and clears it. Returns `code`
// status even when no exception is pending (then "<context>: unknown error").
inline absl::Status StatusFromPyErr(
    std::string_view context,
    absl::StatusCode code = absl::StatusCode::kInternal) {
  PyObject* type_raw = nullptr;
  PyObject* value_raw = nullptr;
  PyObject* tb_raw = nullptr;
  PyErr_Fetch(&type_raw, &value_raw, &tb_raw);
  if (type_raw == nullptr) {
    return absl::Status(code,
                        absl::StrCat(std::string(context), ": unknown error"));
  }
  PyErr_NormalizeException(&type_raw, &value_raw, &tb_raw);
  PyRef type_ref(type_raw), value(value_raw), tb(tb_raw);
  std::string type = PyType_Check(type_raw)
                         ? PyTypeName(reinterpret_cast<PyTypeObject*>(type_raw))
                         : std::string("<exception>");
  std::string message = PyStr(value.get());
  PyErr_Clear();
  return absl::Status(
      code, absl::StrCat(std::string(context), ": ", type, ": ", message));
}

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_BASE_PY_REF_H_

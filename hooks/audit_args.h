// Normalisation of audit-event arguments: what an AUDIT event records of
// each CPython audit event. File paths become a class plus the extension and,
// inside the model directory or scratch only, the relative path
// (hooks/path_classifier.h); code (exec/compile/marshal) becomes a SHA-256
// prefix and a size; processes the executable; sockets the family and
// address; imports the module name. Events without a rule of their own keep
// scalars, classify path-like strings and reduce everything else to its
// type name. Every value is capped in length and every event in argument
// count.
#ifndef DYNAHUG_HOOKS_AUDIT_ARGS_H_
#define DYNAHUG_HOOKS_AUDIT_ARGS_H_

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <string_view>

#include "hooks/native_inspector.h"
#include "hooks/path_classifier.h"
#include "proto/dynahug.pb.h"

namespace dynahug::hooks {

struct AuditLimits {
  size_t max_value_bytes = 160;  // per argument value (UTF-8 bytes)
  int max_args = 8;              // arguments per event
  NativeLimits native;           // NATIVE events (ctypes, mmap)
};

// Builds the AUDIT event for one audit event. `args` is the audit tuple.
// Requires the GIL. Never raises (errors are cleared) and never calls Python
// code defined by the payload (only C-level accessors of builtin types).
proto::Event NormalizeAuditEvent(std::string_view name, PyObject* args,
                                 const PathContext& ctx,
                                 const AuditLimits& limits);

// Item `i` of the audit tuple `args` (borrowed), or null when there is none.
PyObject* AuditArg(PyObject* args, Py_ssize_t i);

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_AUDIT_ARGS_H_

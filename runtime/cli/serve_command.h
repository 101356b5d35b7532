// `dynahug serve`: the helper process of the Python package (python/
// dynahug). It keeps one dynahug::Scanner (a warm worker zygote) between
// requests, so that a Python process never forks itself to analyse a file
// and a warm scan costs one sandboxed fork.
//
// Wire, on stdin/stdout (stdout is reserved for it: anything else the
// process prints goes to stderr). Every frame is a 4-byte little-endian
// length and a payload.
//   helper -> caller, once at start: JSON {"ready": true, "model": ID,
//       "version": V, "pid": N} or {"ready": false, "error": MESSAGE}
//       (then exit 2).
//   caller -> helper, a request: a header frame of "key=value\n" lines
//       (op=scan, name=<file name, for messages and the loader choice by
//       extension>, trace=1 to get the trace), then an 8-byte
//       little-endian length and that many bytes: the file's content.
//   helper -> caller, the reply: JSON {"verdict": "benign"|"malicious"|
//       "error"|"skipped", "score", "threshold", "ocsvm_score", "cluster",
//       "capabilities": [...], "reasons": [{"feature", "weight",
//       "detail"}], "error", "skip_reason", "format", "loader", "sha256",
//       "elapsed_ms", "loaded", "load_error", "globals": [{"module",
//       "name", "stub"}],
//       "trace_follows": bool}, then with trace_follows a second frame with
//       the proto::Trace as JSON. A request the helper cannot parse gets
//       {"fatal": MESSAGE} and ends the helper (exit 2).
// The helper exits 0 at end of input (the caller closed the pipe).
#ifndef DYNAHUG_RUNTIME_CLI_SERVE_COMMAND_H_
#define DYNAHUG_RUNTIME_CLI_SERVE_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace dynahug::runtime {

int RunServe(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_SERVE_COMMAND_H_

// What a scan decides about a file before, or instead of, its sandboxed
// load: formats without a code-execution path are SKIPPED, malformed inert
// formats and unreadable files are ERROR (runtime/container/
// inert_formats.h decides which is which). Every front end (`dynahug scan`,
// dynahug::Scanner) asks this first.
//
// Thread safety: pure functions; VerdictWithoutLoad only reads the file.
#ifndef DYNAHUG_RUNTIME_SCANNER_PRECHECK_H_
#define DYNAHUG_RUNTIME_SCANNER_PRECHECK_H_

#include <optional>
#include <string>

#include "proto/dynahug.pb.h"

namespace dynahug::runtime {

// A SKIPPED verdict saying why.
proto::Verdict SkippedVerdict(std::string reason);

// The verdict of `path` when it needs no sandboxed load: SKIPPED (a format
// with no code path, or one dynahug does not analyse), ERROR (unreadable, or
// a malformed inert format; with `strict`, also a format dynahug cannot vouch
// for). nullopt: the file must be loaded in the sandbox.
std::optional<proto::Verdict> VerdictWithoutLoad(const std::string& path,
                                                 bool strict);

// "benign", "malicious", "skipped" or "error" (the JSON contract's names).
const char* LabelName(proto::Verdict::Label label);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_SCANNER_PRECHECK_H_

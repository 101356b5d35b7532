// Converts the static analysis of a file (runtime::AnalyzedFile: container
// tree + decoded pickle streams) into the proto::Trace fields that describe
// it: FileIdentity and the Member tree with PickleSummary per stream.
// Pure functions; the result owns copies of everything it needs.
#ifndef DYNAHUG_RUNTIME_TRACE_STATIC_TRACE_H_
#define DYNAHUG_RUNTIME_TRACE_STATIC_TRACE_H_

#include "hooks/pickle_decoder.h"
#include "proto/dynahug.pb.h"
#include "runtime/container/container.h"

namespace dynahug::runtime {

proto::ContainerFormat ToProto(Format format);

// `member_path` is the chain of member names leading to the stream's member.
proto::PickleSummary ToProto(const hooks::PickleStream& stream,
                             const std::vector<std::string>& member_path);

// The member and everything below it. `member_path` names the member itself
// (empty for the top-level file).
proto::Member ToProto(const Member& member,
                      std::vector<std::string>& member_path);

// A Trace with `file`, `root` and `version` filled from the static analysis.
proto::Trace StaticTrace(const AnalyzedFile& file);

// Schema version written into Trace.version.
inline constexpr uint32_t kTraceVersion = 1;

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_TRACE_STATIC_TRACE_H_

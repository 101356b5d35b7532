// The parts of a verdict's JSON that `scan --format json` and `serve` write
// alike.
#ifndef DYNAHUG_RUNTIME_CLI_VERDICT_JSON_H_
#define DYNAHUG_RUNTIME_CLI_VERDICT_JSON_H_

#include "proto/dynahug.pb.h"
#include "runtime/cli/json_writer.h"

namespace dynahug::runtime {

// Inside an object: "capabilities": [...], "reasons": [{"feature",
// "weight", "detail"}...].
void WriteCapabilitiesAndReasons(JsonWriter& w, const proto::Verdict& v);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_VERDICT_JSON_H_

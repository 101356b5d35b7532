// Helpers shared by the integration tests: run the real `dynahug` binary as a
// subprocess, parse the JSON it prints into proto::Trace messages, parse
// generator manifests, and snapshot a directory tree to prove that nothing
// was written to it.
//
// Thread safety: the functions are reentrant; RunCommand forks.
#ifndef DYNAHUG_TESTS_INTEGRATION_INTEGRATION_UTIL_H_
#define DYNAHUG_TESTS_INTEGRATION_INTEGRATION_UTIL_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"
#include "proto/dynahug.pb.h"

namespace dynahug::integration {

struct CommandResult {
  int exit_code = -1;  // -1 when the command did not exit normally
  int signal = 0;      // terminating signal, 0 when it exited
  std::string out;
  std::string err;
  double wall_ms = 0;  // wall time from spawn to reap, milliseconds
};

// Runs argv[0] (a path, no PATH lookup) with `argv`, stdin from /dev/null,
// stdout and stderr captured through files unique to this call (outputs may
// be tens of megabytes). Errors: the program could not be started, or the
// capture files could not be created or read.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv);

// Parses the document `dynahug trace --format json` prints,
// {"traces": [<proto::Trace as protobuf JSON>, ...]}, one Trace per element
// in order. Errors: not JSON, no "traces" list, or an element that is not a
// valid Trace (unknown field, wrong type); the message names the element.
absl::StatusOr<std::vector<proto::Trace>> ParseTraceDocument(
    std::string_view json);

// `binary trace --format json extra... files...`: the traces in file order,
// with the command's exit code and stderr. Errors (naming stderr): the
// command could not run, its output is not a trace document, or it does not
// hold exactly one trace per file.
struct TraceRun {
  std::vector<proto::Trace> traces;
  int exit_code = -1;
  std::string err;
};
absl::StatusOr<TraceRun> TraceFiles(const std::string& binary,
                                    const std::vector<std::string>& extra,
                                    const std::vector<std::string>& files);

// Parses a JSON object (e.g. a corpus manifest) into a Struct.
absl::StatusOr<google::protobuf::Struct> ParseJsonObject(std::string_view json);

// Reads a whole file. Errors name the path and errno.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// One entry of a directory snapshot.
struct FileStamp {
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

// Every path under `root` (recursively, not following symlinks, `root`
// itself included as "") with its stamp; empty when `root` does not exist.
std::map<std::string, FileStamp> SnapshotTree(const std::string& root);

// Human-readable list of paths added or changed between two snapshots
// ("" when equal).
std::string DiffSnapshots(const std::map<std::string, FileStamp>& before,
                          const std::map<std::string, FileStamp>& after);

// Convenience accessors on proto::Event.
std::string ArgValue(const proto::Event& event, std::string_view key);
bool HasArg(const proto::Event& event, std::string_view key);

// The LOG event the child sends last for each loaded target
// ("dynahug.load_result"), or nullptr.
const proto::Event* LoadResultEvent(const proto::Trace& trace,
                                    std::string_view member = "");

// One event on one line: kind, name, arguments (values cut at 80
// characters), "@<pickle_offset>", "in <member>", "[blocked]" when set.
std::string DescribeEvent(const proto::Event& event);

// One line per event (DescribeEvent, PYTHON_CALL and OPCODE events left out),
// then the exit status, for failure messages (at most `max_events`).
std::string DescribeEvents(const proto::Trace& trace, size_t max_events = 60);

// Payload pickles (protocol 0) for tests that write their own inputs.
// The argument of a V (UNICODE) opcode: `text` raw-unicode-escaped (\\ and
// newlines escaped) up to the newline that ends it, "V" included.
std::string PickleUnicode(std::string_view text);
// A pickle calling builtins.exec(source, {}).
std::string ExecPickle(std::string_view source);

}  // namespace dynahug::integration

#endif  // DYNAHUG_TESTS_INTEGRATION_INTEGRATION_UTIL_H_

// Building blocks of FeatureExtractor: how names, values and argument
// summaries of trace events become tokens. Not API; exposed for unit tests.
// All functions are pure; ProvenanceTracker is a small state machine over
// one trace's events (not thread-safe, one per extraction).
#ifndef DYNAHUG_FEATURES_INTERNAL_TRACE_TOKENS_H_
#define DYNAHUG_FEATURES_INTERNAL_TRACE_TOKENS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/dynahug.pb.h"

namespace dynahug::features::internal {

// At most this many hierarchy levels are emitted for one dotted name: the
// first kMaxHierarchyLevels - 1 prefixes and the full name.
inline constexpr int kMaxHierarchyLevels = 4;
// Longest normalised value kept in a token, bytes.
inline constexpr size_t kMaxValueBytes = 48;

// A token and the weight its occurrence carries.
struct WeightedToken {
  std::string token;
  double weight = 1;
  friend bool operator==(const WeightedToken&, const WeightedToken&) = default;
};

// Back-off tokens of a dotted name: `prefix` + each module-path prefix of
// `dotted` ("sklearn", "sklearn.ensemble", "sklearn.ensemble.Forest"), at
// most kMaxHierarchyLevels of them, the last always the full name. Level i
// (0-based) has weight decay^i / sqrt(sum_j decay^(2j)): the weights of one
// name have unit L2 norm whatever its depth, and with decay < 1 most of the
// mass sits on the top-level module, so an unseen leaf under a known package
// moves a vector less than an unseen top-level module. Empty components
// ("a..b") are kept as they are spelled.
std::vector<WeightedToken> HierarchyTokens(std::string_view prefix,
                                           std::string_view dotted,
                                           double decay);

// Type of one argument summary written by the loader (hooks/unpickler.py
// _summary): "str" (or "str.code" / "str.path" / "str.url", see
// ClassifyString), "bytes", "bytearray", "int", "float", "bool", "None",
// "tuple", "list", "dict", "set", "frozenset", "type:<qualname>",
// "function:<qualname>", "<qualname>" for "obj:<qualname>", else "?".
std::string ArgType(std::string_view summary);

// Sub-kind of a string argument: "str.code" when it contains code-like
// fragments ("import ", "exec(", "eval(", "lambda", "__", ";", a newline,
// "os.", "subprocess", "socket", "base64"), else "str.url" when it contains
// "://", else "str.path" when it starts with '/' or "./" or "~/", else "str".
std::string ClassifyString(std::string_view s);

// Normalised value of argument `key` of event `event` for a token, or ""
// to leave the argument out (high-cardinality values: code hashes, raw
// code, addresses of functions, pids, relative paths). Numbers become
// power-of-two buckets ("0", "1", "2^3" for 8..15, "neg"), hex addresses
// "hex", hosts and socket addresses a class ("loopback", "private",
// "public", "name") plus a port class, URLs their scheme, executables
// their basename; other strings have digit runs folded to '#' and are cut
// at kMaxValueBytes.
std::string NormalizeArgValue(std::string_view event, std::string_view key,
                              std::string_view value);

// Power-of-two bucket of a count: "0", "1", "2^1" (2..3), "2^2" (4..7)...
std::string CountBucket(uint64_t n);

// A free-text error or note with digit runs folded to '#' and hex runs
// ("0x1f") to "0x#", cut at kMaxValueBytes.
std::string NormalizeText(std::string_view text);

// Where an event came from.
enum class Provenance {
  kLib,     // outside any pickle opcode, or inside the import machinery
  kPickle,  // while a pickle opcode ran, not attributable to an import
};
std::string_view ProvenanceName(Provenance p);  // "lib" / "pickle"

// Classifies AUDIT and NATIVE events by provenance; feed it every event of
// a trace in order (it also watches GLOBAL and PICKLE_CALL events).
//
// Rule. The loader stamps every audit event raised while an opcode runs
// with that opcode's offset (hooks/unpickler_hooks.h set_offset), whether
// the event comes from the opcode's own call or from an import that
// resolving a global triggered. Events with the same pickle_offset that
// follow each other form one opcode context (a new offset starts a new
// one). An event is kLib when
//   (1) it has no pickle_offset (library code outside the unpickler), or
//   (2) its context is a global resolution: the context began with the
//       "pickle.find_class" audit event (GLOBAL, STACK_GLOBAL, INST) and no
//       PICKLE_CALL has followed (INST's call does). Resolving a global can
//       only import modules and read attributes, so everything it raises
//       is module code run by the import system (e.g. a namedtuple's
//       compile/exec of "<string>" in a module body), or
//   (3) it is an "import" audit event, or
//   (4) an "import" event came earlier in its opcode context and it has
//       the shape of import machinery: "open" for reading, "os.listdir",
//       "os.scandir", "marshal.loads" right after the read of a ".pyc",
//       "exec" of a code object named "<module>" or "compile", each with a
//       file (not "<string>"-like) filename.
// Everything else with a pickle_offset is kPickle: the opcode's callee (or
// code it ran) caused it; "pickle.find_class" itself is kPickle. So
// `builtins.exec("...")` by REDUCE gives compile@pickle and exec@pickle,
// while GLOBAL webbrowser.get gives import/marshal.loads/exec@lib. A nested
// unpickler run by a REDUCE callee (pickle.loads) keeps the outer offset;
// its context began with the PICKLE_CALL, so (2) does not apply to it.
// Limits: the context is inferred from event order, not from stacks; code
// that already runs can fake the shape of (4) for its later events, but its
// first compile/exec/marshal.loads is kPickle; module code imported lazily
// by a callee (not by a global) is kPickle unless it matches (4).
class ProvenanceTracker {
 public:
  // Updates the context with `event` and returns its provenance (events of
  // other kinds get kLib and only update the context).
  Provenance Observe(const proto::Event& event);
  // Name of the last PICKLE_CALL callee in the current opcode context, or
  // "" (e.g. at a GLOBAL opcode).
  const std::string& callee() const { return callee_; }

 private:
  bool in_context_ = false;
  uint64_t offset_ = 0;
  bool import_seen_ = false;
  bool global_resolution_ = false;
  bool last_was_pyc_read_ = false;
  std::string callee_;
};

// Value of argument `key` of `event`, or "" when absent.
std::string_view ArgValue(const proto::Event& event, std::string_view key);

}  // namespace dynahug::features::internal

#endif  // DYNAHUG_FEATURES_INTERNAL_TRACE_TOKENS_H_

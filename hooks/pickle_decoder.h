// Static pickle decoder: reads a pickle stream opcode by opcode without
// running Python, the way pickletools.genops does, plus a light symbolic
// model of the unpickler stack and memo so that STACK_GLOBAL operands and
// joblib array wrappers can be resolved.
//
// Guarantees, for any input bytes: never crashes, never allocates memory in
// proportion to a declared length (only in proportion to bytes actually
// present), runs in time linear in the input, and stops at the first broken
// opcode with the opcodes decoded so far plus a precise error.
#ifndef DYNAHUG_HOOKS_PICKLE_DECODER_H_
#define DYNAHUG_HOOKS_PICKLE_DECODER_H_

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hooks/pickle_opcodes.h"

namespace dynahug::hooks {

// The argument of one opcode, as pickletools.genops reports it.
// Views point into the decoded input: they live as long as the input does.
struct OpArg {
  enum class Kind : uint8_t {
    kNone,     // opcode takes no argument
    kInt,      // int_value (INT, BININT*, LONG1/LONG4 and LONG when they fit,
               // PUT/GET/... indices, PROTO, EXT*, FRAME)
    kBigInt,   // arbitrary-precision int: `bytes` holds little-endian two's
               // complement (LONG1/LONG4) or the decimal text (LONG, INT)
    kFloat,    // float_value (FLOAT, BINFLOAT)
    kBool,     // int_value 0/1 (INT "00"/"01" in protocol 0)
    kText,     // `text`: a Python str argument, UTF-8 (UNICODE, BINUNICODE*,
               // SHORT_BINUNICODE); for protocol-0 UNICODE it is the raw
               // raw-unicode-escape bytes, see `needs_unescape`
    kBytes,    // `bytes`: BINBYTES*, SHORT_BINBYTES, BYTEARRAY8,
               // SHORT_BINSTRING/BINSTRING (pickletools reports these as str
               // decoded latin-1; the raw bytes are given here)
    kQuoted,   // `text`: the raw quoted repr of STRING (protocol 0), quotes
               // included; decode with UnquoteStringArg()
    kGlobal,   // `text` = module, `text2` = name (GLOBAL, INST)
  };
  Kind kind = Kind::kNone;
  bool needs_unescape = false;  // kText from UNICODE (raw-unicode-escape)
  int64_t int_value = 0;
  double float_value = 0;
  std::string_view text;
  std::string_view text2;
  std::span<const uint8_t> bytes;
};

// What an opcode did to the memo.
struct MemoEffect {
  enum class Kind : uint8_t { kNone, kPut, kGet, kMemoize };
  Kind kind = Kind::kNone;
  uint64_t index = 0;  // memo slot written (kPut, kMemoize) or read (kGet)
};

// One decoded opcode.
struct DecodedOp {
  uint64_t offset = 0;  // absolute: base_offset + position in `data`
  Opcode opcode = Opcode::kStop;
  OpArg arg;
  MemoEffect memo;
};

// A global the stream references. GLOBAL and INST are kInline; STACK_GLOBAL
// is kStack when both operands are string literals on the stack, kMemo when
// at least one came through GET/BINGET/LONG_BINGET, kUnknown when either is
// not a known string (module and name are then empty). EXT1/EXT2/EXT4
// (copyreg extension registry) are recorded as kUnknown with an empty module
// and name "ext:<code>".
struct GlobalReference {
  enum class Source : uint8_t { kInline, kStack, kMemo, kUnknown };
  std::string module;  // empty when Source::kUnknown
  std::string name;
  uint64_t offset = 0;  // absolute offset of the GLOBAL/STACK_GLOBAL/INST
  Opcode opcode = Opcode::kGlobal;
  Source source = Source::kInline;
};

// Stable lowercase name of a GlobalReference::Source: "inline", "stack",
// "memo", "unknown" (CLI and proto output).
inline std::string_view SourceName(GlobalReference::Source source) {
  switch (source) {
    case GlobalReference::Source::kInline:
      return "inline";
    case GlobalReference::Source::kStack:
      return "stack";
    case GlobalReference::Source::kMemo:
      return "memo";
    case GlobalReference::Source::kUnknown:
      return "unknown";
  }
  return "unknown";
}

// Array data that a joblib NumpyArrayWrapper placed inline after its BUILD
// opcode; the decoder skips it (or decodes it as a nested pickle for object
// arrays) and resumes the outer stream after it.
struct InlineArray {
  uint64_t offset = 0;  // absolute offset of the first array (or pad) byte
  uint64_t length = 0;  // bytes skipped, including alignment padding
  std::string dtype;    // numpy dtype string, e.g. "<f8", "|O"
  std::vector<uint64_t> shape;
};

struct DecodeError {
  // Complete message, e.g. "pickle: BINUNICODE length 4294967295 at offset
  // 812 runs past end of stream (size 900)".
  std::string message;
  uint64_t offset = 0;  // absolute offset of the opcode that failed
};

struct PickleStats {
  int protocol = 0;  // from PROTO; 0 if absent
  uint64_t opcode_count = 0;
  std::array<uint64_t, 256> histogram{};  // indexed by opcode byte
  uint32_t max_stack_depth = 0;
  uint64_t memo_size = 0;   // entries stored
  uint64_t call_count = 0;  // REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, BUILD
};

// The result of decoding one stream.
struct PickleStream {
  uint64_t offset = 0;  // absolute offset of the first opcode
  uint64_t length = 0;  // bytes consumed (through STOP, or up to the error)
  bool complete = false;  // ended with STOP
  std::optional<DecodeError> error;
  PickleStats stats;
  std::vector<GlobalReference> globals;
  std::vector<InlineArray> arrays;     // joblib inline arrays skipped
  std::vector<PickleStream> nested;    // joblib object arrays (own streams)
  std::vector<DecodedOp> ops;          // only with DecodeOptions::keep_ops
  // With keep_ops: opcodes decoded but not kept in `ops` because of
  // DecodeOptions::max_kept_ops (stats.opcode_count - ops.size()). Always 0
  // without keep_ops.
  uint64_t ops_omitted = 0;
};

struct DecodeOptions {
  // Keep every DecodedOp in PickleStream::ops (for `disasm` and tests).
  bool keep_ops = false;
  // With keep_ops: keep at most this many DecodedOps per stream (each nested
  // stream has its own allowance). The rest of the stream is still decoded
  // the same way and fully reflected in stats, globals, arrays, nested,
  // length, complete and error; only its DecodedOps are not recorded, so
  // memory for them stays at max_kept_ops records however long the stream.
  uint64_t max_kept_ops = std::numeric_limits<uint64_t>::max();
  // Treat joblib.numpy_pickle.NumpyArrayWrapper BUILDs as followed by inline
  // array data (what joblib.load does). On for every caller that decodes a
  // whole file; tests of plain pickles may turn it off.
  bool joblib_arrays = true;
  // Offset of data[0] inside its member; added to every reported offset.
  uint64_t base_offset = 0;
  // Nesting limit for joblib object arrays inside joblib arrays.
  int max_nesting = 4;
};

// Decodes one pickle stream starting at data[0]. Stops after STOP or at the
// first error. `data` may extend past the stream (stacked pickles, trailing
// storage bytes): only `length` bytes are consumed.
// Thread-safe (no shared state). The returned views point into `data`.
PickleStream DecodePickle(std::span<const uint8_t> data,
                          const DecodeOptions& options = {});

// True when `data` plausibly starts a pickle: a known opcode whose
// argument parses (PROTO 0..5, or a protocol-0/1 opcode). Cheap; used by
// container sniffing together with a full decode.
bool LooksLikePickle(std::span<const uint8_t> data);

// Decodes a STRING (protocol 0) argument: strips the quotes and applies
// Python's escape decoding. Returns nullopt when the quoting is invalid.
std::optional<std::string> UnquoteStringArg(std::string_view quoted);

// Decodes a raw-unicode-escape UNICODE argument (OpArg::needs_unescape) to
// UTF-8; lone surrogates are encoded as 3-byte sequences (like Python's
// "surrogatepass"). Returns nullopt for a truncated or out-of-range \u/\U
// escape.
std::optional<std::string> DecodeRawUnicodeEscape(std::string_view raw);

// Renders a little-endian two's complement integer (the `bytes` of a
// LONG1/LONG4 kBigInt) in decimal. Quadratic in the length, so inputs longer
// than `max_bytes` are rendered as "<int of N bytes>" instead.
std::string FormatBigInt(std::span<const uint8_t> le_twos_complement,
                         size_t max_bytes = 4096);

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_PICKLE_DECODER_H_

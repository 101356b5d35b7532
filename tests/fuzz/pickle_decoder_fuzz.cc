// libFuzzer target for the static pickle decoder: every input is decoded
// with and without keep_ops, with and without joblib array handling, and
// with a small max_kept_ops, and a few invariants of the result are checked
// (a violated one aborts).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "hooks/pickle_decoder.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckStream(const dynahug::hooks::PickleStream& s, size_t size,
                 uint64_t base) {
  Check(s.offset == base);
  Check(s.length <= size);
  Check(s.complete != s.error.has_value());
  if (s.error) {
    Check(s.error->message.rfind("pickle: ", 0) == 0);
    Check(s.error->offset >= base && s.error->offset <= base + size);
  }
  uint64_t total = 0;
  for (uint64_t c : s.stats.histogram) total += c;
  Check(total == s.stats.opcode_count);
  for (const auto& op : s.ops) Check(op.offset >= base && op.offset < base + size);
  for (const auto& a : s.arrays) Check(a.offset + a.length <= base + size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  uint64_t opcode_count = 0;
  bool first = true;
  for (bool keep_ops : {false, true}) {
    for (bool joblib : {true, false}) {
      dynahug::hooks::DecodeOptions options;
      options.keep_ops = keep_ops;
      options.joblib_arrays = joblib;
      options.base_offset = joblib ? 0 : 1000;
      const auto s = dynahug::hooks::DecodePickle(bytes, options);
      CheckStream(s, size, options.base_offset);
      if (keep_ops) Check(s.ops.size() == s.stats.opcode_count);
      if (joblib) {
        // keep_ops must not change what is decoded.
        if (first) {
          opcode_count = s.stats.opcode_count;
          first = false;
        } else {
          Check(opcode_count == s.stats.opcode_count);
        }
      }
      for (const auto& op : s.ops) {
        if (op.arg.kind == dynahug::hooks::OpArg::Kind::kBigInt &&
            (op.opcode == dynahug::hooks::Opcode::kLong1 ||
             op.opcode == dynahug::hooks::Opcode::kLong4)) {
          (void)dynahug::hooks::FormatBigInt(op.arg.bytes, 512);
        }
        if (op.arg.kind == dynahug::hooks::OpArg::Kind::kQuoted) {
          Check(dynahug::hooks::UnquoteStringArg(op.arg.text).has_value());
        }
        if (op.arg.needs_unescape) {
          Check(dynahug::hooks::DecodeRawUnicodeEscape(op.arg.text).has_value());
        }
      }
    }
  }
  // max_kept_ops only shortens the listing: everything else is the same as
  // without it, and the kept ops are a prefix of the full listing.
  dynahug::hooks::DecodeOptions options;
  options.keep_ops = true;
  const auto full = dynahug::hooks::DecodePickle(bytes, options);
  options.max_kept_ops = size % 8;
  const auto capped = dynahug::hooks::DecodePickle(bytes, options);
  CheckStream(capped, size, 0);
  Check(capped.ops.size() ==
        std::min<uint64_t>(options.max_kept_ops, full.ops.size()));
  Check(capped.ops_omitted == full.ops.size() - capped.ops.size());
  for (size_t i = 0; i < capped.ops.size(); ++i) {
    Check(capped.ops[i].offset == full.ops[i].offset &&
          capped.ops[i].opcode == full.ops[i].opcode);
  }
  Check(capped.length == full.length && capped.complete == full.complete);
  Check(capped.error.has_value() == full.error.has_value());
  if (full.error) Check(capped.error->message == full.error->message);
  Check(capped.stats.histogram == full.stats.histogram);
  Check(capped.stats.max_stack_depth == full.stats.max_stack_depth);
  Check(capped.stats.memo_size == full.stats.memo_size);
  Check(capped.globals.size() == full.globals.size());
  Check(capped.nested.size() == full.nested.size());
  (void)dynahug::hooks::LooksLikePickle(bytes);
  return 0;
}

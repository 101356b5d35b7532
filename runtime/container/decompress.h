// Single-stream decompression into owned buffers, bounded: never produces
// more than `max_output` bytes, and never allocates in proportion to a size
// declared by the input. Thread-safe (no shared state).
#ifndef DYNAHUG_RUNTIME_CONTAINER_DECOMPRESS_H_
#define DYNAHUG_RUNTIME_CONTAINER_DECOMPRESS_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace dynahug::runtime {

enum class Codec {
  kDeflateRaw,  // zip method 8
  kZlib,        // RFC 1950 (joblib compress=('zlib', n))
  kGzip,        // RFC 1952, concatenated members accepted
  kBzip2,       // concatenated streams accepted
  kXz,          // concatenated streams accepted
  kLzmaAlone,   // .lzma (lzma_alone) as written by Python's lzma.FORMAT_ALONE
};

// "deflate", "zlib", "gzip", "bzip2", "xz", "lzma".
std::string_view CodecName(Codec codec);

struct Decompressed {
  std::vector<uint8_t> data;
  // Input bytes consumed (through the end of the last stream); trailing
  // input after that is not an error and is left to the caller.
  uint64_t consumed = 0;
  // The stream ended properly (end marker seen, checksums verified).
  bool complete = false;
  // Output stopped at `max_output` with more to come (only with
  // `stop_at_limit`).
  bool hit_limit = false;
};

// Decompresses `input`. When the output would exceed `max_output`:
// with `stop_at_limit` returns the first `max_output` bytes and hit_limit;
// otherwise fails with ResourceExhausted "would expand past <max_output>
// bytes". `size_hint` (0 = unknown) only sizes the first allocation, capped.
// Errors (DataLoss): corrupt data ("gzip: corrupt data at input offset 12:
// invalid block type") and truncated input ("xz: input truncated after 100
// bytes (2048 bytes produced)"); with `stop_at_limit`, truncation returns the
// bytes produced so far with complete == false instead.
absl::StatusOr<Decompressed> Decompress(Codec codec,
                                        std::span<const uint8_t> input,
                                        uint64_t max_output,
                                        bool stop_at_limit,
                                        uint64_t size_hint = 0);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_DECOMPRESS_H_

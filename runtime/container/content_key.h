// Content identity of a model file that costs what its analysis costs.
//
// A whole-file SHA-256 reads every byte, tensor storages included (a 10 GB
// checkpoint costs a 10 GB read). The content key instead covers every byte
// the static analysis read, plus the position and length of every byte
// range it skipped (tensor storages, NumPy array data): a file changed
// anywhere outside its storages (pickles, zip directory and local headers,
// CRCs, sizes, any padding) or resized gets a different key. A storage's
// bytes can change without changing the key: they are loaded as raw bytes,
// no code runs on them, and the verdict does not depend on them. Use
// FileSha256 when the exact bytes matter (e.g. to pin what is loaded).
//
// When nothing was skipped the key is the file's plain SHA-256.
//
// Pure functions; thread-safe.
#ifndef DYNAHUG_RUNTIME_CONTAINER_CONTENT_KEY_H_
#define DYNAHUG_RUNTIME_CONTAINER_CONTENT_KEY_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dynahug::runtime {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ByteRange&) const = default;
};

// `ranges` sorted, with overlapping and adjacent ranges merged, empty ones
// dropped and everything clipped to [0, size).
std::vector<ByteRange> NormalizeRanges(std::vector<ByteRange> ranges,
                                       uint64_t size);

// Lowercase hex SHA-256 of
//   "dynahug content key 1\n" || u64le(data.size()) || u64le(n)
//   || for each unread range: u64le(offset) || u64le(length)
//   || the bytes of `data` outside the unread ranges, in file order
// (an injective encoding: the ranges fix where each read byte came from);
// with no unread ranges, the SHA-256 of `data`. `unread` must be normalized
// (NormalizeRanges). Touches only the bytes outside `unread`.
std::string ContentKey(std::span<const uint8_t> data,
                       const std::vector<ByteRange>& unread);

// Lowercase hex SHA-256 of the file at `path`, read sequentially in 1 MiB
// pread()s (not mapped, so the process's resident memory does not grow with
// the file). Errors name the path, the call and errno.
absl::StatusOr<std::string> FileSha256(const std::string& path);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_CONTENT_KEY_H_

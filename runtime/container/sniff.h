// Format sniffing from magic bytes. Only formats with a signature are
// recognised here; pickles (no magic) are recognised by the caller with a
// trial decode. Thread-safe (no shared state).
#ifndef DYNAHUG_RUNTIME_CONTAINER_SNIFF_H_
#define DYNAHUG_RUNTIME_CONTAINER_SNIFF_H_

#include <cstdint>
#include <span>
#include <string>

#include "runtime/container/format.h"

namespace dynahug::runtime {

// How many leading bytes SniffMagic looks at (the tar magic ends at 263,
// the tar header at 512).
inline constexpr size_t kSniffBytes = 512;

struct Sniffed {
  // kZip, kSevenZip, kTar, kGzip, kBzip2, kXz, kLzma, kZlib, kNumpyNpy, or
  // kData when no signature matched.
  Format format = Format::kData;
  // Where the compressed payload starts (non-zero for joblib's old "ZF"
  // files: "ZF" + 19-character hex length, optionally one space).
  uint64_t payload_offset = 0;
  bool joblib_zfile = false;
};

// Looks at the first bytes of `data` (all of it may be given).
Sniffed SniffMagic(std::span<const uint8_t> data);

// True when `data` ends with a zip end-of-central-directory record within
// the maximum comment size (zips with prefix data).
bool HasZipEndRecord(std::span<const uint8_t> data);

// True when the 512-byte block at the start of `data` is a tar header with
// a valid checksum (ustar, GNU or v7).
bool IsTarHeader(std::span<const uint8_t> data);

// "3f 2a 00 ..." of the first `n` bytes, for error messages.
std::string HexPrefix(std::span<const uint8_t> data, size_t n = 16);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_SNIFF_H_

// NumPy .npy header parsing (format versions 1.0, 2.0 and 3.0), without
// evaluating anything: the header dict is read by a small parser for the
// Python literal subset numpy writes (dicts, tuples, lists, strings, ints,
// True/False/None). Thread-safe (no shared state).
#ifndef DYNAHUG_RUNTIME_CONTAINER_NPY_HEADER_H_
#define DYNAHUG_RUNTIME_CONTAINER_NPY_HEADER_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dynahug::runtime {

struct NpyHeader {
  int major = 0;
  int minor = 0;
  // The 'descr' value: a dtype string ("<f8", "|O") or, for structured
  // dtypes, the repr-like text of the list.
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  // The dtype holds Python objects: the array data is a pickle.
  bool has_object = false;
  // Offset of the first data byte (end of header and padding).
  uint64_t data_offset = 0;
};

// True when `data` starts with the npy magic "\x93NUMPY".
bool HasNpyMagic(std::span<const uint8_t> data);

// Parses the header at the start of `data`. Errors: OutOfRange when `data`
// ends before the header does ("npy: header length 70000 at offset 8 runs
// past end of data (size 100)") -- callers holding only a prefix may retry
// with more bytes; InvalidArgument for anything malformed ("npy:
// unsupported format version 9.0", "npy: header dict: expected ':' at
// header offset 17", "npy: header has no 'descr' key").
absl::StatusOr<NpyHeader> ParseNpyHeader(std::span<const uint8_t> data);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_NPY_HEADER_H_

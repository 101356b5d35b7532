// Files a scan does not need to load: formats without a code-execution path
// (safetensors, GGUF, JSON, plain text) and formats dynahug does not
// analyse (ONNX, HDF5/Keras), recognised from a file's first and last bytes.
//
// The rule mirrors the container reader's top-level sniffing
// (container.cc): a file that starts with a known container magic, plausibly
// starts a pickle (hooks::LooksLikePickle) or ends with a zip directory is
// always analysed, whatever its name; only what the real loaders could not
// unpickle is classified here. A name is used only to label a file that is
// already known not to hold a pickle (".onnx").
//
//   absl::StatusOr<InertCheck> c = CheckInertFile("model.safetensors");
//   if (c.ok() && c->kind == InertCheck::kSkip) report_skipped(c->reason);
//
// Thread safety: pure functions; CheckInertFile only reads the file.
#ifndef DYNAHUG_RUNTIME_CONTAINER_INERT_FORMATS_H_
#define DYNAHUG_RUNTIME_CONTAINER_INERT_FORMATS_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace dynahug::runtime {

struct InertCheck {
  enum Kind {
    // May hold a pickle or a container of pickles: load it in the sandbox.
    kAnalyse,
    // A format with no code-execution path (or one dynahug does not
    // analyse): `reason` says which and why.
    kSkip,
    // Claims an inert format but is malformed (a safetensors header whose
    // offsets leave the file): `reason` says what is wrong.
    kInvalid,
  };
  Kind kind = kAnalyse;
  std::string reason;
  // For kSkip: true when the format has no code-execution path (safetensors,
  // GGUF, JSON, text, an empty file); false when dynahug merely does not
  // analyse it (ONNX, HDF5, unknown data) and cannot vouch for it.
  bool no_code_path = false;
};

// Bytes of the head and of the tail the classification reads.
inline constexpr size_t kInertHeadBytes = 64 * 1024;
inline constexpr size_t kInertTailBytes = 65535 + 22;  // a zip end record
// Largest safetensors header accepted (the format's own limit is 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeader = 100 * 1000 * 1000;

// Classifies a file of `size` bytes from its first bytes `head` and last
// bytes `tail` (they may overlap for small files). `header` holds the whole
// safetensors JSON header when `head` is too short for it (else empty).
InertCheck ClassifyInert(std::span<const uint8_t> head,
                         std::span<const uint8_t> tail, uint64_t size,
                         std::string_view name,
                         std::span<const uint8_t> header = {});

// Validates a safetensors JSON header for a file of `size` bytes whose
// header is `header_len` bytes long: an object of tensors, each with a
// string dtype, an integer shape and data_offsets inside the data area.
// Returns the number of tensors, or InvalidArgument naming the problem.
absl::StatusOr<uint64_t> ValidateSafetensorsHeader(std::string_view header,
                                                   uint64_t size);

// Reads what ClassifyInert needs from `path` (never the whole file) and
// classifies it. Errors: the file cannot be opened or read (errno text).
absl::StatusOr<InertCheck> CheckInertFile(const std::string& path);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_INERT_FORMATS_H_

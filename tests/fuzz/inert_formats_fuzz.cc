// libFuzzer target: the scan's inert-format classification (safetensors
// header JSON reader, text/UTF-8 check, magic sniffing) on arbitrary bytes.
// Seeds: corpus/inert_formats/.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "runtime/container/inert_formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using dynahug::runtime::ClassifyInert;
  const std::span<const uint8_t> bytes(data, size);
  // As a whole file, and as the head of a larger one.
  (void)ClassifyInert(bytes, bytes, size, "fuzz.safetensors");
  (void)ClassifyInert(bytes, bytes, uint64_t{size} + 4096, "fuzz.onnx");
  // The header reader alone, with the bytes as a header of a file that has
  // a few data bytes after it.
  (void)dynahug::runtime::ValidateSafetensorsHeader(
      std::string_view(reinterpret_cast<const char*>(data), size),
      uint64_t{size} + 8 + 64);
  return 0;
}

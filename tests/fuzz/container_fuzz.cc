// libFuzzer target: container sniffing and unpacking on arbitrary bytes,
// with small limits so that bombs end fast. Seeds: corpus/container/.
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/container/container.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dynahug::runtime::AnalyzeOptions options;
  options.limits.max_depth = 4;
  options.limits.max_entries = 256;
  options.limits.max_expanded_bytes = 8 << 20;
  options.limits.max_ratio = 200;
  auto file = dynahug::runtime::AnalyzeBytes(
      std::span<const uint8_t>(data, size), "fuzz-input", options);
  if (file.ok()) {
    (void)file->Errors();
    (void)file->sha256();
  }
  return 0;
}

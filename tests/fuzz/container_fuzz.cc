// libFuzzer target: container sniffing and unpacking on arbitrary bytes,
// with small limits so that bombs end fast. Seeds: corpus/container/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
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
    // Unread ranges: sorted, disjoint, non-empty, inside the input; the key
    // is always a SHA-256, the plain one when nothing was skipped.
    uint64_t end = 0;
    for (const dynahug::runtime::ByteRange& r : file->unread()) {
      if (r.length == 0 || r.offset < end || r.offset + r.length > size) {
        std::abort();
      }
      end = r.offset + r.length + 1;
    }
    if (file->content_key().size() != 64) std::abort();
    if (file->unread().empty() != (file->sha256() == file->content_key())) {
      std::abort();
    }
  }
  return 0;
}

// Fuzzes the parent's parser of the child -> parent event stream: the bytes
// come from a sandboxed child that may run attacker code. The first input
// byte picks the chunk size, so that incremental parsing across arbitrary
// read boundaries is exercised; small limits exercise every limit path.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "sandbox/event_channel.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  ++data;
  --size;
  dynahug::sandbox::EventChannelLimits limits;
  limits.max_message_bytes = 4096;
  limits.max_total_bytes = 1 << 16;
  limits.max_events = 64;
  dynahug::sandbox::EventReader reader(limits);
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (size_t pos = 0; pos < bytes.size(); pos += chunk) {
    reader.Feed(bytes.substr(pos, chunk));
  }
  reader.Finish();
  const auto& stats = reader.stats();
  if (reader.events().size() > limits.max_events) abort();
  if (stats.bytes != size) abort();
  if (stats.torn_bytes > size) abort();
  if (!stats.error.empty() && stats.torn_bytes != 0) abort();
  return 0;
}

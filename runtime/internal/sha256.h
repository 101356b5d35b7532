// SHA-256 (FIPS 180-4). Uses the x86 SHA extensions when the CPU has them,
// a portable implementation otherwise. Thread-safe: no shared state.
#ifndef DYNAHUG_RUNTIME_INTERNAL_SHA256_H_
#define DYNAHUG_RUNTIME_INTERNAL_SHA256_H_

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace dynahug::runtime::internal {

class Sha256 {
 public:
  // `allow_sha_ni` = false forces the portable code (tests).
  explicit Sha256(bool allow_sha_ni = true);
  // Feeds more bytes; may be called any number of times before Finish().
  void Update(std::span<const uint8_t> data);
  // Returns the digest. The object must not be used afterwards.
  std::array<uint8_t, 32> Finish();

 private:
  void Blocks(const uint8_t* data, size_t count);
  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
  bool use_sha_ni_;
};

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::span<const uint8_t> data);

// True when the SHA-NI code path is used on this CPU (for tests/benchmarks).
bool Sha256UsesShaNi();

}  // namespace dynahug::runtime::internal

#endif  // DYNAHUG_RUNTIME_INTERNAL_SHA256_H_

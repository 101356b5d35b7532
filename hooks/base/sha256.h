// SHA-256 digests as lowercase hex (OpenSSL libcrypto). Pure and thread-safe.
#ifndef DYNAHUG_HOOKS_BASE_SHA256_H_
#define DYNAHUG_HOOKS_BASE_SHA256_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace dynahug::hooks {

// Lowercase hex SHA-256 of `data` (64 characters).
std::string Sha256Hex(std::span<const uint8_t> data);

// First 16 lowercase hex digits of SHA-256(data): how code, executables and
// native code are named in events.
std::string Sha256Prefix(std::string_view data);

// Incremental SHA-256: Update() any number of times, then Hex() once.
// Move-only; thread-compatible.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::span<const uint8_t> data);
  void Update(std::string_view data);
  // Lowercase hex digest of everything passed to Update(); ends the hash.
  std::string Hex();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_BASE_SHA256_H_

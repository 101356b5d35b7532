// SHA-256 digests as lowercase hex (OpenSSL libcrypto). Pure and thread-safe.
#ifndef DYNAHUG_HOOKS_BASE_SHA256_H_
#define DYNAHUG_HOOKS_BASE_SHA256_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace dynahug::hooks {

// Lowercase hex SHA-256 of `data` (64 characters).
std::string Sha256Hex(std::span<const uint8_t> data);

// First 16 lowercase hex digits of SHA-256(data): how code, executables and
// native code are named in events.
std::string Sha256Prefix(std::string_view data);

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_BASE_SHA256_H_

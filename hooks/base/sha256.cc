#include "hooks/base/sha256.h"

#include <openssl/sha.h>

namespace dynahug::hooks {

std::string Sha256Hex(std::span<const uint8_t> data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(data.data(), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * sizeof(digest), '\0');
  for (size_t i = 0; i < sizeof(digest); ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 15];
  }
  return hex;
}

std::string Sha256Prefix(std::string_view data) {
  return Sha256Hex({reinterpret_cast<const uint8_t*>(data.data()), data.size()})
      .substr(0, 16);
}

}  // namespace dynahug::hooks

#include "hooks/base/sha256.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

namespace dynahug::hooks {

namespace {

std::string ToHex(const unsigned char (&digest)[SHA256_DIGEST_LENGTH]) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * sizeof(digest), '\0');
  for (size_t i = 0; i < sizeof(digest); ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 15];
  }
  return hex;
}

}  // namespace

std::string Sha256Hex(std::span<const uint8_t> data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(data.data(), data.size(), digest);
  return ToHex(digest);
}

std::string Sha256Prefix(std::string_view data) {
  return Sha256Hex({reinterpret_cast<const uint8_t*>(data.data()), data.size()})
      .substr(0, 16);
}

struct Sha256::State {
  State() : ctx(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
  ~State() { EVP_MD_CTX_free(ctx); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  EVP_MD_CTX* ctx;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(std::span<const uint8_t> data) {
  EVP_DigestUpdate(state_->ctx, data.data(), data.size());
}

void Sha256::Update(std::string_view data) {
  EVP_DigestUpdate(state_->ctx, data.data(), data.size());
}

std::string Sha256::Hex() {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  unsigned int length = 0;
  EVP_DigestFinal_ex(state_->ctx, digest, &length);
  return ToHex(digest);
}

}  // namespace dynahug::hooks

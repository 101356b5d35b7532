#include "hooks/base/sha256.h"

#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace dynahug::hooks {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Vector {
  std::string input;
  std::string digest;
};

// FIPS 180-4 / NIST CAVP vectors.
TEST(Sha256Test, KnownVectors) {
  const Vector kVectors[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc",
       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {std::string(1000000, 'a'),
       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (const Vector& v : kVectors) {
    EXPECT_EQ(Sha256Hex(Bytes(v.input)), v.digest) << v.input.size();
  }
}

// Lengths around the padding boundary against Python's hashlib.
TEST(Sha256Test, PaddingBoundaries) {
  const std::pair<size_t, std::string> kCases[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
  };
  for (const auto& [n, digest] : kCases) {
    EXPECT_EQ(Sha256Hex(Bytes(std::string(n, 'a'))), digest) << n;
  }
}

TEST(Sha256Test, PrefixIsTheFirstSixteenHexDigits) {
  EXPECT_EQ(Sha256Prefix(""), "e3b0c44298fc1c14");
  EXPECT_EQ(Sha256Prefix("abc"), "ba7816bf8f01cfea");
  EXPECT_EQ(Sha256Prefix(std::string("a\0b", 3)),
            Sha256Hex(Bytes(std::string("a\0b", 3))).substr(0, 16));
}

}  // namespace
}  // namespace dynahug::hooks

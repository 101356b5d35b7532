#include "runtime/internal/sha256.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace dynahug::runtime::internal {
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
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
       "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {std::string(1000000, 'a'),
       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (const Vector& v : kVectors) {
    EXPECT_EQ(Sha256Hex(Bytes(v.input)), v.digest) << v.input.size();
  }
}

// Every split of the input into two Update calls gives the same digest,
// including splits at and around block boundaries.
TEST(Sha256Test, IncrementalMatchesOneShot) {
  std::string data;
  for (int i = 0; i < 300; ++i) data += static_cast<char>(i * 7 + 3);
  std::string expected = Sha256Hex(Bytes(data));
  for (size_t split = 0; split <= data.size(); ++split) {
    Sha256 h;
    h.Update(Bytes(data.substr(0, split)));
    h.Update(Bytes(data.substr(split)));
    auto d = h.Finish();
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t b : d) {
      hex += kHex[b >> 4];
      hex += kHex[b & 15];
    }
    ASSERT_EQ(hex, expected) << "split " << split;
  }
}

// The portable code and the SHA-NI code (when the CPU has it) agree on
// inputs of every length up to a few blocks.
TEST(Sha256Test, PortableMatchesAccelerated) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>(i * 31 + 7);
  for (size_t n = 0; n <= data.size(); n += 13) {
    Sha256 fast(true), slow(false);
    fast.Update(Bytes(data.substr(0, n)));
    slow.Update(Bytes(data.substr(0, n)));
    ASSERT_EQ(fast.Finish(), slow.Finish()) << n;
  }
  Sha256 slow(false);
  slow.Update(Bytes("abc"));
  auto d = slow.Finish();
  EXPECT_EQ(d[0], 0xba);
  EXPECT_EQ(d[31], 0xad);
}

// Lengths around the padding boundary (55, 56, 63, 64, 65 bytes) against
// digests computed with Python's hashlib.
TEST(Sha256Test, PaddingBoundaries) {
  const std::pair<size_t, std::string> kCases[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
  };
  for (const auto& [n, digest] : kCases) {
    EXPECT_EQ(Sha256Hex(Bytes(std::string(n, 'a'))), digest) << n;
  }
}

}  // namespace
}  // namespace dynahug::runtime::internal

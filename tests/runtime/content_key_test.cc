#include "runtime/container/content_key.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hooks/base/sha256.h"

namespace dynahug::runtime {
namespace {

std::vector<uint8_t> Bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + 3);
  return v;
}

TEST(NormalizeRangesTest, SortsMergesClipsAndDropsEmpty) {
  const std::vector<ByteRange> got = NormalizeRanges(
      {{50, 10}, {0, 5}, {5, 5}, {20, 0}, {55, 20}, {90, 100}, {200, 4}}, 100);
  const std::vector<ByteRange> want = {{0, 10}, {50, 25}, {90, 10}};
  EXPECT_EQ(got, want);
  EXPECT_TRUE(NormalizeRanges({}, 10).empty());
}

TEST(ContentKeyTest, WithNothingUnreadIsThePlainSha256) {
  const std::vector<uint8_t> data = Bytes(5000);
  EXPECT_EQ(ContentKey(data, {}), hooks::Sha256Hex(data));
}

TEST(ContentKeyTest, IgnoresUnreadBytesOnly) {
  const std::vector<uint8_t> data = Bytes(5000);
  const std::vector<ByteRange> unread = {{1000, 2000}};
  const std::string key = ContentKey(data, unread);
  EXPECT_NE(key, hooks::Sha256Hex(data));

  std::vector<uint8_t> storage_changed = data;
  for (size_t i = 1000; i < 3000; ++i) storage_changed[i] ^= 0xFF;
  EXPECT_EQ(ContentKey(storage_changed, unread), key);

  for (size_t at : {0u, 999u, 3000u, 4999u}) {
    std::vector<uint8_t> changed = data;
    changed[at] ^= 1;
    EXPECT_NE(ContentKey(changed, unread), key) << "byte " << at;
  }
  // Where the storage lies and how big the file is are part of the key.
  EXPECT_NE(ContentKey(data, {{1001, 2000}}), key);
  EXPECT_NE(ContentKey(data, {{1000, 1999}}), key);
  std::vector<uint8_t> longer = data;
  longer.push_back(0);
  EXPECT_NE(ContentKey(longer, unread), key);
}

TEST(ContentKeyTest, SameReadBytesAtOtherPlacesDiffer) {
  // "ab" + [unread 2] + "cd" vs "abc" + [unread 2] + "d": the read bytes
  // concatenate to the same string; the ranges tell them apart.
  const std::vector<uint8_t> a = {'a', 'b', 0, 0, 'c', 'd'};
  const std::vector<uint8_t> b = {'a', 'b', 'c', 0, 0, 'd'};
  EXPECT_NE(ContentKey(a, {{2, 2}}), ContentKey(b, {{3, 2}}));
}

TEST(FileSha256Test, MatchesTheBytesAndNamesAMissingFile) {
  const std::string path = ::testing::TempDir() + "/content_key_test.bin";
  const std::vector<uint8_t> data = Bytes(3 << 20);  // spans 1 MiB reads
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
  }
  absl::StatusOr<std::string> sha = FileSha256(path);
  ASSERT_TRUE(sha.ok()) << sha.status();
  EXPECT_EQ(*sha, hooks::Sha256Hex(data));
  unlink(path.c_str());
  absl::StatusOr<std::string> missing = FileSha256(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
  EXPECT_NE(missing.status().message().find("No such file"), std::string::npos);
}

}  // namespace
}  // namespace dynahug::runtime

#include "runtime/container/decompress.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/runtime/compress_util.h"

namespace dynahug::runtime {
namespace {

using testing::Compress;

const Codec kCodecs[] = {Codec::kDeflateRaw, Codec::kZlib, Codec::kGzip,
                         Codec::kBzip2, Codec::kXz, Codec::kLzmaAlone};

std::string Payload() {
  std::string s;
  for (int i = 0; i < 200000; ++i) s += static_cast<char>('a' + (i * i) % 7);
  return s;
}

std::string AsString(const std::vector<uint8_t>& v) {
  return std::string(v.begin(), v.end());
}

TEST(DecompressTest, RoundTripsEveryCodec) {
  std::string payload = Payload();
  for (Codec codec : kCodecs) {
    auto packed = Compress(codec, payload);
    auto d = Decompress(codec, packed, 1 << 30, false);
    ASSERT_TRUE(d.ok()) << CodecName(codec) << ": " << d.status();
    EXPECT_TRUE(d->complete) << CodecName(codec);
    EXPECT_FALSE(d->hit_limit);
    EXPECT_EQ(d->consumed, packed.size()) << CodecName(codec);
    EXPECT_EQ(AsString(d->data), payload) << CodecName(codec);
  }
}

TEST(DecompressTest, OverLimitIsResourceExhausted) {
  std::string payload = Payload();
  for (Codec codec : kCodecs) {
    auto packed = Compress(codec, payload);
    auto d = Decompress(codec, packed, 1000, false);
    ASSERT_FALSE(d.ok()) << CodecName(codec);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(d.status().message().find("would expand past 1000 bytes"),
              std::string::npos)
        << d.status();
  }
}

TEST(DecompressTest, PrefixReadStopsAtLimit) {
  std::string payload = Payload();
  for (Codec codec : kCodecs) {
    auto packed = Compress(codec, payload);
    auto d = Decompress(codec, packed, 4096, true);
    ASSERT_TRUE(d.ok()) << CodecName(codec) << ": " << d.status();
    EXPECT_TRUE(d->hit_limit) << CodecName(codec);
    EXPECT_FALSE(d->complete);
    EXPECT_EQ(AsString(d->data), payload.substr(0, 4096)) << CodecName(codec);
  }
}

TEST(DecompressTest, ExactLimitIsComplete) {
  std::string payload = Payload();
  for (Codec codec : kCodecs) {
    auto packed = Compress(codec, payload);
    auto d = Decompress(codec, packed, payload.size(), false);
    ASSERT_TRUE(d.ok()) << CodecName(codec) << ": " << d.status();
    EXPECT_TRUE(d->complete) << CodecName(codec);
  }
}

TEST(DecompressTest, TruncatedInputIsDataLoss) {
  std::string payload = Payload();
  for (Codec codec : kCodecs) {
    auto packed = Compress(codec, payload);
    packed.resize(packed.size() / 2);
    auto d = Decompress(codec, packed, 1 << 30, false);
    ASSERT_FALSE(d.ok()) << CodecName(codec);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(d.status().message().find("truncated"), std::string::npos)
        << d.status();
    // As a prefix read, truncation returns what was produced.
    auto p = Decompress(codec, packed, 1 << 30, true);
    ASSERT_TRUE(p.ok()) << CodecName(codec) << ": " << p.status();
    EXPECT_FALSE(p->complete);
    EXPECT_EQ(AsString(p->data), payload.substr(0, p->data.size()));
  }
}

// Raw deflate has no checksum (zip entries are checked by CRC instead).
TEST(DecompressTest, CorruptInputIsDataLossWithOffset) {
  std::string payload = Payload();
  for (Codec codec : kCodecs) {
    if (codec == Codec::kDeflateRaw) continue;
    auto packed = Compress(codec, payload);
    // Damage the middle of the stream (headers stay intact).
    for (size_t i = packed.size() / 3; i < packed.size() / 3 + 64; ++i) {
      packed[i] ^= 0x5a;
    }
    auto d = Decompress(codec, packed, 1 << 30, false);
    ASSERT_FALSE(d.ok()) << CodecName(codec);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  }
}

TEST(DecompressTest, GarbageHeaderIsError) {
  const std::vector<uint8_t> garbage(100, 0xee);
  for (Codec codec : kCodecs) {
    if (codec == Codec::kDeflateRaw) continue;  // no header to check
    auto d = Decompress(codec, garbage, 1 << 20, false);
    EXPECT_FALSE(d.ok()) << CodecName(codec);
  }
}

TEST(DecompressTest, TrailingDataIsLeftToCaller) {
  std::string payload = "hello world";
  for (Codec codec : {Codec::kZlib, Codec::kXz, Codec::kLzmaAlone}) {
    auto packed = Compress(codec, payload);
    size_t n = packed.size();
    packed.insert(packed.end(), {'J', 'U', 'N', 'K'});
    auto d = Decompress(codec, packed, 1 << 20, false);
    ASSERT_TRUE(d.ok()) << CodecName(codec) << ": " << d.status();
    EXPECT_EQ(AsString(d->data), payload);
    EXPECT_EQ(d->consumed, n) << CodecName(codec);
  }
}

TEST(DecompressTest, ConcatenatedStreams) {
  for (Codec codec : {Codec::kGzip, Codec::kBzip2, Codec::kXz}) {
    auto a = Compress(codec, "first,");
    auto b = Compress(codec, "second");
    a.insert(a.end(), b.begin(), b.end());
    auto d = Decompress(codec, a, 1 << 20, false);
    ASSERT_TRUE(d.ok()) << CodecName(codec) << ": " << d.status();
    EXPECT_EQ(AsString(d->data), "first,second") << CodecName(codec);
  }
}

TEST(DecompressTest, EmptyInputIsTruncated) {
  for (Codec codec : kCodecs) {
    auto d = Decompress(codec, {}, 1 << 20, false);
    EXPECT_FALSE(d.ok()) << CodecName(codec);
  }
}

}  // namespace
}  // namespace dynahug::runtime

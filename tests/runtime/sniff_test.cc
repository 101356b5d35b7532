#include "runtime/container/sniff.h"

#include <string>

#include "gtest/gtest.h"

namespace dynahug::runtime {
namespace {

std::vector<uint8_t> Bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::vector<uint8_t> TarHeader(const std::string& name) {
  std::vector<uint8_t> h(512, 0);
  std::copy(name.begin(), name.end(), h.begin());
  std::string size = "00000000012";
  std::copy(size.begin(), size.end(), h.begin() + 124);
  std::string magic = "ustar";
  std::copy(magic.begin(), magic.end(), h.begin() + 257);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
  char buf[8];
  snprintf(buf, sizeof(buf), "%06o", sum);
  std::copy(buf, buf + 7, h.begin() + 148);
  return h;
}

TEST(SniffTest, Magics) {
  struct Case {
    std::vector<uint8_t> data;
    Format format;
  };
  std::string lzma_header("\x5d\x00\x00\x80\x00\xff\xff\xff\xff\xff\xff\xff\xff", 13);
  const Case cases[] = {
      {Bytes("PK\x03\x04rest"), Format::kZip},
      {Bytes(std::string("PK\x05\x06", 4) + std::string(18, '\0')), Format::kZip},
      {Bytes("7z\xBC\xAF\x27\x1C..."), Format::kSevenZip},
      {Bytes("\x1f\x8b\x08\x00"), Format::kGzip},
      {Bytes("BZh91AY&SY"), Format::kBzip2},
      {Bytes("BZh0"), Format::kData},
      {Bytes(std::string("\xFD" "7zXZ\x00\x00", 7)), Format::kXz},
      {Bytes("\x93NUMPY\x01\x00"), Format::kNumpyNpy},
      {Bytes(lzma_header), Format::kLzma},
      {Bytes("\x78\x9c\x01\x02"), Format::kZlib},
      {Bytes("\x78\x9d\x01\x02"), Format::kData},  // bad zlib check bits
      {TarHeader("model/data.pkl"), Format::kTar},
      {Bytes("\x80\x04\x95"), Format::kData},  // pickles have no magic
      {Bytes(""), Format::kData},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(SniffMagic(c.data).format, c.format)
        << HexPrefix(c.data) << " -> "
        << static_cast<int>(SniffMagic(c.data).format);
  }
}

TEST(SniffTest, JoblibZFile) {
  // "ZF" + hex(length).ljust(19), optionally one more space, then zlib.
  std::string header = "ZF" + std::string("0x10") + std::string(15, ' ');
  auto s = SniffMagic(Bytes(header + "x\x9c..."));
  EXPECT_EQ(s.format, Format::kZlib);
  EXPECT_TRUE(s.joblib_zfile);
  EXPECT_EQ(s.payload_offset, 21u);
  s = SniffMagic(Bytes(header + " x\x9c..."));
  EXPECT_EQ(s.payload_offset, 22u);
}

TEST(SniffTest, TarChecksumMustMatch) {
  auto h = TarHeader("x");
  EXPECT_TRUE(IsTarHeader(h));
  h[0] = 'y';
  EXPECT_FALSE(IsTarHeader(h));
  EXPECT_FALSE(IsTarHeader(std::vector<uint8_t>(512, 0)));
  EXPECT_FALSE(IsTarHeader(std::vector<uint8_t>(100, 0)));
}

TEST(SniffTest, ZipEndRecord) {
  std::string eocd("PK\x05\x06", 4);
  eocd += std::string(18, '\0');
  EXPECT_TRUE(HasZipEndRecord(Bytes("prefix" + eocd)));
  EXPECT_TRUE(HasZipEndRecord(Bytes(eocd + "a comment")));
  EXPECT_FALSE(HasZipEndRecord(Bytes(eocd + std::string(70000, 'c'))));
  EXPECT_FALSE(HasZipEndRecord(Bytes("short")));
}

TEST(SniffTest, HexPrefix) {
  EXPECT_EQ(HexPrefix(Bytes("\x01\xab")), "01 ab");
  EXPECT_EQ(HexPrefix(Bytes("abc"), 2), "61 62 ...");
  EXPECT_EQ(HexPrefix({}), "(none)");
}

}  // namespace
}  // namespace dynahug::runtime

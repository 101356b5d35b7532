#include "runtime/container/sniff.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/container/npy_header.h"

namespace dynahug::runtime {
namespace {

bool StartsWith(std::span<const uint8_t> data, std::string_view magic) {
  return data.size() >= magic.size() &&
         std::memcmp(data.data(), magic.data(), magic.size()) == 0;
}

uint64_t ParseOctal(std::span<const uint8_t> field, bool* ok) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < field.size() && field[i] == ' ') ++i;
  size_t digits = 0;
  for (; i < field.size() && field[i] >= '0' && field[i] <= '7'; ++i) {
    v = v * 8 + (field[i] - '0');
    ++digits;
  }
  for (; i < field.size(); ++i) {
    if (field[i] != ' ' && field[i] != 0) {
      *ok = false;
      return 0;
    }
  }
  *ok = digits > 0;
  return v;
}

}  // namespace

bool IsTarHeader(std::span<const uint8_t> data) {
  if (data.size() < 512) return false;
  bool ok = false;
  uint64_t stored = ParseOctal(data.subspan(148, 8), &ok);
  if (!ok) return false;
  uint64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < 512; ++i) {
    uint8_t b = (i >= 148 && i < 156) ? ' ' : data[i];
    unsigned_sum += b;
    signed_sum += static_cast<int8_t>(b);
  }
  if (stored != unsigned_sum && static_cast<int64_t>(stored) != signed_sum) {
    return false;
  }
  // An all-blank header has a valid checksum too; require a name.
  return data[0] != 0;
}

bool HasZipEndRecord(std::span<const uint8_t> data) {
  if (data.size() < 22) return false;
  size_t lowest = data.size() - 22 > 65535 ? data.size() - 22 - 65535 : 0;
  for (size_t pos = data.size() - 22 + 1; pos-- > lowest;) {
    if (data[pos] == 'P' && data[pos + 1] == 'K' && data[pos + 2] == 5 &&
        data[pos + 3] == 6) {
      return true;
    }
  }
  return false;
}

Sniffed SniffMagic(std::span<const uint8_t> data) {
  Sniffed s;
  using namespace std::string_view_literals;
  if (StartsWith(data, "PK\x03\x04"sv) || StartsWith(data, "PK\x05\x06"sv) ||
      StartsWith(data, "PK\x07\x08"sv)) {
    s.format = Format::kZip;
  } else if (StartsWith(data, "7z\xBC\xAF\x27\x1C"sv)) {
    s.format = Format::kSevenZip;
  } else if (StartsWith(data, "\x1f\x8b"sv)) {
    s.format = Format::kGzip;
  } else if (data.size() >= 4 && StartsWith(data, "BZh"sv) &&
             data[3] >= '1' && data[3] <= '9') {
    s.format = Format::kBzip2;
  } else if (StartsWith(data, "\xFD" "7zXZ\x00"sv)) {
    s.format = Format::kXz;
  } else if (HasNpyMagic(data)) {
    s.format = Format::kNumpyNpy;
  } else if (data.size() >= 13 && data[0] == 0x5D && data[1] == 0x00) {
    // lzma_alone: properties byte 0x5D (lc=3 lp=0 pb=2, what xz and
    // Python write), dictionary size, uncompressed size. joblib's prefix.
    s.format = Format::kLzma;
  } else if (data.size() >= 2 && data[0] == 0x78 &&
             ((data[0] << 8) | data[1]) % 31 == 0 && (data[1] & 0x20) == 0) {
    s.format = Format::kZlib;
  } else if (data.size() >= 23 && StartsWith(data, "ZF0x"sv)) {
    // joblib < 0.9.3: "ZF" + hex(length).ljust(19) [+ ' '] + zlib data.
    s.format = Format::kZlib;
    s.joblib_zfile = true;
    s.payload_offset = data[21] == ' ' ? 22 : 21;
  } else if (data.size() >= 512 && IsTarHeader(data)) {
    s.format = Format::kTar;
  }
  return s;
}

std::string HexPrefix(std::span<const uint8_t> data, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < data.size() && i < n; ++i) {
    if (i) out += ' ';
    out += kHex[data[i] >> 4];
    out += kHex[data[i] & 15];
  }
  if (data.size() > n) out += " ...";
  if (data.empty()) out = "(none)";
  return out;
}

}  // namespace dynahug::runtime

#include "runtime/container/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/container/decompress.h"

namespace dynahug::runtime {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kDescriptorSig = 0x08074b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr size_t kMaxComment = 65535;

uint16_t Le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
         (uint32_t{p[3]} << 24);
}
uint64_t Le64(const uint8_t* p) {
  return uint64_t{Le32(p)} | (uint64_t{Le32(p + 4)} << 32);
}

std::string Quote(std::string_view s) { return absl::StrCat("\"", std::string(s), "\""); }

// Applies a zip64 extended-information extra field to the fields that are
// saturated in the central directory.
void ApplyZip64Extra(const uint8_t* extra, size_t len, bool need_usize,
                     bool need_csize, bool need_offset, ZipEntry& e,
                     uint64_t& lho) {
  size_t pos = 0;
  while (pos + 4 <= len) {
    uint16_t id = Le16(extra + pos);
    uint16_t size = Le16(extra + pos + 2);
    pos += 4;
    if (pos + size > len) {
      e.notes.push_back(absl::StrCat("extra field 0x", absl::Hex(id),
                                     " of size ", size,
                                     " runs past the extra data"));
      return;
    }
    if (id == 0x0001) {
      size_t q = pos, end = pos + size;
      auto take = [&](uint64_t& field) {
        if (q + 8 <= end) {
          field = Le64(extra + q);
          q += 8;
          return true;
        }
        return false;
      };
      bool ok = true;
      if (need_usize) ok &= take(e.uncompressed_size);
      if (need_csize) ok &= take(e.compressed_size);
      if (need_offset) ok &= take(lho);
      if (!ok) e.notes.push_back("zip64 extra field is too short");
      return;
    }
    pos += size;
  }
  if (need_usize || need_csize || need_offset) {
    e.notes.push_back("saturated sizes but no zip64 extra field");
  }
}

// Reads the local header of `e` (absolute offset `lho`) and fills
// local_name and data_offset, or the entry error.
void ReadLocalHeader(std::span<const uint8_t> data, uint64_t lho,
                     ZipEntry& e) {
  e.local_header_offset = lho;
  if (lho > data.size() || data.size() - lho < kLocalSize) {
    e.error = absl::StrCat("zip: local header of ", Quote(e.name),
                           " at offset ", lho,
                           " runs past end of data (size ", data.size(), ")");
    return;
  }
  const uint8_t* p = data.data() + lho;
  if (Le32(p) != kLocalSig) {
    e.error = absl::StrFormat(
        "zip: local header of \"%s\" at offset %d has bad signature 0x%08x",
        e.name, lho, Le32(p));
    return;
  }
  uint16_t local_flags = Le16(p + 6);
  uint16_t local_method = Le16(p + 8);
  uint16_t name_len = Le16(p + 26);
  uint16_t extra_len = Le16(p + 28);
  uint64_t data_offset = lho + kLocalSize + name_len + extra_len;
  if (data_offset > data.size()) {
    e.error = absl::StrCat("zip: local header of ", Quote(e.name),
                           " at offset ", lho,
                           " runs past end of data (size ", data.size(), ")");
    return;
  }
  e.local_name.assign(reinterpret_cast<const char*>(p + kLocalSize), name_len);
  if (e.local_name != e.name) {
    e.notes.push_back(absl::StrCat("local header name ", Quote(e.local_name),
                                   " differs from central directory name"));
  }
  if (local_method != e.method) {
    e.notes.push_back(absl::StrCat("local header method ", local_method,
                                   " differs from central directory method ",
                                   e.method));
  }
  if ((local_flags ^ e.flags) & ~uint16_t{0x0008}) {
    e.notes.push_back(absl::StrFormat(
        "local header flags 0x%04x differ from central directory flags 0x%04x",
        local_flags, e.flags));
  }
  e.data_offset = data_offset;
  if (e.compressed_size > data.size() - data_offset) {
    e.error = absl::StrCat("zip: data of ", Quote(e.name), " at offset ",
                           data_offset, " (", e.compressed_size,
                           " bytes) runs past end of data (size ", data.size(),
                           ")");
  }
}

void FindOverlaps(std::vector<ZipEntry>& entries) {
  std::vector<size_t> order(entries.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return entries[a].local_header_offset < entries[b].local_header_offset;
  });
  uint64_t max_end = 0;
  int64_t max_owner = -1;
  for (size_t idx : order) {
    ZipEntry& e = entries[idx];
    if (!e.error.empty()) continue;
    if (max_owner >= 0 && e.local_header_offset < max_end) {
      e.overlaps_with = max_owner;
      if (entries[max_owner].overlaps_with < 0) {
        entries[max_owner].overlaps_with = static_cast<int64_t>(idx);
      }
    }
    uint64_t end = e.data_offset + e.compressed_size;
    if (end > max_end) {
      max_end = end;
      max_owner = static_cast<int64_t>(idx);
    }
  }
}

}  // namespace

absl::StatusOr<ZipArchive> ReadZipDirectory(std::span<const uint8_t> data,
                                            uint64_t max_entries) {
  const size_t n = data.size();
  if (n < kEocdSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "zip: data too short for an end of central directory record (size ",
        n, ")"));
  }
  // Find the EOCD record, last one first.
  size_t lowest = n - kEocdSize > kMaxComment ? n - kEocdSize - kMaxComment : 0;
  int64_t eocd = -1;
  for (size_t pos = n - kEocdSize + 1; pos-- > lowest;) {
    if (data[pos] == 'P' && Le32(data.data() + pos) == kEocdSig) {
      eocd = static_cast<int64_t>(pos);
      break;
    }
  }
  if (eocd < 0) {
    return absl::DataLossError(absl::StrCat(
        "zip: no end of central directory record in the last ",
        n - lowest, " bytes (truncated or not a zip)"));
  }
  ZipArchive archive;
  const uint8_t* e = data.data() + eocd;
  uint64_t declared_entries = Le16(e + 10);
  uint64_t cd_size = Le32(e + 12);
  uint64_t cd_offset = Le32(e + 16);
  uint16_t comment_len = Le16(e + 20);
  uint64_t comment_avail = n - static_cast<uint64_t>(eocd) - kEocdSize;
  archive.comment.assign(reinterpret_cast<const char*>(e + kEocdSize),
                         std::min<uint64_t>(comment_len, comment_avail));
  if (comment_len != comment_avail) {
    archive.notes.push_back(absl::StrCat(
        "archive comment length ", comment_len, " but ", comment_avail,
        " bytes follow the end of central directory record"));
  }
  uint64_t cd_end = static_cast<uint64_t>(eocd);
  // Zip64 locator immediately before the EOCD record.
  if (eocd >= 20 && Le32(data.data() + eocd - 20) == kZip64LocatorSig) {
    uint64_t z64_offset = Le64(data.data() + eocd - 20 + 8);
    uint64_t z64_pos = static_cast<uint64_t>(eocd) - 20;
    // The record is 56 bytes; prefix data shifts it like everything else.
    if (z64_pos >= 56 && Le32(data.data() + z64_pos - 56) == kZip64EocdSig) {
      z64_pos -= 56;
    } else if (z64_offset + 56 <= n &&
               Le32(data.data() + z64_offset) == kZip64EocdSig) {
      z64_pos = z64_offset;
    } else {
      return absl::DataLossError(absl::StrCat(
          "zip: zip64 end of central directory record at offset ", z64_offset,
          " not found"));
    }
    const uint8_t* z = data.data() + z64_pos;
    archive.zip64 = true;
    declared_entries = Le64(z + 32);
    cd_size = Le64(z + 40);
    cd_offset = Le64(z + 48);
    cd_end = z64_pos;
  }
  if (cd_size > cd_end) {
    return absl::DataLossError(absl::StrCat(
        "zip: central directory size ", cd_size, " larger than its end offset ",
        cd_end));
  }
  uint64_t cd_start = cd_end - cd_size;
  if (cd_start >= cd_offset) {
    archive.prefix_size = cd_start - cd_offset;
  } else if (cd_offset + 4 <= n &&
             Le32(data.data() + cd_offset) == kCentralSig) {
    cd_start = cd_offset;  // size field wrong, offset right
    archive.notes.push_back("central directory size field is wrong");
  } else {
    return absl::DataLossError(absl::StrCat(
        "zip: central directory at offset ", cd_offset, " (size ", cd_size,
        ") runs past end of data (size ", n, ")"));
  }
  if (archive.prefix_size > 0) {
    archive.notes.push_back(absl::StrCat(archive.prefix_size,
                                         " bytes of prefix data before the "
                                         "archive"));
  }
  archive.directory_offset = cd_start;
  uint64_t pos = cd_start;
  while (pos + 4 <= cd_end && Le32(data.data() + pos) == kCentralSig) {
    if (archive.entries.size() >= max_entries) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "zip: more than ", max_entries, " entries"));
    }
    if (cd_end - pos < kCentralSize) {
      archive.notes.push_back(absl::StrCat(
          "truncated central directory entry at offset ", pos));
      break;
    }
    const uint8_t* c = data.data() + pos;
    ZipEntry entry;
    entry.flags = Le16(c + 8);
    entry.method = Le16(c + 10);
    entry.crc32 = Le32(c + 16);
    entry.compressed_size = Le32(c + 20);
    entry.uncompressed_size = Le32(c + 24);
    uint16_t name_len = Le16(c + 28);
    uint16_t extra_len = Le16(c + 30);
    uint16_t comment = Le16(c + 32);
    uint64_t lho = Le32(c + 42);
    uint64_t record_end = pos + kCentralSize + name_len + extra_len + comment;
    if (record_end > cd_end) {
      archive.notes.push_back(absl::StrCat(
          "central directory entry at offset ", pos,
          " runs past the end of the central directory"));
      break;
    }
    entry.name.assign(reinterpret_cast<const char*>(c + kCentralSize),
                      name_len);
    bool need_u = entry.uncompressed_size == 0xFFFFFFFFu;
    bool need_c = entry.compressed_size == 0xFFFFFFFFu;
    bool need_o = lho == 0xFFFFFFFFu;
    if (need_u || need_c || need_o || extra_len > 0) {
      ApplyZip64Extra(c + kCentralSize + name_len, extra_len, need_u, need_c,
                      need_o, entry, lho);
    }
    entry.is_directory = !entry.name.empty() && entry.name.back() == '/';
    if (entry.flags & 0x0001) entry.notes.push_back("encrypted");
    ReadLocalHeader(data, lho + archive.prefix_size, entry);
    archive.entries.push_back(std::move(entry));
    pos = record_end;
  }
  if (archive.entries.size() != declared_entries) {
    archive.notes.push_back(absl::StrCat(
        "end of central directory declares ", declared_entries,
        " entries, central directory holds ", archive.entries.size()));
  }
  FindOverlaps(archive.entries);
  return archive;
}

ZipArchive ScanZipLocalHeaders(std::span<const uint8_t> data,
                               uint64_t max_entries) {
  ZipArchive archive;
  archive.directory_offset = data.size();
  archive.notes.push_back("entries recovered from local headers");
  static constexpr uint8_t kSig[4] = {'P', 'K', 3, 4};
  auto find_next = [&](uint64_t from) -> uint64_t {
    if (from >= data.size()) return data.size();
    const void* hit = memmem(data.data() + from, data.size() - from, kSig, 4);
    return hit ? static_cast<uint64_t>(static_cast<const uint8_t*>(hit) -
                                       data.data())
               : data.size();
  };
  uint64_t pos = find_next(0);
  while (pos + kLocalSize <= data.size() &&
         archive.entries.size() < max_entries) {
    const uint8_t* p = data.data() + pos;
    ZipEntry e;
    e.flags = Le16(p + 6);
    e.method = Le16(p + 8);
    e.crc32 = Le32(p + 14);
    e.compressed_size = Le32(p + 18);
    e.uncompressed_size = Le32(p + 22);
    uint16_t name_len = Le16(p + 26);
    uint16_t extra_len = Le16(p + 28);
    uint64_t data_offset = pos + kLocalSize + name_len + extra_len;
    if (data_offset > data.size()) break;
    e.name.assign(reinterpret_cast<const char*>(p + kLocalSize), name_len);
    e.local_name = e.name;
    e.local_header_offset = pos;
    e.data_offset = data_offset;
    e.is_directory = !e.name.empty() && e.name.back() == '/';
    if (e.compressed_size == 0xFFFFFFFFu || e.uncompressed_size == 0xFFFFFFFFu) {
      uint64_t lho_unused = 0;
      ApplyZip64Extra(p + kLocalSize + name_len, extra_len,
                      e.uncompressed_size == 0xFFFFFFFFu,
                      e.compressed_size == 0xFFFFFFFFu, false, e, lho_unused);
    }
    uint64_t next;
    if ((e.flags & 0x0008) && e.compressed_size == 0) {
      // Size is in a data descriptor: the data ends at the next header.
      next = find_next(data_offset);
      uint64_t end = next;
      if (end >= 16 && end - 16 >= data_offset &&
          Le32(data.data() + end - 16) == kDescriptorSig) {
        end -= 16;
        e.crc32 = Le32(data.data() + end + 4);
        e.uncompressed_size = Le32(data.data() + end + 12);
      } else if (e.method == 0) {
        e.uncompressed_size = end - data_offset;
      }
      e.compressed_size = end - data_offset;
      e.notes.push_back("size taken from the next local header");
    } else {
      if (e.compressed_size > data.size() - data_offset) {
        e.error = absl::StrCat("zip: data of ", Quote(e.name), " at offset ",
                               data_offset, " (", e.compressed_size,
                               " bytes) runs past end of data (size ",
                               data.size(), ")");
        archive.entries.push_back(std::move(e));
        break;
      }
      next = find_next(data_offset + e.compressed_size);
    }
    archive.entries.push_back(std::move(e));
    if (next <= pos) break;
    pos = next;
  }
  FindOverlaps(archive.entries);
  return archive;
}

absl::StatusOr<ZipEntryData> ReadZipEntry(std::span<const uint8_t> data,
                                          const ZipEntry& entry,
                                          uint64_t max_output,
                                          bool prefix_only) {
  if (!entry.error.empty()) return absl::DataLossError(entry.error);
  if (entry.flags & 0x0001) {
    return absl::UnimplementedError(
        absl::StrCat("zip: entry ", Quote(entry.name), " is encrypted"));
  }
  if (entry.data_offset > data.size() ||
      entry.compressed_size > data.size() - entry.data_offset) {
    return absl::DataLossError(absl::StrCat(
        "zip: data of ", Quote(entry.name), " at offset ", entry.data_offset,
        " runs past end of data (size ", data.size(), ")"));
  }
  std::span<const uint8_t> raw =
      data.subspan(entry.data_offset, entry.compressed_size);
  ZipEntryData out;
  switch (entry.method) {
    case 0: {
      out.is_view = true;
      if (raw.size() > max_output) {
        if (!prefix_only) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "zip: entry ", Quote(entry.name), " would expand past ",
              max_output, " bytes"));
        }
        out.view = raw.first(max_output);
        out.truncated = true;
        return out;
      }
      out.view = raw;
      break;
    }
    case 8:
    case 12: {
      Codec codec = entry.method == 8 ? Codec::kDeflateRaw : Codec::kBzip2;
      auto d = Decompress(codec, raw, max_output, prefix_only,
                          prefix_only ? 0 : entry.uncompressed_size);
      if (!d.ok()) {
        return absl::Status(d.status().code(),
                            absl::StrCat("zip: entry ", Quote(entry.name),
                                         ": ", d.status().message()));
      }
      if (!d->hit_limit && !d->complete) {
        return absl::DataLossError(absl::StrCat(
            "zip: entry ", Quote(entry.name), ": ", std::string(CodecName(codec)),
            ": input truncated after ", raw.size(), " bytes (",
            d->data.size(), " bytes produced)"));
      }
      out.owned = std::move(d->data);
      out.truncated = d->hit_limit;
      if (prefix_only) return out;
      break;
    }
    default:
      return absl::UnimplementedError(
          absl::StrCat("zip: entry ", Quote(entry.name),
                       " uses unsupported compression method ", entry.method));
  }
  if (!prefix_only || !out.truncated) {
    std::span<const uint8_t> bytes = out.bytes();
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t off = 0;
    while (off < bytes.size()) {
      size_t take = std::min<size_t>(bytes.size() - off, UINT_MAX);
      crc = crc32(crc, bytes.data() + off, static_cast<uInt>(take));
      off += take;
    }
    out.crc_checked = true;
    out.actual_crc = static_cast<uint32_t>(crc);
    out.crc_ok = out.actual_crc == entry.crc32;
  }
  return out;
}

}  // namespace dynahug::runtime

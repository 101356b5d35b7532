// A tolerant zip reader: central directory first (what PyTorch's miniz and
// Python's zipfile do), then each entry's local header. Accepts what the
// real loaders accept: zip64, data descriptors, any general-purpose flag
// bits, extra fields, archive comments, prefix data before the archive
// (self-extracting style), local names that differ from central names, bad
// CRCs. Anomalies become notes; an entry that cannot be read gets an
// entry-level error, and the other entries are still readable.
//
// Never allocates in proportion to a declared size; all offsets are
// bounds-checked against the input. Thread-safe (no shared state).
#ifndef DYNAHUG_RUNTIME_CONTAINER_ZIP_READER_H_
#define DYNAHUG_RUNTIME_CONTAINER_ZIP_READER_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dynahug::runtime {

struct ZipEntry {
  std::string name;        // from the central directory
  std::string local_name;  // from the local header ("" if unreadable)
  uint16_t flags = 0;      // central directory general-purpose flags
  uint16_t method = 0;     // 0 stored, 8 deflate, 12 bzip2, others unsupported
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;  // as declared (may lie)
  uint64_t local_header_offset = 0;  // absolute offset in the input
  uint64_t data_offset = 0;          // absolute offset of the entry's data
  bool is_directory = false;         // name ends with '/' and no data
  // Index of another entry whose bytes overlap this one's (zip bombs of
  // the overlapping-files kind), or -1.
  int64_t overlaps_with = -1;
  std::vector<std::string> notes;
  std::string error;  // non-empty: the data cannot be located/read
};

struct ZipArchive {
  std::vector<ZipEntry> entries;  // central directory order
  uint64_t prefix_size = 0;  // bytes before the archive's first byte
  // Absolute offset of the central directory in the input: from here to
  // the end are the directory and end records (ReadZipDirectory only;
  // ScanZipLocalHeaders leaves it at the input's size).
  uint64_t directory_offset = 0;
  bool zip64 = false;
  std::string comment;
  std::vector<std::string> notes;
};

// Parses the end-of-central-directory record (searched from the end, within
// the maximum comment size), the zip64 records if present, and every
// central directory entry with its local header. `max_entries` bounds the
// entries parsed (more is an error: ResourceExhausted). Errors (DataLoss /
// InvalidArgument) name what and where: "zip: no end of central directory
// record in the last 65557 bytes", "zip: central directory at offset 100
// (size 4000) runs past end of data (size 2000)".
absl::StatusOr<ZipArchive> ReadZipDirectory(std::span<const uint8_t> data,
                                            uint64_t max_entries = 1000000);

// Recovers entries by scanning local headers from the start of `data` (for
// truncated archives without a usable central directory). Sizes come from
// the local headers; entries whose data descriptor hides the size end at
// the next local header signature. Never fails; may return no entries.
ZipArchive ScanZipLocalHeaders(std::span<const uint8_t> data,
                               uint64_t max_entries = 1000000);

// An entry's content, either a view into the archive (stored entries: no
// copy) or an owned buffer (inflated).
struct ZipEntryData {
  std::span<const uint8_t> view;
  std::vector<uint8_t> owned;
  bool is_view = false;
  bool truncated = false;    // stopped at max_output (prefix reads)
  bool crc_checked = false;  // whole content read and CRC computed
  bool crc_ok = false;
  uint32_t actual_crc = 0;
  std::span<const uint8_t> bytes() const {
    return is_view ? view : std::span<const uint8_t>(owned);
  }
};

// Reads `entry` from `data` (the same input given to ReadZipDirectory).
// At most `max_output` bytes are produced; with `prefix_only` the result is
// simply cut there (truncated = true), otherwise exceeding it is a
// ResourceExhausted error "would expand past N bytes". Errors: the entry's
// own error, unsupported method, encryption, corrupt or truncated deflate.
absl::StatusOr<ZipEntryData> ReadZipEntry(std::span<const uint8_t> data,
                                          const ZipEntry& entry,
                                          uint64_t max_output,
                                          bool prefix_only);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_ZIP_READER_H_

// Sequential reader over a 7z or tar archive in memory (any compression
// filter libarchive knows: gzip, bzip2, xz, ...), through libarchive.
// Move-only; `data` must outlive the reader. Not thread-safe.
#ifndef DYNAHUG_RUNTIME_CONTAINER_ARCHIVE_READER_H_
#define DYNAHUG_RUNTIME_CONTAINER_ARCHIVE_READER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct archive;

namespace dynahug::runtime {

struct ArchiveEntry {
  std::string name;
  bool is_regular = false;  // regular file (other types carry no data)
  bool size_known = false;
  uint64_t size = 0;  // declared size (may lie)
};

class ArchiveReader {
 public:
  // Opens `data`. Errors: "archive: <libarchive message>".
  static absl::StatusOr<ArchiveReader> Open(std::span<const uint8_t> data);

  ArchiveReader(ArchiveReader&&) noexcept;
  ArchiveReader& operator=(ArchiveReader&&) noexcept;
  ~ArchiveReader();

  // Advances to the next entry (skipping unread data of the current one).
  // Returns false at the end of the archive.
  absl::StatusOr<bool> Next(ArchiveEntry* entry);

  // Appends up to `max_bytes` more bytes of the current entry to `out`;
  // returns how many were appended (0 at the end of the entry).
  absl::StatusOr<uint64_t> Read(uint64_t max_bytes, std::vector<uint8_t>* out);

  // libarchive's name of the format detected ("7-Zip", "POSIX ustar
  // format", ...) and of the outermost filter ("gzip", "none").
  std::string FormatName() const;
  std::string FilterName() const;

 private:
  struct Deleter {
    void operator()(struct archive* a) const;
  };
  explicit ArchiveReader(std::unique_ptr<struct archive, Deleter> a)
      : archive_(std::move(a)) {}
  absl::Status Error(std::string_view what) const;
  std::unique_ptr<struct archive, Deleter> archive_;
};

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_ARCHIVE_READER_H_

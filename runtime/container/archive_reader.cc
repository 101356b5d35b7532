#include "runtime/container/archive_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dynahug::runtime {

void ArchiveReader::Deleter::operator()(struct archive* a) const {
  archive_read_free(a);
}

ArchiveReader::ArchiveReader(ArchiveReader&&) noexcept = default;
ArchiveReader& ArchiveReader::operator=(ArchiveReader&&) noexcept = default;
ArchiveReader::~ArchiveReader() = default;

absl::Status ArchiveReader::Error(std::string_view what) const {
  const char* msg = archive_error_string(archive_.get());
  return absl::DataLossError(
      absl::StrCat("archive: ", std::string(what), ": ", msg ? msg : "unknown error"));
}

absl::StatusOr<ArchiveReader> ArchiveReader::Open(
    std::span<const uint8_t> data) {
  std::unique_ptr<struct archive, Deleter> a(archive_read_new());
  if (!a) return absl::ResourceExhaustedError("archive: archive_read_new failed");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_7zip(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  ArchiveReader reader(std::move(a));
  if (archive_read_open_memory(reader.archive_.get(), data.data(),
                               data.size()) != ARCHIVE_OK) {
    return reader.Error("open");
  }
  return reader;
}

absl::StatusOr<bool> ArchiveReader::Next(ArchiveEntry* entry) {
  struct archive_entry* e = nullptr;
  int rc = archive_read_next_header(archive_.get(), &e);
  if (rc == ARCHIVE_EOF) return false;
  if (rc < ARCHIVE_WARN || e == nullptr) return Error("reading entry header");
  const char* name = archive_entry_pathname(e);
  entry->name = name ? name : "";
  entry->is_regular = archive_entry_filetype(e) == AE_IFREG;
  entry->size_known = archive_entry_size_is_set(e) != 0;
  la_int64_t size = archive_entry_size(e);
  entry->size = size > 0 ? static_cast<uint64_t>(size) : 0;
  return true;
}

absl::StatusOr<uint64_t> ArchiveReader::Read(uint64_t max_bytes,
                                             std::vector<uint8_t>* out) {
  uint64_t total = 0;
  while (total < max_bytes) {
    size_t want = static_cast<size_t>(
        std::min<uint64_t>(max_bytes - total, size_t{1} << 20));
    size_t old = out->size();
    out->resize(old + want);
    la_ssize_t n = archive_read_data(archive_.get(), out->data() + old, want);
    if (n < 0) {
      out->resize(old);
      return Error("reading entry data");
    }
    out->resize(old + static_cast<size_t>(n));
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
  }
  return total;
}

std::string ArchiveReader::FormatName() const {
  const char* n = archive_format_name(archive_.get());
  return n ? n : "";
}

std::string ArchiveReader::FilterName() const {
  const char* n = archive_filter_name(archive_.get(), 0);
  return n ? n : "";
}

}  // namespace dynahug::runtime

#include "runtime/container/content_key.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "hooks/base/sha256.h"

namespace dynahug::runtime {
namespace {

constexpr std::string_view kDomain = "dynahug content key 1\n";

void AppendLe64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

}  // namespace

std::vector<ByteRange> NormalizeRanges(std::vector<ByteRange> ranges,
                                       uint64_t size) {
  std::vector<ByteRange> out;
  for (ByteRange& r : ranges) {
    if (r.offset >= size) continue;
    r.length = std::min(r.length, size - r.offset);
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const ByteRange& a, const ByteRange& b) {
              return a.offset < b.offset;
            });
  for (const ByteRange& r : ranges) {
    if (r.length == 0 || r.offset >= size) continue;
    if (!out.empty() && r.offset <= out.back().offset + out.back().length) {
      uint64_t end =
          std::max(out.back().offset + out.back().length, r.offset + r.length);
      out.back().length = end - out.back().offset;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::string ContentKey(std::span<const uint8_t> data,
                       const std::vector<ByteRange>& unread) {
  if (unread.empty()) return hooks::Sha256Hex(data);
  std::string header(kDomain);
  AppendLe64(header, data.size());
  AppendLe64(header, unread.size());
  for (const ByteRange& r : unread) {
    AppendLe64(header, r.offset);
    AppendLe64(header, r.length);
  }
  hooks::Sha256 hash;
  hash.Update(header);
  uint64_t pos = 0;
  for (const ByteRange& r : unread) {
    if (r.offset > pos) hash.Update(data.subspan(pos, r.offset - pos));
    pos = r.offset + r.length;
  }
  if (pos < data.size()) hash.Update(data.subspan(pos));
  return hash.Hex();
}

absl::StatusOr<std::string> FileSha256(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("open(\"", path, "\") failed: ", strerror(errno)));
  }
  // Sequential read-once: let the kernel read ahead and drop behind.
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  hooks::Sha256 hash;
  std::vector<uint8_t> buffer(1 << 20);
  uint64_t offset = 0;
  for (;;) {
    const ssize_t n =
        pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return absl::DataLossError(absl::StrCat("pread(\"", path, "\", offset ",
                                              offset,
                                              ") failed: ", strerror(err)));
    }
    if (n == 0) break;
    hash.Update(
        std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)));
    offset += static_cast<uint64_t>(n);
  }
  close(fd);
  return hash.Hex();
}

}  // namespace dynahug::runtime

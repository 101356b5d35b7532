#include "runtime/container/file_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dynahug::runtime {
namespace {

// Closes the descriptor on scope exit.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status ErrnoError(absl::string_view call, const std::string& path,
                        int err) {
  std::string message =
      absl::StrCat(call, "(\"", path, "\") failed: ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace

absl::StatusOr<FileMapping> FileMapping::Open(const std::string& path,
                                              uint64_t max_unmappable_bytes) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) return ErrnoError("open", path, errno);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoError("fstat", path, errno);
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("open(\"", path, "\"): is a directory"));
  }
  FileMapping mapping;
  if (S_ISREG(st.st_mode)) {
    if (st.st_size == 0) return mapping;
    void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                   MAP_PRIVATE, fd.get(), 0);
    if (p != MAP_FAILED) {
      // No read-around on faults: a touched zip header must not read the
      // megabytes of tensor storage around it (read_ahead_kb, often 4-8
      // MiB). What is decoded in full is asked for with WillNeed().
      madvise(p, static_cast<size_t>(st.st_size), MADV_RANDOM);
      mapping.mapped_ = p;
      mapping.size_ = static_cast<size_t>(st.st_size);
      return mapping;
    }
  }
  // Not mappable: read it.
  uint8_t chunk[65536];
  for (;;) {
    ssize_t n = read(fd.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read", path, errno);
    }
    if (n == 0) break;
    if (mapping.buffer_.size() + static_cast<size_t>(n) >
        max_unmappable_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("read(\"", path, "\"): more than ",
                       max_unmappable_bytes, " bytes"));
    }
    mapping.buffer_.insert(mapping.buffer_.end(), chunk, chunk + n);
  }
  return mapping;
}

void FileMapping::WillNeed(std::span<const uint8_t> range) const {
  if (mapped_ == nullptr || range.empty()) return;
  const auto base = reinterpret_cast<uintptr_t>(mapped_);
  const auto begin = reinterpret_cast<uintptr_t>(range.data());
  if (begin < base || begin + range.size() > base + size_) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = begin & ~(page - 1);
  madvise(reinterpret_cast<void*>(start), begin + range.size() - start,
          MADV_WILLNEED);
}

FileMapping::~FileMapping() { Reset(); }

void FileMapping::Reset() {
  if (mapped_ != nullptr) munmap(mapped_, size_);
  mapped_ = nullptr;
  size_ = 0;
  buffer_.clear();
}

FileMapping::FileMapping(FileMapping&& other) noexcept
    : mapped_(std::exchange(other.mapped_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      buffer_(std::move(other.buffer_)) {}

FileMapping& FileMapping::operator=(FileMapping&& other) noexcept {
  if (this != &other) {
    Reset();
    mapped_ = std::exchange(other.mapped_, nullptr);
    size_ = std::exchange(other.size_, 0);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

}  // namespace dynahug::runtime

// FileMapping: a read-only view of a whole file, mapped once (mmap,
// MAP_PRIVATE, PROT_READ). Pages are read when touched, one at a time
// (MADV_RANDOM: no read-around), so that bytes never looked at (tensor
// storages) are never read from disk; WillNeed() starts reading a range that
// will be read in full. Files that cannot be mapped (pipes, character
// devices such as /dev/stdin) are read into an owned buffer instead.
// Move-only; the bytes live as long as the object. Thread-compatible.
#ifndef DYNAHUG_RUNTIME_CONTAINER_FILE_MAPPING_H_
#define DYNAHUG_RUNTIME_CONTAINER_FILE_MAPPING_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dynahug::runtime {

class FileMapping {
 public:
  // Opens `path` (O_RDONLY | O_CLOEXEC) and maps it. Errors name the path,
  // the failing call and errno ("open(\"x\") failed: No such file or
  // directory"); a directory is an error. `max_unmappable_bytes` bounds how
  // much is read from a non-mappable file.
  static absl::StatusOr<FileMapping> Open(
      const std::string& path, uint64_t max_unmappable_bytes = uint64_t{4}
                                                                 << 30);

  FileMapping() = default;
  ~FileMapping();
  FileMapping(FileMapping&& other) noexcept;
  FileMapping& operator=(FileMapping&& other) noexcept;
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  std::span<const uint8_t> bytes() const {
    return mapped_ != nullptr
               ? std::span<const uint8_t>(static_cast<const uint8_t*>(mapped_),
                                          size_)
               : std::span<const uint8_t>(buffer_);
  }
  bool is_mapped() const { return mapped_ != nullptr; }
  // Starts reading `range` (a view into bytes()) from disk ahead of use
  // (MADV_WILLNEED). No-op for ranges outside the mapping.
  void WillNeed(std::span<const uint8_t> range) const;

 private:
  void Reset();
  void* mapped_ = nullptr;
  size_t size_ = 0;
  std::vector<uint8_t> buffer_;
};

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_FILE_MAPPING_H_

// UniqueFd: move-only owner of one file descriptor.
//
// The descriptor is closed when the owner is destroyed or reset. close(2)
// errors are ignored on destruction (there is nothing a destructor can do;
// Linux always releases the descriptor). Not thread-safe: one owner, one
// thread at a time, like any value type.
#ifndef DYNAHUG_SANDBOX_UNIQUE_FD_H_
#define DYNAHUG_SANDBOX_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace dynahug::sandbox {

class UniqueFd {
 public:
  UniqueFd() = default;
  // Takes ownership of `fd` (negative means "no descriptor").
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing; returns the descriptor.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

  // Closes the owned descriptor (if any) and takes ownership of `fd`.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace dynahug::sandbox

#endif  // DYNAHUG_SANDBOX_UNIQUE_FD_H_

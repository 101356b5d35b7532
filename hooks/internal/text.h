// Bounded text for event arguments.
#ifndef DYNAHUG_HOOKS_INTERNAL_TEXT_H_
#define DYNAHUG_HOOKS_INTERNAL_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace dynahug::hooks::internal {

// `s` when it has at most `max` bytes; else its first `max` bytes, fewer so
// as not to cut a UTF-8 sequence in half, followed by "...".
inline std::string TruncateUtf8(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n)) + "...";
}

}  // namespace dynahug::hooks::internal

#endif  // DYNAHUG_HOOKS_INTERNAL_TEXT_H_

// Parsing of option values shared by the `dynahug` commands.
#ifndef DYNAHUG_RUNTIME_CLI_FLAGS_H_
#define DYNAHUG_RUNTIME_CLI_FLAGS_H_

#include <charconv>
#include <cstdint>
#include <string_view>

namespace dynahug::runtime {

// Parses all of `text` as an unsigned decimal integer ("12": no sign, space,
// prefix or suffix). False when it is not one or does not fit in 64 bits.
inline bool ParseUint(std::string_view text, uint64_t& value) {
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_FLAGS_H_

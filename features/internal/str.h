// String helpers on std::string_view for features/. Debian's Abseil is built
// with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so
// absl::StrCat and friends do not take std::string_view; these do. Not API.
#ifndef DYNAHUG_FEATURES_INTERNAL_STR_H_
#define DYNAHUG_FEATURES_INTERNAL_STR_H_

#include <charconv>
#include <concepts>
#include <string>
#include <string_view>
#include <vector>

namespace dynahug::features::internal {

// One piece of Cat: strings as they are, integers in decimal.
class Piece {
 public:
  Piece(std::string_view s) : view_(s) {}    // NOLINT: implicit by design
  Piece(const std::string& s) : view_(s) {}  // NOLINT
  Piece(const char* s) : view_(s) {}         // NOLINT
  template <std::integral T>
  Piece(T v) {  // NOLINT
    auto [end, ec] = std::to_chars(buf_, buf_ + sizeof(buf_), v);
    view_ = std::string_view(buf_, static_cast<size_t>(end - buf_));
  }
  Piece(const Piece&) = delete;
  Piece& operator=(const Piece&) = delete;
  std::string_view view() const { return view_; }

 private:
  char buf_[24];
  std::string_view view_;
};

// Concatenation of the pieces.
inline std::string Cat(std::initializer_list<Piece> pieces) {
  size_t n = 0;
  for (const Piece& p : pieces) n += p.view().size();
  std::string out;
  out.reserve(n);
  for (const Piece& p : pieces) out.append(p.view());
  return out;
}
template <typename... Args>
std::string Cat(const Args&... args) {
  return Cat({Piece(args)...});
}

// `parts` joined with `sep`.
template <typename Container>
std::string Join(const Container& parts, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& p : parts) {
    if (!first) out.append(sep);
    out.append(std::string_view(p));
    first = false;
  }
  return out;
}

// `s` without leading and trailing ASCII whitespace.
inline std::string_view Strip(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// `s` split at every `sep` (empty pieces kept).
inline std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// Whole of `s` as an integer of type T; false on any other text or overflow.
template <std::integral T>
bool ParseInt(std::string_view s, T* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace dynahug::features::internal

#endif  // DYNAHUG_FEATURES_INTERNAL_STR_H_

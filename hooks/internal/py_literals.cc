#include "hooks/internal/py_literals.h"

#include <charconv>
#include <cstring>
#include <limits>

namespace dynahug::hooks::internal {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsPySpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
         c == '\f';
}

}  // namespace

std::string_view StripPySpace(std::string_view s) {
  while (!s.empty() && IsPySpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsPySpace(s.back())) s.remove_suffix(1);
  return s;
}

bool IsUtf8Surrogatepass(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    const uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c < 0xC2) return false;
    if (c < 0xE0) {
      if (i + 1 >= n || (p[i + 1] & 0xC0) != 0x80) return false;
      i += 2;
      continue;
    }
    if (c < 0xF0) {
      if (i + 2 >= n) return false;
      const uint8_t c1 = p[i + 1];
      if ((c1 & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80) return false;
      if (c == 0xE0 && c1 < 0xA0) return false;  // overlong
      i += 3;
      continue;
    }
    if (c < 0xF5) {
      if (i + 3 >= n) return false;
      const uint8_t c1 = p[i + 1];
      if ((c1 & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80 ||
          (p[i + 3] & 0xC0) != 0x80)
        return false;
      if (c == 0xF0 && c1 < 0x90) return false;  // overlong
      if (c == 0xF4 && c1 >= 0x90) return false;  // > U+10FFFF
      i += 4;
      continue;
    }
    return false;
  }
  return true;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<uint8_t>(c) >= 0x80) return false;
  }
  return true;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Latin1ToUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) AppendUtf8(static_cast<uint8_t>(c), &out);
  return out;
}

bool RawUnicodeEscape(std::string_view s, std::string* out) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const uint8_t c = static_cast<uint8_t>(s[i++]);
    if (c != '\\' || i >= n) {
      if (out) AppendUtf8(c, out);
      continue;
    }
    const char e = s[i++];
    int count;
    if (e == 'u') {
      count = 4;
    } else if (e == 'U') {
      count = 8;
    } else {
      if (out) {
        out->push_back('\\');
        AppendUtf8(static_cast<uint8_t>(e), out);
      }
      continue;
    }
    uint32_t cp = 0;
    for (int k = 0; k < count; ++k) {
      if (i >= n) return false;
      const int h = HexDigit(s[i]);
      if (h < 0) return false;
      cp = (cp << 4) | static_cast<uint32_t>(h);
      ++i;
    }
    if (cp > 0x10FFFF) return false;
    if (out) AppendUtf8(cp, out);
  }
  return true;
}

bool EscapeDecode(std::string_view s, std::string* out) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const char c = s[i++];
    if (c != '\\') {
      if (out) out->push_back(c);
      continue;
    }
    if (i >= n) return false;  // trailing backslash
    const char e = s[i++];
    switch (e) {
      case '\n': break;
      case '\\': if (out) out->push_back('\\'); break;
      case '\'': if (out) out->push_back('\''); break;
      case '"': if (out) out->push_back('"'); break;
      case 'b': if (out) out->push_back('\b'); break;
      case 'f': if (out) out->push_back('\014'); break;
      case 't': if (out) out->push_back('\t'); break;
      case 'n': if (out) out->push_back('\n'); break;
      case 'r': if (out) out->push_back('\r'); break;
      case 'v': if (out) out->push_back('\013'); break;
      case 'a': if (out) out->push_back('\007'); break;
      case '0': case '1': case '2': case '3':
      case '4': case '5': case '6': case '7': {
        unsigned v = static_cast<unsigned>(e - '0');
        for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; ++k) {
          v = v * 8 + static_cast<unsigned>(s[i++] - '0');
        }
        if (out) out->push_back(static_cast<char>(v & 0xFF));
        break;
      }
      case 'x': {
        if (i + 2 > n) return false;
        const int h1 = HexDigit(s[i]);
        const int h2 = HexDigit(s[i + 1]);
        if (h1 < 0 || h2 < 0) return false;
        if (out) out->push_back(static_cast<char>(h1 * 16 + h2));
        i += 2;
        break;
      }
      default:
        if (out) {
          out->push_back('\\');
          out->push_back(e);
        }
        break;
    }
  }
  return true;
}

bool ParsePyDecimal(std::string_view s, bool* fits, int64_t* value) {
  s = StripPySpace(s);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  uint64_t mag = 0;
  bool overflow = false;
  bool prev_digit = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!prev_digit || i + 1 >= s.size()) return false;
      prev_digit = false;
      continue;
    }
    if (c < '0' || c > '9') return false;
    prev_digit = true;
    if (!overflow) {
      const uint64_t d = static_cast<uint64_t>(c - '0');
      if (mag > (std::numeric_limits<uint64_t>::max() - d) / 10) {
        overflow = true;
      } else {
        mag = mag * 10 + d;
      }
    }
  }
  if (!prev_digit) return false;
  constexpr uint64_t kMaxPos = static_cast<uint64_t>(INT64_MAX);
  if (overflow || mag > kMaxPos + (negative ? 1 : 0)) {
    *fits = false;
    return true;
  }
  *fits = true;
  if (negative) {
    *value = mag == kMaxPos + 1 ? INT64_MIN : -static_cast<int64_t>(mag);
  } else {
    *value = static_cast<int64_t>(mag);
  }
  return true;
}

bool ParsePyFloat(std::string_view s, double* value) {
  s = StripPySpace(s);
  if (s.empty()) return false;
  std::string cleaned;
  if (s.find('_') != std::string_view::npos) {
    // Underscores are allowed only between digits.
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '_') {
        if (i == 0 || i + 1 >= s.size() || !(s[i - 1] >= '0' && s[i - 1] <= '9') ||
            !(s[i + 1] >= '0' && s[i + 1] <= '9'))
          return false;
        continue;
      }
      cleaned.push_back(s[i]);
    }
    s = cleaned;
  }
  bool negative = false;
  if (s.front() == '+' || s.front() == '-') {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.front() == '+' || s.front() == '-') return false;
  // Python accepts "inf", "infinity" and "nan" (any case) but not
  // "nan(...)" or hex floats, which from_chars would.
  auto lower_eq = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      char c = a[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != b[i]) return false;
    }
    return true;
  };
  double v;
  if (lower_eq(s, "inf") || lower_eq(s, "infinity")) {
    v = std::numeric_limits<double>::infinity();
  } else if (lower_eq(s, "nan")) {
    v = std::numeric_limits<double>::quiet_NaN();
  } else {
    for (char c : s) {
      if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' ||
            c == '+' || c == '-'))
        return false;
    }
    const auto [ptr, ec] =
        std::from_chars(s.data(), s.data() + s.size(), v,
                        std::chars_format::general);
    if (ptr != s.data() + s.size()) return false;
    if (ec == std::errc::result_out_of_range) {
      // Python gives inf for overflow and 0.0 for underflow; from_chars
      // leaves v unset. Decide by the exponent sign.
      const size_t e = s.find_first_of("eE");
      const bool neg_exp = e != std::string_view::npos && e + 1 < s.size() &&
                           s[e + 1] == '-';
      v = neg_exp ? 0.0 : std::numeric_limits<double>::infinity();
    } else if (ec != std::errc()) {
      return false;
    }
  }
  *value = negative ? -v : v;
  return true;
}

}  // namespace dynahug::hooks::internal

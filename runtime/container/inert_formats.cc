#include "runtime/container/inert_formats.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "hooks/pickle_decoder.h"
#include "runtime/container/sniff.h"

namespace dynahug::runtime {
namespace {

// A small JSON reader for safetensors headers: validates the syntax and
// keeps what the header check needs (numbers as integers where they are
// integers, strings, nesting). Depth-limited; never throws.
class JsonCursor {
 public:
  explicit JsonCursor(std::string_view text) : text_(text) {}

  bool AtEnd() {
    SkipSpace();
    return pos_ == text_.size();
  }
  size_t pos() const { return pos_; }

  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < text_.size() && text_[pos_] == c;
  }

  bool String(std::string& out) {
    out.clear();
    if (!Consume('"')) return false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) return false;
      const char e = text_[pos_++];
      if (e == 'u') {
        if (pos_ + 4 > text_.size()) return false;
        for (int i = 0; i < 4; ++i) {
          if (!absl::ascii_isxdigit(static_cast<unsigned char>(text_[pos_++])))
            return false;
        }
        out += '?';  // names are only compared to ASCII keys
      } else if (strchr("\"\\/bfnrt", e) != nullptr) {
        out += e;
      } else {
        return false;
      }
    }
    return false;
  }

  // A JSON number; `integer` is set when it is a non-negative integer that
  // fits in uint64 (exponents and fractions are not integers here).
  bool Number(std::optional<uint64_t>& integer) {
    SkipSpace();
    const size_t start = pos_;
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    const size_t digits = pos_;
    while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
    if (pos_ == digits) return false;
    bool plain = text_[start] != '-';
    if (pos_ < text_.size() && text_[pos_] == '.') {
      plain = false;
      ++pos_;
      const size_t frac = pos_;
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
      if (pos_ == frac) return false;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      plain = false;
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-'))
        ++pos_;
      const size_t exp = pos_;
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
      if (pos_ == exp) return false;
    }
    integer.reset();
    if (plain) {
      uint64_t v = 0;
      for (size_t i = start; i < pos_; ++i) {
        const uint64_t d = static_cast<uint64_t>(text_[i] - '0');
        if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return true;
        v = v * 10 + d;
      }
      integer = v;
    }
    return true;
  }

  // Skips any JSON value (syntax-checked).
  bool SkipValue(int depth = 0) {
    if (depth > 64) return false;
    SkipSpace();
    if (pos_ >= text_.size()) return false;
    const char c = text_[pos_];
    std::string s;
    std::optional<uint64_t> n;
    if (c == '"') return String(s);
    if (c == '{') {
      ++pos_;
      if (Consume('}')) return true;
      do {
        if (!String(s) || !Consume(':') || !SkipValue(depth + 1)) return false;
      } while (Consume(','));
      return Consume('}');
    }
    if (c == '[') {
      ++pos_;
      if (Consume(']')) return true;
      do {
        if (!SkipValue(depth + 1)) return false;
      } while (Consume(','));
      return Consume(']');
    }
    for (std::string_view word : {"true", "false", "null"}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return true;
      }
    }
    return Number(n);
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
            text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  std::string_view text_;
  size_t pos_ = 0;
};

absl::Status HeaderError(std::string_view what, size_t pos) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors header: ", std::string(what), " at byte ",
                   pos));
}

// One tensor entry: {"dtype": str, "shape": [int...], "data_offsets":
// [begin, end]} (keys in any order, others ignored).
absl::Status ReadTensor(JsonCursor& json, uint64_t data_size) {
  if (!json.Consume('{')) return HeaderError("tensor is not an object", json.pos());
  bool dtype = false, shape = false, offsets = false;
  std::string key, s;
  if (!json.Consume('}')) {
    do {
      if (!json.String(key) || !json.Consume(':')) {
        return HeaderError("bad tensor key", json.pos());
      }
      if (key == "dtype") {
        if (!json.String(s)) return HeaderError("dtype is not a string", json.pos());
        dtype = true;
      } else if (key == "shape" || key == "data_offsets") {
        if (!json.Consume('[')) return HeaderError("expected an array", json.pos());
        std::vector<uint64_t> values;
        if (!json.Consume(']')) {
          do {
            std::optional<uint64_t> n;
            if (!json.Number(n) || !n) {
              return HeaderError("expected a non-negative integer", json.pos());
            }
            values.push_back(*n);
          } while (json.Consume(','));
          if (!json.Consume(']')) return HeaderError("unterminated array", json.pos());
        }
        if (key == "shape") {
          shape = true;
        } else {
          if (values.size() != 2 || values[0] > values[1] ||
              values[1] > data_size) {
            return HeaderError(
                absl::StrCat("data_offsets outside the ", data_size,
                             "-byte data area"),
                json.pos());
          }
          offsets = true;
        }
      } else if (!json.SkipValue()) {
        return HeaderError("bad value", json.pos());
      }
    } while (json.Consume(','));
    if (!json.Consume('}')) return HeaderError("unterminated tensor", json.pos());
  }
  if (!dtype || !shape || !offsets) {
    return HeaderError("tensor without dtype, shape or data_offsets",
                       json.pos());
  }
  return absl::OkStatus();
}

bool ValidUtf8Text(std::span<const uint8_t> data, bool may_be_cut) {
  size_t i = 0;
  while (i < data.size()) {
    const uint8_t c = data[i];
    if (c == 0) return false;
    if (c < 0x80) {
      if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') {
        return false;
      }
      ++i;
      continue;
    }
    size_t n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 9;
    if (n == 9 || c == 0xC0 || c == 0xC1) return false;
    if (i + n >= data.size()) return may_be_cut;  // cut by the head's end
    for (size_t k = 1; k <= n; ++k) {
      if ((data[i + k] & 0xC0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

uint64_t ReadLe64(std::span<const uint8_t> d) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | d[i];
  return v;
}

bool StartsWith(std::span<const uint8_t> data, std::string_view magic) {
  return data.size() >= magic.size() &&
         memcmp(data.data(), magic.data(), magic.size()) == 0;
}

}  // namespace

absl::StatusOr<uint64_t> ValidateSafetensorsHeader(std::string_view header,
                                                   uint64_t size) {
  const uint64_t data_start = 8 + header.size();
  if (data_start > size) return HeaderError("longer than the file", 0);
  const uint64_t data_size = size - data_start;
  JsonCursor json(header);
  if (!json.Consume('{')) return HeaderError("not a JSON object", json.pos());
  uint64_t tensors = 0;
  std::string key;
  if (!json.Consume('}')) {
    do {
      if (!json.String(key) || !json.Consume(':')) {
        return HeaderError("bad key", json.pos());
      }
      if (key == "__metadata__") {
        if (!json.Peek('{') || !json.SkipValue()) {
          return HeaderError("__metadata__ is not an object", json.pos());
        }
        continue;
      }
      if (absl::Status s = ReadTensor(json, data_size); !s.ok()) return s;
      ++tensors;
    } while (json.Consume(','));
    if (!json.Consume('}')) return HeaderError("unterminated object", json.pos());
  }
  if (!json.AtEnd()) return HeaderError("trailing bytes", json.pos());
  return tensors;
}

InertCheck ClassifyInert(std::span<const uint8_t> head,
                         std::span<const uint8_t> tail, uint64_t size,
                         std::string_view name,
                         std::span<const uint8_t> header) {
  using namespace std::string_view_literals;
  // What the container reader could analyse: always loaded.
  if (SniffMagic(head).format != Format::kData || hooks::LooksLikePickle(head) ||
      HasZipEndRecord(tail)) {
    return {InertCheck::kAnalyse, ""};
  }
  // safetensors: u64 header length, then a JSON object.
  if (head.size() >= 9 && head[8] == '{') {
    const uint64_t n = ReadLe64(head);
    if (n >= 2 && n <= kMaxSafetensorsHeader && 8 + n <= size) {
      std::string_view text;
      if (8 + n <= head.size()) {
        text = std::string_view(reinterpret_cast<const char*>(head.data()) + 8, n);
      } else if (header.size() == n) {
        text = std::string_view(reinterpret_cast<const char*>(header.data()), n);
      }
      if (!text.empty()) {
        absl::StatusOr<uint64_t> tensors = ValidateSafetensorsHeader(text, size);
        if (!tensors.ok()) {
          return {InertCheck::kInvalid, std::string(tensors.status().message())};
        }
        return {InertCheck::kSkip,
                absl::StrCat("safetensors (", *tensors,
                             " tensors, header valid): no code-execution path"),
                true};
      }
    }
  }
  if (StartsWith(head, "GGUF"sv)) {
    return {InertCheck::kSkip, "GGUF: no code-execution path", true};
  }
  if (StartsWith(head, "\x89HDF\r\n\x1a\n"sv)) {
    return {InertCheck::kSkip,
            "HDF5 (Keras .h5): not analysed (no pickle; Keras Lambda layers "
            "can carry code, which dynahug does not check)"};
  }
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  if (absl::EndsWith(lower, ".onnx")) {
    return {InertCheck::kSkip, "ONNX: not analysed (no pickle found)"};
  }
  if (ValidUtf8Text(head, size > head.size())) {
    size_t i = 0;
    while (i < head.size() && absl::ascii_isspace(head[i])) ++i;
    const bool json = absl::EndsWith(lower, ".json") ||
                      (i < head.size() && (head[i] == '{' || head[i] == '['));
    return {InertCheck::kSkip,
            json ? "JSON: no code-execution path" : "text: no code-execution path",
            true};
  }
  return {InertCheck::kSkip,
          "unknown data: no pickle, archive or known model format (nothing a "
          "pickle-based loader would execute)"};
}

absl::StatusOr<InertCheck> CheckInertFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": ", strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  struct stat st{};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) return InertCheck{InertCheck::kSkip, "empty file", true};
  auto read_at = [&](uint64_t offset, size_t n,
                     std::vector<uint8_t>& out) -> absl::Status {
    out.resize(n);
    size_t done = 0;
    while (done < n) {
      const ssize_t r = pread(fd, out.data() + done, n - done,
                              static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        return absl::DataLossError(absl::StrCat(path, ": read: ", strerror(errno)));
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    out.resize(done);
    return absl::OkStatus();
  };
  std::vector<uint8_t> head, tail, header;
  if (absl::Status s = read_at(0, std::min<uint64_t>(size, kInertHeadBytes), head);
      !s.ok()) {
    return s;
  }
  const uint64_t tail_len = std::min<uint64_t>(size, kInertTailBytes);
  if (absl::Status s = read_at(size - tail_len, tail_len, tail); !s.ok()) return s;
  if (head.size() >= 9 && head[8] == '{') {
    const uint64_t n = ReadLe64(head);
    if (8 + n > head.size() && n <= kMaxSafetensorsHeader && 8 + n <= size) {
      if (absl::Status s = read_at(8, n, header); !s.ok()) return s;
    }
  }
  std::string_view name = path;
  if (const size_t slash = name.rfind('/'); slash != std::string_view::npos) {
    name = name.substr(slash + 1);
  }
  return ClassifyInert(head, tail, size, name, header);
}

}  // namespace dynahug::runtime

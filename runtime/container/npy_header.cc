#include "runtime/container/npy_header.h"

#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dynahug::runtime {
namespace {

constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr int kMaxNesting = 32;

struct Value {
  enum class Kind { kStr, kInt, kBool, kNone, kTuple, kList, kDict };
  Kind kind = Kind::kNone;
  std::string str;
  uint64_t num = 0;
  bool negative = false;
  bool flag = false;
  std::vector<Value> items;                     // tuple, list
  std::vector<Value> keys;  // dict, parallel to `values`
  std::vector<Value> values;
};

// Recursive-descent parser for the literal subset numpy writes.
class LiteralParser {
 public:
  explicit LiteralParser(std::string_view text) : text_(text) {}

  absl::StatusOr<Value> ParseAll() {
    auto v = ParseValue(0);
    if (!v.ok()) return v.status();
    SkipSpace();
    if (pos_ != text_.size()) return Fail("unexpected trailing characters");
    return v;
  }

 private:
  absl::Status Fail(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("npy: header dict: ", std::string(what), " at header offset ", pos_));
  }
  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
            text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  absl::StatusOr<Value> ParseValue(int depth) {
    if (depth > kMaxNesting) return Fail("nesting too deep");
    SkipSpace();
    if (pos_ >= text_.size()) return Fail("unexpected end");
    char c = text_[pos_];
    if (c == '\'' || c == '"') return ParseString();
    if (c == '{') return ParseDict(depth);
    if (c == '(' || c == '[') return ParseSequence(depth);
    if (c == '-' || (c >= '0' && c <= '9')) return ParseInt();
    for (auto [word, kind, flag] :
         {std::tuple{"True", Value::Kind::kBool, true},
          std::tuple{"False", Value::Kind::kBool, false},
          std::tuple{"None", Value::Kind::kNone, false}}) {
      size_t len = std::strlen(word);
      if (text_.substr(pos_, len) == word) {
        pos_ += len;
        Value v;
        v.kind = kind;
        v.flag = flag;
        return v;
      }
    }
    return Fail(absl::StrCat("unexpected character '", std::string(1, c), "'"));
  }

  absl::StatusOr<Value> ParseString() {
    char quote = text_[pos_++];
    Value v;
    v.kind = Value::Kind::kStr;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      char c = text_[pos_++];
      if (c == '\\') {
        if (pos_ >= text_.size()) break;
        char e = text_[pos_++];
        switch (e) {
          case 'n':
            v.str += '\n';
            break;
          case 't':
            v.str += '\t';
            break;
          default:
            v.str += e;  // \\, \', \" and anything else literally
        }
      } else {
        v.str += c;
      }
    }
    if (pos_ >= text_.size()) return Fail("unterminated string");
    ++pos_;
    return v;
  }

  absl::StatusOr<Value> ParseInt() {
    Value v;
    v.kind = Value::Kind::kInt;
    if (text_[pos_] == '-') {
      v.negative = true;
      ++pos_;
    }
    size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      uint64_t digit = static_cast<uint64_t>(text_[pos_] - '0');
      if (v.num > (UINT64_MAX - digit) / 10) return Fail("integer too large");
      v.num = v.num * 10 + digit;
      ++pos_;
    }
    if (pos_ == start) return Fail("expected digits");
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2 longs
    return v;
  }

  absl::StatusOr<Value> ParseSequence(int depth) {
    char open = text_[pos_++];
    char close = open == '(' ? ')' : ']';
    Value v;
    v.kind = open == '(' ? Value::Kind::kTuple : Value::Kind::kList;
    for (;;) {
      if (Consume(close)) return v;
      auto item = ParseValue(depth + 1);
      if (!item.ok()) return item.status();
      v.items.push_back(std::move(*item));
      if (Consume(',')) continue;
      if (Consume(close)) return v;
      return Fail(absl::StrCat("expected ',' or '", std::string(1, close),
                               "'"));
    }
  }

  absl::StatusOr<Value> ParseDict(int depth) {
    ++pos_;
    Value v;
    v.kind = Value::Kind::kDict;
    for (;;) {
      if (Consume('}')) return v;
      auto key = ParseValue(depth + 1);
      if (!key.ok()) return key.status();
      if (!Consume(':')) return Fail("expected ':'");
      auto value = ParseValue(depth + 1);
      if (!value.ok()) return value.status();
      v.keys.push_back(std::move(*key));
      v.values.push_back(std::move(*value));
      if (Consume(',')) continue;
      if (Consume('}')) return v;
      return Fail("expected ',' or '}'");
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

bool IsObjectTypeString(std::string_view s) {
  if (!s.empty() && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) {
    s.remove_prefix(1);
  }
  return !s.empty() && s[0] == 'O';
}

// Whether a descr value (string, or list of field tuples) holds objects.
bool HasObject(const Value& v, bool field_type_position) {
  switch (v.kind) {
    case Value::Kind::kStr:
      return field_type_position && IsObjectTypeString(v.str);
    case Value::Kind::kTuple:
      // (name, type[, shape]): the type is the second element.
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (HasObject(v.items[i], i == 1)) return true;
      }
      return false;
    case Value::Kind::kList:
      for (const Value& item : v.items) {
        if (HasObject(item, false)) return true;
      }
      return false;
    default:
      return false;
  }
}

void Repr(const Value& v, std::string& out) {
  switch (v.kind) {
    case Value::Kind::kStr:
      absl::StrAppend(&out, "'", v.str, "'");
      break;
    case Value::Kind::kInt:
      absl::StrAppend(&out, v.negative ? "-" : "", v.num);
      break;
    case Value::Kind::kBool:
      out += v.flag ? "True" : "False";
      break;
    case Value::Kind::kNone:
      out += "None";
      break;
    case Value::Kind::kTuple:
    case Value::Kind::kList: {
      out += v.kind == Value::Kind::kTuple ? '(' : '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ", ";
        Repr(v.items[i], out);
      }
      out += v.kind == Value::Kind::kTuple ? ')' : ']';
      break;
    }
    case Value::Kind::kDict:
      out += "{...}";
      break;
  }
}

}  // namespace

bool HasNpyMagic(std::span<const uint8_t> data) {
  return data.size() >= sizeof(kMagic) &&
         std::memcmp(data.data(), kMagic, sizeof(kMagic)) == 0;
}

absl::StatusOr<NpyHeader> ParseNpyHeader(std::span<const uint8_t> data) {
  if (!HasNpyMagic(data)) {
    return absl::InvalidArgumentError("npy: missing magic \"\\x93NUMPY\"");
  }
  if (data.size() < 8) {
    return absl::OutOfRangeError(absl::StrCat(
        "npy: version at offset 6 runs past end of data (size ", data.size(),
        ")"));
  }
  NpyHeader h;
  h.major = data[6];
  h.minor = data[7];
  uint64_t len_size;
  if (h.major == 1) {
    len_size = 2;
  } else if (h.major == 2 || h.major == 3) {
    len_size = 4;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "npy: unsupported format version ", h.major, ".", h.minor));
  }
  if (data.size() < 8 + len_size) {
    return absl::OutOfRangeError(absl::StrCat(
        "npy: header length at offset 8 runs past end of data (size ",
        data.size(), ")"));
  }
  uint64_t header_len = data[8] | (uint64_t{data[9]} << 8);
  if (len_size == 4) {
    header_len |= (uint64_t{data[10]} << 16) | (uint64_t{data[11]} << 24);
  }
  uint64_t start = 8 + len_size;
  if (header_len > data.size() - start) {
    return absl::OutOfRangeError(absl::StrCat(
        "npy: header length ", header_len, " at offset 8 runs past end of data (size ",
        data.size(), ")"));
  }
  std::string_view text(reinterpret_cast<const char*>(data.data() + start),
                        header_len);
  // numpy pads with spaces and ends the header with '\n'.
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' ||
                           text.back() == '\0')) {
    text.remove_suffix(1);
  }
  auto value = LiteralParser(text).ParseAll();
  if (!value.ok()) return value.status();
  if (value->kind != Value::Kind::kDict) {
    return absl::InvalidArgumentError("npy: header is not a dict");
  }
  bool have_descr = false, have_shape = false;
  for (size_t i = 0; i < value->keys.size(); ++i) {
    const Value& key = value->keys[i];
    const Value& v = value->values[i];
    if (key.kind != Value::Kind::kStr) continue;
    if (key.str == "descr") {
      have_descr = true;
      if (v.kind == Value::Kind::kStr) {
        h.descr = v.str;
        h.has_object = IsObjectTypeString(v.str);
      } else if (v.kind == Value::Kind::kList) {
        Repr(v, h.descr);
        h.has_object = HasObject(v, false);
      } else {
        return absl::InvalidArgumentError(
            "npy: 'descr' is neither a string nor a list");
      }
    } else if (key.str == "fortran_order") {
      if (v.kind != Value::Kind::kBool) {
        return absl::InvalidArgumentError("npy: 'fortran_order' is not a bool");
      }
      h.fortran_order = v.flag;
    } else if (key.str == "shape") {
      have_shape = true;
      if (v.kind != Value::Kind::kTuple) {
        return absl::InvalidArgumentError("npy: 'shape' is not a tuple");
      }
      for (const Value& dim : v.items) {
        if (dim.kind != Value::Kind::kInt || dim.negative) {
          return absl::InvalidArgumentError(
              "npy: 'shape' holds a non-integer or negative dimension");
        }
        h.shape.push_back(dim.num);
      }
    }
  }
  if (!have_descr) {
    return absl::InvalidArgumentError("npy: header has no 'descr' key");
  }
  if (!have_shape) {
    return absl::InvalidArgumentError("npy: header has no 'shape' key");
  }
  h.data_offset = start + header_len;
  return h;
}

}  // namespace dynahug::runtime

// A small streaming JSON writer for CLI output. Produces compact or indented
// RFC 8259 JSON; strings are escaped (control characters, quotes, invalid
// UTF-8 bytes become U+FFFD) so any bytes can be written safely.
// Not thread-safe; the caller keeps calls balanced (BeginObject/EndObject).
#ifndef DYNAHUG_RUNTIME_CLI_JSON_WRITER_H_
#define DYNAHUG_RUNTIME_CLI_JSON_WRITER_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace dynahug::runtime {

class JsonWriter {
 public:
  // indent = 0 writes compact JSON on one line.
  explicit JsonWriter(int indent = 0) : indent_(indent) {}

  void BeginObject();
  void EndObject();
  void BeginArray();
  void EndArray();
  // Inside an object: the next value's key.
  void Key(std::string_view key);

  void String(std::string_view value);
  void Int(int64_t value);
  void Uint(uint64_t value);
  void Double(double value);  // non-finite values are written as null
  void Bool(bool value);
  void Null();

  // Convenience: Key + value.
  void Field(std::string_view key, std::string_view value) {
    Key(key);
    String(value);
  }
  void Field(std::string_view key, const char* value) {
    Key(key);
    String(value);
  }
  void Field(std::string_view key, uint64_t value) {
    Key(key);
    Uint(value);
  }
  void Field(std::string_view key, int value) {
    Key(key);
    Int(value);
  }
  void Field(std::string_view key, bool value) {
    Key(key);
    Bool(value);
  }
  void Field(std::string_view key, double value) {
    Key(key);
    Double(value);
  }

  // The JSON written since construction or the last Flush().
  const std::string& str() const { return out_; }

  // Writes str() to `out` and forgets it, keeping the nesting state, so
  // that a large document can be streamed in pieces with memory bounded by
  // what is written between two calls. The pieces concatenate to exactly
  // what str() would have held without any Flush().
  void Flush(std::ostream& out);

  // Appends `value` to `out` as a quoted, escaped JSON string.
  static void AppendQuoted(std::string& out, std::string_view value);

 private:
  void BeforeValue();
  void Newline();

  struct Level {
    bool is_object = false;
    bool empty = true;
  };
  int indent_;
  bool after_key_ = false;
  std::vector<Level> stack_;
  std::string out_;
};

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_JSON_WRITER_H_

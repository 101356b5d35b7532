#include "runtime/cli/json_writer.h"

#include <cmath>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace dynahug::runtime {
namespace {

TEST(JsonWriterTest, CompactNesting) {
  JsonWriter json;
  json.BeginObject();
  json.Field("a", uint64_t{1});
  json.Key("b");
  json.BeginArray();
  json.Int(-2);
  json.Bool(true);
  json.Null();
  json.BeginObject();
  json.EndObject();
  json.BeginArray();
  json.EndArray();
  json.EndArray();
  json.Field("c", "x");
  json.EndObject();
  EXPECT_EQ(json.str(), R"({"a":1,"b":[-2,true,null,{},[]],"c":"x"})");
}

TEST(JsonWriterTest, FlushedPiecesConcatenateToTheWholeDocument) {
  auto write = [](JsonWriter& json, std::ostream* flush_to) {
    json.BeginObject();
    json.Key("l");
    json.BeginArray();
    for (int i = 0; i < 3; ++i) {
      if (flush_to != nullptr) json.Flush(*flush_to);
      json.BeginObject();
      json.Field("i", i);
      json.EndObject();
    }
    json.EndArray();
    if (flush_to != nullptr) json.Flush(*flush_to);
    json.Field("k", "v");
    json.EndObject();
  };
  JsonWriter whole(2);
  write(whole, nullptr);
  JsonWriter pieces(2);
  std::ostringstream out;
  write(pieces, &out);
  EXPECT_EQ(pieces.str(), ",\n  \"k\": \"v\"\n}");  // since the last Flush
  pieces.Flush(out);
  EXPECT_EQ(pieces.str(), "");
  EXPECT_EQ(out.str(), whole.str());
}

TEST(JsonWriterTest, Indented) {
  JsonWriter json(2);
  json.BeginObject();
  json.Field("k", "v");
  json.Key("l");
  json.BeginArray();
  json.Uint(1);
  json.EndArray();
  json.EndObject();
  EXPECT_EQ(json.str(), "{\n  \"k\": \"v\",\n  \"l\": [\n    1\n  ]\n}");
}

struct EscapeCase {
  std::string input;
  std::string expected;
};

class JsonEscapeTest : public testing::TestWithParam<EscapeCase> {};

TEST_P(JsonEscapeTest, Escapes) {
  std::string out;
  JsonWriter::AppendQuoted(out, GetParam().input);
  EXPECT_EQ(out, GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, JsonEscapeTest,
    testing::Values(
        EscapeCase{"plain", "\"plain\""},
        EscapeCase{"q\"b\\", "\"q\\\"b\\\\\""},
        EscapeCase{"\n\r\t", "\"\\n\\r\\t\""},
        EscapeCase{std::string("\x01\x7f", 2), "\"\\u0001\\u007f\""},
        EscapeCase{std::string("nul\0x", 5), "\"nul\\u0000x\""},
        EscapeCase{"caf\xc3\xa9", "\"caf\xc3\xa9\""},            // valid UTF-8
        EscapeCase{"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""},  // 4-byte
        EscapeCase{"bad\xff", "\"bad\\ufffd\""},                 // invalid
        EscapeCase{"\xc3", "\"\\ufffd\""},                       // truncated
        EscapeCase{"\xc0\x80", "\"\\ufffd\\ufffd\""},            // overlong
        EscapeCase{"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""}  // surrogate
        ));

TEST(JsonWriterTest, NonFiniteDoublesAreNull) {
  JsonWriter json;
  json.BeginArray();
  json.Double(1.5);
  json.Double(NAN);
  json.Double(INFINITY);
  json.EndArray();
  EXPECT_EQ(json.str(), "[1.5,null,null]");
}

}  // namespace
}  // namespace dynahug::runtime

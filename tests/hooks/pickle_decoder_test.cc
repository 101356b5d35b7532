// Unit tests of the static pickle decoder on hand-built streams: every
// opcode's argument, every error path, memo tricks, joblib wrappers, deep
// nesting and stats. The differential test (pickle_differential_test.cc)
// covers real pickles against pickletools.
#include "hooks/pickle_decoder.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace dynahug::hooks {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes B(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Builds pickle streams opcode by opcode.
class P {
 public:
  P& Op(Opcode op) {
    b_.push_back(static_cast<uint8_t>(op));
    return *this;
  }
  P& Raw(std::string_view s) {
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  P& U8(uint8_t v) {
    b_.push_back(v);
    return *this;
  }
  P& U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  P& U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  P& Proto(uint8_t p) { return Op(Opcode::kProto).U8(p); }
  P& Str(std::string_view s) {  // SHORT_BINUNICODE
    return Op(Opcode::kShortBinunicode).U8(static_cast<uint8_t>(s.size())).Raw(s);
  }
  P& Int1(uint8_t v) { return Op(Opcode::kBinint1).U8(v); }
  P& Int4(int32_t v) { return Op(Opcode::kBinint).U32(static_cast<uint32_t>(v)); }
  P& Global(std::string_view m, std::string_view n) {
    return Str(m).Str(n).Op(Opcode::kStackGlobal);
  }
  Bytes bytes() const { return b_; }
  size_t size() const { return b_.size(); }

 private:
  Bytes b_;
};

PickleStream Decode(const Bytes& data, bool keep_ops = true,
                    uint64_t base_offset = 0) {
  DecodeOptions options;
  options.keep_ops = keep_ops;
  options.base_offset = base_offset;
  return DecodePickle(data, options);
}

std::string Hex(std::span<const uint8_t> b) {
  std::string out;
  char buf[4];
  for (uint8_t c : b) {
    std::snprintf(buf, sizeof(buf), "%02x", c);
    out += buf;
  }
  return out;
}

// Compact description of one decoded opcode, for table-driven checks.
std::string Describe(const DecodedOp& op) {
  std::string s(OpcodeName(op.opcode));
  const OpArg& a = op.arg;
  char buf[64];
  switch (a.kind) {
    case OpArg::Kind::kNone: break;
    case OpArg::Kind::kInt: s += " i:" + std::to_string(a.int_value); break;
    case OpArg::Kind::kBool: s += a.int_value ? " b:1" : " b:0"; break;
    case OpArg::Kind::kBigInt:
      if (op.opcode == Opcode::kLong1 || op.opcode == Opcode::kLong4) {
        s += " big:" + FormatBigInt(a.bytes);
      } else {
        s += " big:" + std::string(reinterpret_cast<const char*>(a.bytes.data()),
                                   a.bytes.size());
      }
      break;
    case OpArg::Kind::kFloat:
      std::snprintf(buf, sizeof(buf), " f:%.17g", a.float_value);
      s += buf;
      break;
    case OpArg::Kind::kText:
      s += (a.needs_unescape ? " esc:" : " t:") + std::string(a.text);
      break;
    case OpArg::Kind::kBytes: s += " y:" + Hex(a.bytes); break;
    case OpArg::Kind::kQuoted: s += " q:" + std::string(a.text); break;
    case OpArg::Kind::kGlobal:
      s += " g:" + std::string(a.text) + " " + std::string(a.text2);
      break;
  }
  switch (op.memo.kind) {
    case MemoEffect::Kind::kNone: break;
    case MemoEffect::Kind::kPut: s += " put:" + std::to_string(op.memo.index); break;
    case MemoEffect::Kind::kGet: s += " get:" + std::to_string(op.memo.index); break;
    case MemoEffect::Kind::kMemoize:
      s += " memoize:" + std::to_string(op.memo.index);
      break;
  }
  return s;
}

std::vector<std::string> DescribeAll(const PickleStream& s) {
  std::vector<std::string> out;
  for (const DecodedOp& op : s.ops) out.push_back(Describe(op));
  return out;
}

// ---------------------------------------------------------------------------
// Every opcode and its argument.

struct OpCase {
  const char* name;
  std::string data;                // a complete pickle
  std::vector<std::string> ops;    // Describe() of every opcode
};

// A string literal with embedded NULs kept.
#define LIT(s) std::string(s, sizeof(s) - 1)

const std::vector<OpCase>& OpCases() {
  static const auto* cases = new std::vector<OpCase>{
      {"none_bools", "\x80\x02(N\x88\x89t.",
       {"PROTO i:2", "MARK", "NONE", "NEWTRUE", "NEWFALSE", "TUPLE", "STOP"}},
      {"binints", LIT("(K\xffM\xff\xffJ\xff\xff\xff\xfft."),
       {"MARK", "BININT1 i:255", "BININT2 i:65535", "BININT i:-1", "TUPLE",
        "STOP"}},
      {"int_text", "(I00\nI01\nI-42\nI 7 \nI123456789012345678901\nI1_000\nt.",
       {"MARK", "INT b:0", "INT b:1", "INT i:-42", "INT i:7",
        "INT big:123456789012345678901", "INT i:1000", "TUPLE", "STOP"}},
      {"long_text", "(L5L\nL-99999999999999999999L\nL12\nt.",
       {"MARK", "LONG i:5", "LONG big:-99999999999999999999", "LONG i:12",
        "TUPLE", "STOP"}},
      {"long1_long4",
       LIT("(\x8a\x00\x8a\x01\xff\x8a\x02\xff\x00\x8a\x09\x00\x00\x00\x00\x00"
         "\x00\x00\x00\x01\x8b\x01\x00\x00\x00\x80t."),
       {"MARK", "LONG1 i:0", "LONG1 i:-1", "LONG1 i:255",
        "LONG1 big:18446744073709551616", "LONG4 i:-128", "TUPLE", "STOP"}},
      {"floats",
       LIT("(F1.5\nFinf\nF-0.0\nG\x3f\xf8\x00\x00\x00\x00\x00\x00t."),
       {"MARK", "FLOAT f:1.5", "FLOAT f:inf", "FLOAT f:-0", "BINFLOAT f:1.5",
        "TUPLE", "STOP"}},
      {"strings_p0", "(S'a\\nb'\nS\"q\"\nVh\\u00e9\nt.",
       {"MARK", "STRING q:'a\\nb'", "STRING q:\"q\"", "UNICODE esc:h\\u00e9",
        "TUPLE", "STOP"}},
      {"binstrings", LIT("(U\x02hiT\x01\x00\x00\x00zt."),
       {"MARK", "SHORT_BINSTRING y:6869", "BINSTRING y:7a", "TUPLE", "STOP"}},
      {"unicode_bin",
       LIT("(\x8c\x02\xc3\xa9X\x01\x00\x00\x00" "a\x8d\x01\x00\x00\x00\x00\x00"
           "\x00\x00" "bt."),
       {"MARK", "SHORT_BINUNICODE t:\xc3\xa9", "BINUNICODE t:a",
        "BINUNICODE8 t:b", "TUPLE", "STOP"}},
      {"bytes",
       LIT("(C\x01\x00" "B\x02\x00\x00\x00\x01\x02\x8e\x01\x00\x00\x00\x00\x00\x00"
         "\x00\xff\x96\x00\x00\x00\x00\x00\x00\x00\x00t."),
       {"MARK", "SHORT_BINBYTES y:00", "BINBYTES y:0102", "BINBYTES8 y:ff",
        "BYTEARRAY8 y:", "TUPLE", "STOP"}},
      {"containers", "\x80\x04]K\x01" "a(K\x02K\x03" "e}K\x04K\x05s\x8f(K\x06\x90"
                     "(K\x07\x91(K\x08l(K\x09K\x0a" "d)\x85\x86\x87.",
       {"PROTO i:4", "EMPTY_LIST", "BININT1 i:1", "APPEND", "MARK",
        "BININT1 i:2", "BININT1 i:3", "APPENDS", "EMPTY_DICT", "BININT1 i:4",
        "BININT1 i:5", "SETITEM", "EMPTY_SET", "MARK", "BININT1 i:6",
        "ADDITEMS", "MARK", "BININT1 i:7", "FROZENSET", "MARK",
        "BININT1 i:8", "LIST", "MARK", "BININT1 i:9", "BININT1 i:10", "DICT",
        "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "STOP"}},
      {"setitems", "}(K\x01K\x02K\x03K\x04u.",
       {"EMPTY_DICT", "MARK", "BININT1 i:1", "BININT1 i:2", "BININT1 i:3",
        "BININT1 i:4", "SETITEMS", "STOP"}},
      {"stack_ops", "K\x01(K\x02" "1K\x03" "2(0N0.",
       {"BININT1 i:1", "MARK", "BININT1 i:2", "POP_MARK", "BININT1 i:3",
        "DUP", "MARK", "POP", "NONE", "POP", "STOP"}},
      {"memo_text", "Np0\ng0\np12345678901\ng12345678901\n.",
       {"NONE", "PUT i:0 put:0", "GET i:0 get:0",
        "PUT i:12345678901 put:12345678901",
        "GET i:12345678901 get:12345678901", "STOP"}},
      {"memo_bin", LIT("Nq\x07h\x07r\xff\xff\xff\xffj\xff\xff\xff\xff\x94."),
       {"NONE", "BINPUT i:7 put:7", "BINGET i:7 get:7",
        "LONG_BINPUT i:4294967295 put:4294967295",
        "LONG_BINGET i:4294967295 get:4294967295", "MEMOIZE memoize:2",
        "STOP"}},
      {"globals_calls",
       "ccollections\nOrderedDict\n)R(ccollections\nOrderedDict\no"
       "(ibuiltins\nobject\n}b\x80\x04\x8c\x01" "a\x8c\x01" "b\x93)\x81\x8c\x01"
       "c\x8c\x01" "d\x93)}\x92.",
       {"GLOBAL g:collections OrderedDict", "EMPTY_TUPLE", "REDUCE", "MARK",
        "GLOBAL g:collections OrderedDict", "OBJ", "MARK",
        "INST g:builtins object", "EMPTY_DICT", "BUILD", "PROTO i:4",
        "SHORT_BINUNICODE t:a", "SHORT_BINUNICODE t:b", "STACK_GLOBAL",
        "EMPTY_TUPLE", "NEWOBJ", "SHORT_BINUNICODE t:c",
        "SHORT_BINUNICODE t:d", "STACK_GLOBAL", "EMPTY_TUPLE", "EMPTY_DICT",
        "NEWOBJ_EX", "STOP"}},
      {"ext", LIT("\x82\x01\x83\x02\x01\x84\x03\x00\x00\x00."),
       {"EXT1 i:1", "EXT2 i:258", "EXT4 i:3", "STOP"}},
      {"persid_buffers", "Pid\nQ\x97\x98.",
       {"PERSID t:id", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER", "STOP"}},
      {"frame",
       LIT("\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00N."),
       {"PROTO i:4", "FRAME i:2", "NONE", "STOP"}},
  };
  return *cases;
}

TEST(PickleDecoderTest, EveryOpcodeArgument) {
  std::vector<bool> seen(256, false);
  for (const OpCase& c : OpCases()) {
    SCOPED_TRACE(c.name);
    const Bytes data = B(c.data);  // the decoded views point into it
    const PickleStream s = Decode(data);
    ASSERT_FALSE(s.error.has_value()) << s.error->message;
    EXPECT_TRUE(s.complete);
    EXPECT_EQ(s.length, c.data.size());
    EXPECT_EQ(DescribeAll(s), c.ops);
    for (const DecodedOp& op : s.ops) seen[static_cast<uint8_t>(op.opcode)] = true;
    // Without keep_ops the same stream decodes the same way.
    const PickleStream fast = Decode(data, /*keep_ops=*/false);
    EXPECT_TRUE(fast.complete);
    EXPECT_TRUE(fast.ops.empty());
    EXPECT_EQ(fast.length, s.length);
    EXPECT_EQ(fast.stats.histogram, s.stats.histogram);
    EXPECT_EQ(fast.globals.size(), s.globals.size());
  }
  for (int b = 0; b < 256; ++b) {
    if (IsKnownOpcode(static_cast<uint8_t>(b))) {
      EXPECT_TRUE(seen[b]) << "no case for " << OpcodeName(static_cast<Opcode>(b));
    }
  }
}

TEST(PickleDecoderTest, OffsetsAreAbsolute) {
  const Bytes data = B("\x80\x02N.");
  const PickleStream s = Decode(data, true, 1000);
  ASSERT_TRUE(s.complete);
  EXPECT_EQ(s.offset, 1000u);
  EXPECT_EQ(s.length, 4u);
  ASSERT_EQ(s.ops.size(), 3u);
  EXPECT_EQ(s.ops[0].offset, 1000u);
  EXPECT_EQ(s.ops[1].offset, 1002u);
  EXPECT_EQ(s.ops[2].offset, 1003u);
}

TEST(PickleDecoderTest, StopsAtStopWithTrailingBytes) {
  const Bytes data = B("N.garbage\xff");
  const PickleStream s = Decode(data);
  EXPECT_TRUE(s.complete);
  EXPECT_FALSE(s.error.has_value());
  EXPECT_EQ(s.length, 2u);
}

// ---------------------------------------------------------------------------
// Errors: the decoder stops at the first broken opcode.

struct ErrorCase {
  const char* name;
  std::string data;
  std::string message;  // exact
  uint64_t offset;      // of the failing opcode
  size_t ops_before;    // opcodes decoded before it
};

const std::vector<ErrorCase>& ErrorCases() {
  static const auto* cases = new std::vector<ErrorCase>{
      {"empty", "", "pickle: stream ends at offset 0 without STOP", 0, 0},
      {"no_stop", "N", "pickle: stream ends at offset 1 without STOP", 1, 1},
      {"unknown", "NN\xff", "pickle: unknown opcode 0xff at offset 2", 2, 2},
      {"unknown_gap", "\x99", "pickle: unknown opcode 0x99 at offset 0", 0, 0},
      {"truncated_binint", LIT("J\x01\x02"),
       "pickle: BININT argument at offset 0 is truncated (needs 4 bytes, 2 "
       "remain)",
       0, 0},
      {"truncated_binint1", "K",
       "pickle: BININT1 argument at offset 0 is truncated (needs 1 bytes, 0 "
       "remain)",
       0, 0},
      {"truncated_binfloat", "G\x01",
       "pickle: BINFLOAT argument at offset 0 is truncated (needs 8 bytes, 1 "
       "remain)",
       0, 0},
      {"truncated_frame_len", "\x95\x01",
       "pickle: FRAME argument at offset 0 is truncated (needs 8 bytes, 1 "
       "remain)",
       0, 0},
      {"binunicode_len", "X\xff\xff\xff\xff" "abc",
       "pickle: BINUNICODE length 4294967295 at offset 0 runs past end of "
       "stream (size 8)",
       0, 0},
      {"short_binunicode_len", "N\x8c\x05" "ab",
       "pickle: SHORT_BINUNICODE length 5 at offset 1 runs past end of "
       "stream (size 5)",
       1, 1},
      {"binbytes8_len", "\x8e\xff\xff\xff\xff\xff\xff\xff\xff",
       "pickle: BINBYTES8 length 18446744073709551615 at offset 0 runs past "
       "end of stream (size 9)",
       0, 0},
      {"bytearray8_len", LIT("\x96\x10\x00\x00\x00\x00\x00\x00\x00"),
       "pickle: BYTEARRAY8 length 16 at offset 0 runs past end of stream "
       "(size 9)",
       0, 0},
      {"binunicode8_len", LIT("\x8d\x10\x00\x00\x00\x00\x00\x00\x00"),
       "pickle: BINUNICODE8 length 16 at offset 0 runs past end of stream "
       "(size 9)",
       0, 0},
      {"binbytes_len", LIT("B\x10\x00\x00\x00"),
       "pickle: BINBYTES length 16 at offset 0 runs past end of stream (size "
       "5)",
       0, 0},
      {"short_binbytes_len", "C\x10",
       "pickle: SHORT_BINBYTES length 16 at offset 0 runs past end of stream "
       "(size 2)",
       0, 0},
      {"short_binstring_len", "U\x10",
       "pickle: SHORT_BINSTRING length 16 at offset 0 runs past end of "
       "stream (size 2)",
       0, 0},
      {"binstring_negative", "T\xff\xff\xff\xff",
       "pickle: BINSTRING length -1 at offset 0 is negative", 0, 0},
      {"binstring_len", LIT("T\x10\x00\x00\x00"),
       "pickle: BINSTRING length 16 at offset 0 runs past end of stream "
       "(size 5)",
       0, 0},
      {"long1_len", "\x8a\x05\x01",
       "pickle: LONG1 length 5 at offset 0 runs past end of stream (size 3)",
       0, 0},
      {"long4_negative", "\x8b\xff\xff\xff\xff",
       "pickle: LONG4 length -1 at offset 0 is negative", 0, 0},
      {"long4_len", LIT("\x8b\x10\x00\x00\x00"),
       "pickle: LONG4 length 16 at offset 0 runs past end of stream (size 5)",
       0, 0},
      {"frame_len", "\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f",
       "pickle: FRAME length 9223372036854775807 at offset 2 runs past end "
       "of stream (size 11)",
       2, 1},
      {"int_text", "Iabc\n.",
       "pickle: INT argument 'abc' at offset 0 is not an integer", 0, 0},
      {"int_empty", "I\n.", "pickle: INT argument '' at offset 0 is not an integer",
       0, 0},
      {"int_no_newline", "I12",
       "pickle: INT argument at offset 0 has no terminating newline", 0, 0},
      {"long_text", "L12x\n.",
       "pickle: LONG argument '12x' at offset 0 is not an integer", 0, 0},
      {"float_text", "Fx1\n.",
       "pickle: FLOAT argument 'x1' at offset 0 is not a float", 0, 0},
      {"float_hex", "F0x1p3\n.",
       "pickle: FLOAT argument '0x1p3' at offset 0 is not a float", 0, 0},
      {"float_no_newline", "F1.5",
       "pickle: FLOAT argument at offset 0 has no terminating newline", 0, 0},
      {"string_unquoted", "Sabc\n.",
       "pickle: STRING argument 'abc' at offset 0 is not quoted", 0, 0},
      {"string_one_quote", "S'\n.",
       "pickle: STRING argument '\\x27' at offset 0 is not quoted", 0, 0},
      {"string_mismatch", "S'abc\"\n.",
       "pickle: STRING argument '\\x27abc\"' at offset 0 is not quoted", 0,
       0},
      {"string_bad_escape", "S'\\x4'\n.",
       "pickle: STRING argument '\\x27\\x5cx4\\x27' at offset 0 has an invalid "
       "escape",
       0, 0},
      {"unicode_escape", "V\\u12\n.",
       "pickle: UNICODE argument '\\x5cu12' at offset 0 has a truncated or "
       "out-of-range \\u escape",
       0, 0},
      {"unicode_range", "V\\U00110000\n.",
       "pickle: UNICODE argument '\\x5cU00110000' at offset 0 has a truncated "
       "or out-of-range \\u escape",
       0, 0},
      {"bad_utf8", LIT("X\x02\x00\x00\x00\xc3\x28."),
       "pickle: BINUNICODE at offset 0 is not valid UTF-8", 0, 0},
      {"overlong_utf8", "\x8c\x02\xc0\xaf.",
       "pickle: SHORT_BINUNICODE at offset 0 is not valid UTF-8", 0, 0},
      {"global_no_newline", "cos\nsystem",
       "pickle: GLOBAL argument at offset 0 has no terminating newline", 0,
       0},
      {"global_bad_utf8", "cos\xff\nsystem\n.",
       "pickle: GLOBAL argument at offset 0 is not valid UTF-8", 0, 0},
      {"persid_non_ascii", "Pab\xff\n.",
       "pickle: PERSID argument at offset 0 is not ASCII", 0, 0},
      {"put_negative", "Np-1\n.",
       "pickle: PUT index '-1' at offset 1 is out of range", 1, 1},
      {"get_text", "Ngx\n.",
       "pickle: GET argument 'x' at offset 1 is not an integer", 1, 1},
      {"append_underflow", "a",
       "pickle: stack underflow: APPEND at offset 0 needs 2 items above the "
       "mark, found 0",
       0, 0},
      {"append_across_mark", "]N(a",
       "pickle: stack underflow: APPEND at offset 3 needs 2 items above the "
       "mark, found 0",
       3, 3},
      {"reduce_underflow", "NR",
       "pickle: stack underflow: REDUCE at offset 1 needs 2 items above the "
       "mark, found 1",
       1, 1},
      {"build_underflow", "Nb",
       "pickle: stack underflow: BUILD at offset 1 needs 2 items above the "
       "mark, found 1",
       1, 1},
      {"setitem_underflow", "}Ns",
       "pickle: stack underflow: SETITEM at offset 2 needs 3 items above the "
       "mark, found 2",
       2, 2},
      {"newobj_ex_underflow", "NN\x92",
       "pickle: stack underflow: NEWOBJ_EX at offset 2 needs 3 items above "
       "the mark, found 2",
       2, 2},
      {"newobj_underflow", "N\x81",
       "pickle: stack underflow: NEWOBJ at offset 1 needs 2 items above the "
       "mark, found 1",
       1, 1},
      {"stack_global_underflow", "\x8c\x01" "a\x93",
       "pickle: stack underflow: STACK_GLOBAL at offset 3 needs 2 items "
       "above the mark, found 1",
       3, 1},
      {"tuple2_underflow", "N\x86",
       "pickle: stack underflow: TUPLE2 at offset 1 needs 2 items above the "
       "mark, found 1",
       1, 1},
      {"stop_underflow", ".",
       "pickle: stack underflow: STOP at offset 0 needs 1 item above the "
       "mark, found 0",
       0, 0},
      {"stop_above_mark", "N(.",
       "pickle: stack underflow: STOP at offset 2 needs 1 item above the "
       "mark, found 0",
       2, 2},
      {"pop_underflow", "0",
       "pickle: stack underflow: POP at offset 0 needs 1 item above the "
       "mark, found 0",
       0, 0},
      {"dup_underflow", "2",
       "pickle: stack underflow: DUP at offset 0 needs 1 item above the "
       "mark, found 0",
       0, 0},
      {"binput_underflow", LIT("q\x00"),
       "pickle: stack underflow: BINPUT at offset 0 needs 1 item above the "
       "mark, found 0",
       0, 0},
      {"memoize_underflow", "(\x94",
       "pickle: stack underflow: MEMOIZE at offset 1 needs 1 item above the "
       "mark, found 0",
       1, 1},
      {"binpersid_underflow", "Q",
       "pickle: stack underflow: BINPERSID at offset 0 needs 1 item above "
       "the mark, found 0",
       0, 0},
      {"readonly_underflow", "\x98",
       "pickle: stack underflow: READONLY_BUFFER at offset 0 needs 1 item "
       "above the mark, found 0",
       0, 0},
      {"appends_no_mark", "]Ne",
       "pickle: APPENDS at offset 2 without a MARK", 2, 2},
      {"tuple_no_mark", "Nt", "pickle: TUPLE at offset 1 without a MARK", 1,
       1},
      {"pop_mark_no_mark", "1", "pickle: POP_MARK at offset 0 without a MARK",
       0, 0},
      {"obj_no_mark", "No", "pickle: OBJ at offset 1 without a MARK", 1, 1},
      {"inst_no_mark", "ia\nb\n", "pickle: INST at offset 0 without a MARK",
       0, 0},
      {"appends_no_list", "(e",
       "pickle: stack underflow: APPENDS at offset 1 has no container below "
       "its MARK",
       1, 1},
      {"obj_no_class", "(o",
       "pickle: stack underflow: OBJ at offset 1 has no class after its MARK",
       1, 1},
      {"setitems_odd", "}(NNNu",
       "pickle: SETITEMS at offset 5 has an odd number of items (3)", 5, 5},
      {"dict_odd", "(Nd", "pickle: DICT at offset 2 has an odd number of "
                          "items (1)",
       2, 2},
      {"binget_unset", "h\x05",
       "pickle: BINGET at offset 0 reads memo slot 5, which was never set", 0,
       0},
      {"long_binget_unset", LIT("Nq\x00j\x00\x00\x00\x01"),
       "pickle: LONG_BINGET at offset 3 reads memo slot 16777216, which was "
       "never set",
       3, 2},
      {"get_unset", "g7\n",
       "pickle: GET at offset 0 reads memo slot 7, which was never set", 0,
       0},
      {"proto_too_new", "\x80\x06",
       "pickle: unsupported protocol 6 at offset 0", 0, 0},
      {"ext_zero", LIT("\x82\x00"),
       "pickle: EXT1 code 0 at offset 0 is not positive", 0, 0},
      {"ext4_negative", "\x84\xff\xff\xff\xff",
       "pickle: EXT4 code -1 at offset 0 is not positive", 0, 0},
  };
  return *cases;
}

TEST(PickleDecoderTest, ErrorPaths) {
  for (const ErrorCase& c : ErrorCases()) {
    SCOPED_TRACE(c.name);
    const Bytes data = B(c.data);
    for (bool keep : {true, false}) {
      const PickleStream s = Decode(data, keep);
      ASSERT_TRUE(s.error.has_value());
      EXPECT_EQ(s.error->message, c.message);
      EXPECT_EQ(s.error->offset, c.offset);
      EXPECT_FALSE(s.complete);
      EXPECT_EQ(s.stats.opcode_count, c.ops_before);
      EXPECT_EQ(s.length, c.offset);
      if (keep) {
        EXPECT_EQ(s.ops.size(), c.ops_before);
      }
    }
  }
}

TEST(PickleDecoderTest, ErrorOffsetsIncludeBaseOffset) {
  // The message of the header's contract, reproduced exactly.
  Bytes data(100, 'N');
  data[12] = 'X';
  for (int i = 13; i < 17; ++i) data[i] = 0xff;
  const PickleStream s = Decode(data, false, 800);
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->message,
            "pickle: BINUNICODE length 4294967295 at offset 812 runs past end "
            "of stream (size 900)");
  EXPECT_EQ(s.error->offset, 812u);
  EXPECT_EQ(s.length, 12u);
}

TEST(PickleDecoderTest, ErrorMessagesAreBoundedAndPrintable) {
  std::string data = "I" + std::string(100000, 'z') + "\x01\n.";
  const PickleStream s = Decode(B(data));
  ASSERT_TRUE(s.error.has_value());
  EXPECT_LT(s.error->message.size(), 200u);
  for (char c : s.error->message) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
  }
}

// ---------------------------------------------------------------------------
// Globals and the memo.

TEST(PickleDecoderTest, GlobalSources) {
  const Bytes data = P()
                         .Proto(4)
                         .Str("os").Op(Opcode::kMemoize)         // memo 0
                         .Str("system").Op(Opcode::kMemoize)     // memo 1
                         .Op(Opcode::kStackGlobal)               // stack
                         .Op(Opcode::kPop)
                         .Op(Opcode::kBinget).U8(0)
                         .Op(Opcode::kBinget).U8(1)
                         .Op(Opcode::kStackGlobal)               // memo
                         .Op(Opcode::kPop)
                         .Str("posix")
                         .Op(Opcode::kBinget).U8(1)
                         .Op(Opcode::kStackGlobal)               // memo (one)
                         .Op(Opcode::kPop)
                         .Int1(1).Int1(2)
                         .Op(Opcode::kStackGlobal)               // unknown
                         .Op(Opcode::kPop)
                         .Raw("cbuiltins\neval\n")                // inline
                         .Op(Opcode::kPop)
                         .Raw("(isubprocess\nPopen\n")            // inline
                         .Op(Opcode::kPop)
                         .Raw("Vo\\u0073\nVpath\n")               // escaped
                         .Op(Opcode::kStackGlobal)
                         .Raw("S'nt'\nU\x04stat")                 // py2 str
                         .Op(Opcode::kStackGlobal)
                         .Op(Opcode::kStop)
                         .bytes();
  const PickleStream s = Decode(data);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  ASSERT_EQ(s.globals.size(), 8u);
  using Src = GlobalReference::Source;
  const struct {
    const char* module;
    const char* name;
    Src source;
    Opcode opcode;
  } want[] = {
      {"os", "system", Src::kStack, Opcode::kStackGlobal},
      {"os", "system", Src::kMemo, Opcode::kStackGlobal},
      {"posix", "system", Src::kMemo, Opcode::kStackGlobal},
      {"", "", Src::kUnknown, Opcode::kStackGlobal},
      {"builtins", "eval", Src::kInline, Opcode::kGlobal},
      {"subprocess", "Popen", Src::kInline, Opcode::kInst},
      {"os", "path", Src::kStack, Opcode::kStackGlobal},
      {"nt", "stat", Src::kStack, Opcode::kStackGlobal},
  };
  for (size_t i = 0; i < 8; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(s.globals[i].module, want[i].module);
    EXPECT_EQ(s.globals[i].name, want[i].name);
    EXPECT_EQ(s.globals[i].source, want[i].source);
    EXPECT_EQ(s.globals[i].opcode, want[i].opcode);
    EXPECT_EQ(s.globals[i].offset, s.ops[0].offset + 0 + [&] {
      // offset of the i-th global-resolving opcode
      size_t k = 0;
      for (const DecodedOp& op : s.ops) {
        if (op.opcode == Opcode::kStackGlobal || op.opcode == Opcode::kGlobal ||
            op.opcode == Opcode::kInst) {
          if (k++ == i) return op.offset;
        }
      }
      return uint64_t{0};
    }());
  }
}

TEST(PickleDecoderTest, StackGlobalThroughTextMemo) {
  // Protocol-0 PUT/GET of the operand strings.
  const Bytes data = B("\x80\x04Vos\np0\n0Vsystem\np1\n0g0\ng1\n\x93.");
  const PickleStream s = Decode(data);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  ASSERT_EQ(s.globals.size(), 1u);
  EXPECT_EQ(s.globals[0].module, "os");
  EXPECT_EQ(s.globals[0].name, "system");
  EXPECT_EQ(s.globals[0].source, GlobalReference::Source::kMemo);
}

TEST(PickleDecoderTest, ExtIsRecordedAsUnknownGlobal) {
  const PickleStream s = Decode(B("\x82\x07."));
  ASSERT_TRUE(s.complete);
  ASSERT_EQ(s.globals.size(), 1u);
  EXPECT_EQ(s.globals[0].source, GlobalReference::Source::kUnknown);
  EXPECT_EQ(s.globals[0].name, "ext:7");
  EXPECT_EQ(s.globals[0].opcode, Opcode::kExt1);
}

TEST(PickleDecoderTest, MemoizeIndicesCountDistinctEntries) {
  // MEMOIZE stores at len(memo): PUT 0 and a re-PUT of 0 count once.
  const Bytes data = P()
                         .Proto(4)
                         .Op(Opcode::kNone).Op(Opcode::kBinput).U8(0)
                         .Op(Opcode::kBinput).U8(0)
                         .Op(Opcode::kMemoize)  // index 1
                         .Op(Opcode::kMemoize)  // index 2
                         .Op(Opcode::kBinput).U8(9)
                         .Op(Opcode::kMemoize)  // index 4 (0,1,2,9 set)
                         .Op(Opcode::kStop)
                         .bytes();
  const PickleStream s = Decode(data);
  ASSERT_TRUE(s.complete);
  std::vector<uint64_t> memoize;
  for (const DecodedOp& op : s.ops) {
    if (op.memo.kind == MemoEffect::Kind::kMemoize) memoize.push_back(op.memo.index);
  }
  EXPECT_EQ(memoize, (std::vector<uint64_t>{1, 2, 4}));
  EXPECT_EQ(s.stats.memo_size, 5u);
}

TEST(PickleDecoderTest, SparseHugeMemoIndices) {
  // Thousands of huge, scattered indices: stored sparsely, all readable.
  P p;
  p.Op(Opcode::kNone);
  std::vector<uint32_t> indices;
  for (uint32_t i = 0; i < 5000; ++i) indices.push_back(0xFFFFFFFFu - i * 7919u);
  for (uint32_t idx : indices) p.Op(Opcode::kLongBinput).U32(idx);
  for (uint32_t idx : indices) p.Op(Opcode::kLongBinget).U32(idx).Op(Opcode::kPop);
  p.Op(Opcode::kStop);
  const PickleStream s = Decode(p.bytes(), false);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(s.stats.memo_size, 5000u);
}

TEST(PickleDecoderTest, DenseMemoGrowthDoesNotFollowDeclaredIndices) {
  // Indices that double each time would make a dense table explode; they
  // must land in the sparse map (this finishes instantly and in little
  // memory, or not at all).
  P p;
  p.Op(Opcode::kNone);
  for (uint64_t idx = 4096; idx < (1ULL << 32); idx *= 2) {
    p.Op(Opcode::kLongBinput).U32(static_cast<uint32_t>(idx));
  }
  p.Raw("p9999999999999999\n").Raw("g9999999999999999\n").Op(Opcode::kStop);
  const PickleStream s = Decode(p.bytes());
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_EQ(s.stats.memo_size, 21u);
}

// ---------------------------------------------------------------------------
// Stats.

TEST(PickleDecoderTest, Stats) {
  const Bytes data = B(LIT(
      "\x80\x02" "ccollections\nOrderedDict\n" ")R" "(K\x01K\x02" "t" "b"
      "q\x00" "."));
  const PickleStream s = Decode(data);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_EQ(s.stats.protocol, 2);
  EXPECT_EQ(s.stats.opcode_count, 11u);
  EXPECT_EQ(s.stats.histogram['K'], 2u);
  EXPECT_EQ(s.stats.histogram['R'], 1u);
  EXPECT_EQ(s.stats.histogram[0x80], 1u);
  uint64_t total = 0;
  for (uint64_t c : s.stats.histogram) total += c;
  EXPECT_EQ(total, s.stats.opcode_count);
  EXPECT_EQ(s.stats.call_count, 2u);  // REDUCE, BUILD
  // obj, MARK, 1, 2 = 4 slots.
  EXPECT_EQ(s.stats.max_stack_depth, 4u);
  EXPECT_EQ(s.stats.memo_size, 1u);
}

TEST(PickleDecoderTest, CallCountCoversEveryCallOpcode) {
  const Bytes data = B(
      "(ia\nb\n"                       // INST
      "(ca\nb\no"                      // OBJ
      "ca\nb\n)R"                      // REDUCE
      "ca\nb\n)\x81"                   // NEWOBJ
      "ca\nb\n)}\x92"                  // NEWOBJ_EX
      "}b"                             // BUILD
      "(t.");
  const PickleStream s = Decode(data);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_EQ(s.stats.call_count, 6u);
  EXPECT_EQ(s.stats.protocol, 0);
}

// ---------------------------------------------------------------------------
// Deep nesting and big inputs: linear time, no recursion.

TEST(PickleDecoderTest, MillionMarks) {
  const Bytes data(1000000, '(');
  const PickleStream s = Decode(data, false);
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->message,
            "pickle: stream ends at offset 1000000 without STOP");
  EXPECT_EQ(s.stats.max_stack_depth, 1000000u);
  EXPECT_EQ(s.stats.opcode_count, 1000000u);
}

TEST(PickleDecoderTest, MillionNestedLists) {
  // Built in place: GCC 12 at -O3 warns falsely (-Warray-bounds) on
  // vector::insert growing a vector of this size.
  Bytes data(1000000 + 999999 + 1, 'a');
  std::fill_n(data.begin(), 1000000, ']');
  data.back() = '.';
  const PickleStream s = Decode(data, false);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(s.stats.max_stack_depth, 1000000u);
}

TEST(PickleDecoderTest, MillionNestedTuplesViaMarks) {
  // ((((...)))) with a MARK per level: TUPLE pops back to each mark in O(1).
  const size_t n = 500000;
  Bytes data;
  for (size_t i = 0; i < n; ++i) data.push_back('(');
  data.push_back('N');
  for (size_t i = 0; i < n; ++i) data.push_back('t');
  data.push_back('.');
  const PickleStream s = Decode(data, false);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(s.stats.max_stack_depth, n + 1);
  EXPECT_EQ(s.stats.opcode_count, 2 * n + 2);
}

TEST(PickleDecoderTest, RepeatedAppendsDecodeEveryOpcode) {
  // 200k APPENDS batches of one item each onto one list.
  Bytes data = B("]");
  for (int i = 0; i < 200000; ++i) {
    data.push_back('(');
    data.push_back('N');
    data.push_back('e');
  }
  data.push_back('.');
  const PickleStream s = Decode(data, false);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(s.stats.opcode_count, 1 + 3 * 200000 + 1);
}

TEST(PickleDecoderTest, HugeDeclaredLengthsAllocateNothing) {
  // Each of these declares an enormous length but only a few bytes follow;
  // the decoder must fail fast without trying to allocate.
  for (const char* p : {"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f",
                        "\x96\xff\xff\xff\xff\xff\xff\xff\x7f",
                        "\x8d\xff\xff\xff\xff\xff\xff\xff\x7f",
                        "\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xff"}) {
    const PickleStream s = Decode(B(p));
    ASSERT_TRUE(s.error.has_value());
    EXPECT_NE(s.error->message.find("runs past end of stream"), std::string::npos);
  }
}

TEST(PickleDecoderTest, HugeBigIntsAreNotRendered) {
  // A 10 MB LONG4: decoded in linear time; FormatBigInt refuses to render it.
  const uint32_t n = 10 * 1000 * 1000;
  Bytes data = P().Op(Opcode::kLong4).U32(n).bytes();
  data.resize(data.size() + n, 0x5a);
  data.push_back('.');
  const PickleStream s = Decode(data);
  ASSERT_TRUE(s.complete);
  ASSERT_EQ(s.ops[0].arg.kind, OpArg::Kind::kBigInt);
  EXPECT_EQ(s.ops[0].arg.bytes.size(), n);
  EXPECT_EQ(FormatBigInt(s.ops[0].arg.bytes), "<int of 10000000 bytes>");
}

// ---------------------------------------------------------------------------
// joblib NumpyArrayWrapper.

// A joblib-style wrapper for a float64 array of `n` elements; `align` adds
// the numpy_array_alignment_bytes key; `extra_state` is appended to the
// state dict items.
P Wrapper(uint8_t n, bool align, const char* dtype = "f8",
          bool with_shape = true) {
  P p;
  p.Proto(4).Op(Opcode::kEmptyList).Op(Opcode::kMark);  // [ wrapper ]
  p.Global("joblib.numpy_pickle", "NumpyArrayWrapper")
      .Op(Opcode::kEmptyTuple)
      .Op(Opcode::kNewobj)
      .Op(Opcode::kEmptyDict)
      .Op(Opcode::kMark);
  p.Str("subclass").Global("numpy", "ndarray");
  if (with_shape) p.Str("shape").Int1(n).Op(Opcode::kTuple1);
  p.Str("order").Str("C");
  p.Str("dtype")
      .Global("numpy", "dtype")
      .Str(dtype)
      .Op(Opcode::kNewfalse)
      .Op(Opcode::kNewtrue)
      .Op(Opcode::kTuple3)
      .Op(Opcode::kReduce)
      .Op(Opcode::kMark)
      .Int1(3)
      .Str("<")
      .Op(Opcode::kNone)
      .Op(Opcode::kNone)
      .Op(Opcode::kNone)
      .Int4(-1)
      .Int4(-1)
      .Int1(0)
      .Op(Opcode::kTuple)
      .Op(Opcode::kBuild);
  p.Str("allow_mmap").Op(Opcode::kNewtrue);
  if (align) p.Str("numpy_array_alignment_bytes").Int1(16);
  p.Op(Opcode::kSetitems).Op(Opcode::kBuild);
  return p;
}

TEST(PickleDecoderTest, JoblibArrayIsSkipped) {
  P p = Wrapper(3, /*align=*/true);
  const size_t array_at = p.size();
  p.U8(5).Raw("\xff\xff\xff\xff\xff");  // padding length byte + padding
  p.Raw(std::string(24, '\x07'));       // 3 doubles; 0x07 is not an opcode
  p.Op(Opcode::kAppends).Op(Opcode::kStop);
  const Bytes data = p.bytes();
  const PickleStream s = Decode(data, true, 100);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(s.length, data.size());
  ASSERT_EQ(s.arrays.size(), 1u);
  EXPECT_EQ(s.arrays[0].offset, 100 + array_at);
  EXPECT_EQ(s.arrays[0].length, 1u + 5u + 24u);
  EXPECT_EQ(s.arrays[0].dtype, "<f8");
  EXPECT_EQ(s.arrays[0].shape, (std::vector<uint64_t>{3}));
  EXPECT_EQ(s.ops.back().offset, 100 + data.size() - 1);
}

TEST(PickleDecoderTest, JoblibArrayWithoutAlignmentKey) {
  P p = Wrapper(2, /*align=*/false);
  p.Raw(std::string(16, '\x07')).Op(Opcode::kAppends).Op(Opcode::kStop);
  const PickleStream s = Decode(p.bytes());
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  ASSERT_EQ(s.arrays.size(), 1u);
  EXPECT_EQ(s.arrays[0].length, 16u);
}

TEST(PickleDecoderTest, JoblibArraysOffTreatsDataAsOpcodes) {
  P p = Wrapper(2, /*align=*/false);
  const size_t array_at = p.size();
  p.Raw(std::string(16, '\x07')).Op(Opcode::kAppends).Op(Opcode::kStop);
  DecodeOptions options;
  options.joblib_arrays = false;
  const PickleStream s = DecodePickle(p.bytes(), options);
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->offset, array_at);
  EXPECT_TRUE(s.arrays.empty());
}

// Containers memoised before contents tracking starts (tracking begins
// at the first numpy.dtype / NumpyArrayWrapper global) are kept by kind
// only. Fetching one afterwards and filling it must not index the side
// tables with a stale index (this crashed on a dill pickle).
TEST(PickleDecoderTest, ContainerMemoisedBeforeTrackingIsSafeToFill) {
  struct Case {
    const char* name;
    std::string bytes;
  };
  using namespace std::string_view_literals;
  const Case cases[] = {
      {"dict", std::string("\x80\x02}q\x00" "0cnumpy\ndtype\n0h\x00"
                           "X\x01\x00\x00\x00" "aK\x01s."sv)},
      {"object", std::string("\x80\x02" "cos\nstat_result\n)\x81q\x00" "0"
                             "cnumpy\ndtype\n0h\x00}b."sv)},
      {"tuple-as-shape",
       std::string("\x80\x02K\x01\x85q\x00" "0cnumpy\ndtype\n0h\x00."sv)},
  };
  for (const Case& c : cases) {
    const PickleStream s = Decode(B(c.bytes));
    EXPECT_TRUE(s.complete) << c.name << ": "
                            << (s.error ? s.error->message : "");
  }
}

TEST(PickleDecoderTest, JoblibErrors) {
  struct Case {
    const char* name;
    Bytes data;
    const char* message_part;
  };
  const std::vector<Case> cases = {
      {"truncated_array",
       P(Wrapper(3, true)).U8(0).Raw(std::string(23, '\x07')).bytes(),
       "joblib array of 24 bytes after BUILD at offset"},
      {"truncated_padding_byte", Wrapper(3, true).bytes(),
       "array padding byte runs past end of stream"},
      {"no_shape", P(Wrapper(3, true, "f8", false)).U8(0).bytes(),
       "cannot determine the array shape"},
      {"unsized_dtype", P(Wrapper(3, true, "Q")).U8(0).bytes(),
       "cannot determine the dtype item size"},
      {"state_not_dict",
       P()
           .Proto(4)
           .Global("joblib.numpy_pickle", "NumpyArrayWrapper")
           .Op(Opcode::kEmptyTuple)
           .Op(Opcode::kNewobj)
           .Op(Opcode::kNone)
           .Op(Opcode::kBuild)
           .Op(Opcode::kStop)
           .bytes(),
       "state is not a dict"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const PickleStream s = Decode(c.data);
    ASSERT_TRUE(s.error.has_value());
    EXPECT_NE(s.error->message.find(c.message_part), std::string::npos)
        << s.error->message;
    EXPECT_NE(s.error->message.find("pickle: joblib"), std::string::npos)
        << s.error->message;
  }
}

TEST(PickleDecoderTest, JoblibBuildInsideUnfinishedFrame) {
  // A FRAME that covers bytes after the wrapper BUILD: joblib would read
  // the array from after the frame, so the stream is ambiguous: refuse.
  P inner = Wrapper(1, false);
  Bytes body = inner.bytes();
  body.erase(body.begin(), body.begin() + 2);  // drop PROTO (re-added below)
  P p;
  p.Proto(4).Op(Opcode::kFrame).U64(body.size() + 8).Raw(
      std::string(body.begin(), body.end()));
  p.Raw(std::string(8, '\x07')).Op(Opcode::kAppends).Op(Opcode::kStop);
  const PickleStream s = Decode(p.bytes());
  ASSERT_TRUE(s.error.has_value());
  EXPECT_NE(s.error->message.find("FRAME does not end at the BUILD"),
            std::string::npos)
      << s.error->message;
}

TEST(PickleDecoderTest, JoblibObjectArrayIsANestedStream) {
  Bytes data = Wrapper(1, true, "O8").bytes();
  const size_t nested_at = data.size();
  const Bytes nested = B(LIT("\x80\x02]N\x85q\x00."));
  data.insert(data.end(), nested.begin(), nested.end());
  data.push_back('e');
  data.push_back('.');
  const PickleStream s = Decode(data, true, 10);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_TRUE(s.complete);
  ASSERT_EQ(s.nested.size(), 1u);
  EXPECT_EQ(s.nested[0].offset, 10 + nested_at);
  EXPECT_EQ(s.nested[0].length, nested.size());
  EXPECT_EQ(s.nested[0].ops.size(), 6u);
  ASSERT_EQ(s.arrays.size(), 1u);
  EXPECT_EQ(s.arrays[0].dtype, "<O");

  // A broken nested stream stops the outer one with both positions.
  Bytes bad = Wrapper(1, true, "O8").bytes();
  bad.push_back(0xff);
  const PickleStream b = Decode(bad);
  ASSERT_TRUE(b.error.has_value());
  EXPECT_NE(b.error->message.find("nested pickle: unknown opcode 0xff"),
            std::string::npos)
      << b.error->message;
  ASSERT_EQ(b.nested.size(), 1u);

  DecodeOptions no_nesting;
  no_nesting.max_nesting = 0;
  const PickleStream n = DecodePickle(data, no_nesting);
  ASSERT_TRUE(n.error.has_value());
  EXPECT_NE(n.error->message.find("nesting limit"), std::string::npos);
}

// ---------------------------------------------------------------------------
// DecodeOptions::max_kept_ops.

// `capped` (decoded with max_kept_ops = cap) is `full` (no cap) except that
// its ops are the first `cap` of full's and the rest are counted as omitted.
void ExpectSameExceptOps(const PickleStream& capped, const PickleStream& full,
                         uint64_t cap) {
  const size_t kept = std::min<uint64_t>(cap, full.ops.size());
  ASSERT_EQ(capped.ops.size(), kept);
  EXPECT_EQ(capped.ops_omitted, full.ops.size() - kept);
  EXPECT_EQ(full.ops_omitted, 0u);
  for (size_t i = 0; i < kept; ++i) {
    EXPECT_EQ(capped.ops[i].offset, full.ops[i].offset) << i;
    EXPECT_EQ(Describe(capped.ops[i]), Describe(full.ops[i])) << i;
  }
  EXPECT_EQ(capped.offset, full.offset);
  EXPECT_EQ(capped.length, full.length);
  EXPECT_EQ(capped.complete, full.complete);
  ASSERT_EQ(capped.error.has_value(), full.error.has_value());
  if (full.error) {
    EXPECT_EQ(capped.error->message, full.error->message);
    EXPECT_EQ(capped.error->offset, full.error->offset);
  }
  EXPECT_EQ(capped.stats.protocol, full.stats.protocol);
  EXPECT_EQ(capped.stats.opcode_count, full.stats.opcode_count);
  EXPECT_EQ(capped.stats.histogram, full.stats.histogram);
  EXPECT_EQ(capped.stats.max_stack_depth, full.stats.max_stack_depth);
  EXPECT_EQ(capped.stats.memo_size, full.stats.memo_size);
  EXPECT_EQ(capped.stats.call_count, full.stats.call_count);
  ASSERT_EQ(capped.globals.size(), full.globals.size());
  for (size_t i = 0; i < full.globals.size(); ++i) {
    EXPECT_EQ(capped.globals[i].module, full.globals[i].module);
    EXPECT_EQ(capped.globals[i].name, full.globals[i].name);
    EXPECT_EQ(capped.globals[i].offset, full.globals[i].offset);
    EXPECT_EQ(capped.globals[i].source, full.globals[i].source);
  }
  ASSERT_EQ(capped.arrays.size(), full.arrays.size());
  for (size_t i = 0; i < full.arrays.size(); ++i) {
    EXPECT_EQ(capped.arrays[i].offset, full.arrays[i].offset);
    EXPECT_EQ(capped.arrays[i].length, full.arrays[i].length);
  }
  ASSERT_EQ(capped.nested.size(), full.nested.size());
  for (size_t i = 0; i < full.nested.size(); ++i) {
    ExpectSameExceptOps(capped.nested[i], full.nested[i], cap);
  }
}

TEST(PickleDecoderTest, MaxKeptOpsLimitsOnlyTheListingNotTheDecode) {
  Bytes joblib = Wrapper(1, true, "O8").bytes();
  const Bytes nested = B(LIT("\x80\x02]N\x85q\x00."));
  joblib.insert(joblib.end(), nested.begin(), nested.end());
  joblib.push_back('e');
  joblib.push_back('.');
  const std::vector<std::pair<const char*, Bytes>> cases = {
      // Globals, calls and memo writes late in the stream.
      {"stats", B(LIT("\x80\x02"
                      "ccollections\nOrderedDict\n"
                      ")R"
                      "(K\x01K\x02"
                      "t"
                      "b"
                      "q\x00"
                      "."))},
      {"stack_global_through_memo",
       P().Proto(4)
           .Op(Opcode::kEmptyList)
           .Op(Opcode::kEmptyList)
           .Str("os")
           .Op(Opcode::kMemoize)
           .Str("system")
           .Op(Opcode::kMemoize)
           .Op(Opcode::kPop)
           .Op(Opcode::kPop)
           .Op(Opcode::kBinget).U8(0)
           .Op(Opcode::kBinget).U8(1)
           .Op(Opcode::kStackGlobal)
           .Op(Opcode::kStop)
           .bytes()},
      // An error after the last kept opcode.
      {"late_error", B(LIT("\x80\x02]]]]a\xff"))},
      {"no_stop", B(LIT("\x80\x02]]]]"))},
      {"joblib_nested", joblib},
  };
  for (const auto& [name, data] : cases) {
    SCOPED_TRACE(name);
    DecodeOptions options;
    options.keep_ops = true;
    const PickleStream full = DecodePickle(data, options);
    ASSERT_GT(full.stats.opcode_count, 3u);
    for (uint64_t cap = 0; cap <= full.ops.size() + 1; ++cap) {
      SCOPED_TRACE("max_kept_ops " + std::to_string(cap));
      options.max_kept_ops = cap;
      ExpectSameExceptOps(DecodePickle(data, options), full, cap);
    }
  }
}

TEST(PickleDecoderTest, MaxKeptOpsKeepsMemoryForRecordsAtTheCap) {
  // Ten million EMPTY_LISTs: kept records stop at the cap, the count and
  // the depth still cover the whole stream.
  const size_t n = 10'000'000;
  Bytes data = P().Proto(4).bytes();
  data.resize(data.size() + n, static_cast<uint8_t>(Opcode::kEmptyList));
  data.push_back(static_cast<uint8_t>(Opcode::kStop));
  DecodeOptions options;
  options.keep_ops = true;
  options.max_kept_ops = 1000;
  const PickleStream s = DecodePickle(data, options);
  ASSERT_FALSE(s.error.has_value()) << s.error->message;
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(s.ops.size(), 1000u);
  EXPECT_LE(s.ops.capacity(), 2048u);
  EXPECT_EQ(s.stats.opcode_count, n + 2);
  EXPECT_EQ(s.ops_omitted, n + 2 - 1000);
  EXPECT_EQ(s.stats.max_stack_depth, n);
  EXPECT_EQ(s.ops.back().offset, 1000u);  // after the 2-byte PROTO
}

// ---------------------------------------------------------------------------
// Helpers.

TEST(PickleDecoderTest, LooksLikePickle) {
  const struct {
    std::string data;
    bool want;
  } cases[] = {
      {"\x80\x04\x95", true},  {"\x80\x05", true},     {LIT("\x80\x00"), true},
      {"\x80\x06", false},     {"\x80", false},        {"", false},
      {"N.", true},            {"(", true},            {"}", true},
      {"a", false},            {".", false},           {"\x93", false},
      {"\x8c\x02" "ab", false}, {"PK\x03\x04", false},  {"{\"a\": 1}", false},
      {"cos\nsystem\n", true}, {"cos\nsys", false},    {"GIF89a", false},
      {"I12\n", true},         {"Ixyz\n", false},      {"\xff\xd8\xff", false},
      {"K", false},            {"K\x01", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(LooksLikePickle(B(c.data)), c.want) << Hex(B(c.data));
  }
}

TEST(PickleDecoderTest, UnquoteStringArg) {
  const struct {
    std::string in;
    std::optional<std::string> want;
  } cases[] = {
      {"'abc'", "abc"},
      {"\"d\"", "d"},
      {"''", ""},
      {"'a\\nb\\t\\\\'", "a\nb\t\\"},
      {"'\\x41\\101\\0'", std::string("AA\0", 3)},
      {"'\\q'", "\\q"},
      {"'it\\'s'", "it's"},
      {"'a\\\nb'", "ab"},
      {"'abc", std::nullopt},
      {"abc", std::nullopt},
      {"'", std::nullopt},
      {"", std::nullopt},
      {"'abc\"", std::nullopt},
      {"'\\'", std::nullopt},
      {"'\\x4'", std::nullopt},
      {"'\\xzz'", std::nullopt},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(UnquoteStringArg(c.in), c.want) << c.in;
  }
}

TEST(PickleDecoderTest, DecodeRawUnicodeEscape) {
  const struct {
    std::string in;
    std::optional<std::string> want;
  } cases[] = {
      {"plain", "plain"},
      {"\\u00e9", "\xc3\xa9"},
      {"\\U0001f600", "\xf0\x9f\x98\x80"},
      {"\\ud800", "\xed\xa0\x80"},  // lone surrogate, surrogatepass-style
      {"\\\\u0041", "\\\\u0041"},   // even backslashes: no escape
      {"\\n", "\\n"},
      {"\xe9", "\xc3\xa9"},         // latin-1 byte
      {"end\\", "end\\"},
      {"\\u12", std::nullopt},
      {"\\u12zz", std::nullopt},
      {"\\U00110000", std::nullopt},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(DecodeRawUnicodeEscape(c.in), c.want) << c.in;
  }
}

TEST(PickleDecoderTest, FormatBigInt) {
  const struct {
    Bytes in;
    std::string want;
  } cases[] = {
      {{}, "0"},
      {{0x00}, "0"},
      {{0xff}, "-1"},
      {{0x7f}, "127"},
      {{0x80}, "-128"},
      {{0xff, 0x00}, "255"},
      {{0x00, 0x80}, "-32768"},
      {{0, 0, 0, 0, 0, 0, 0, 0, 1}, "18446744073709551616"},
      {{0, 0, 0, 0, 0, 0, 0, 0, 0xff}, "-18446744073709551616"},
      {{0x00, 0xca, 0x9a, 0x3b}, "1000000000"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FormatBigInt(c.in), c.want) << Hex(c.in);
  }
  // 2**1000 + 12345 (value from Python).
  Bytes big(126, 0);
  big[125] = 0x01;
  big[0] = 0x39;
  big[1] = 0x30;
  EXPECT_EQ(FormatBigInt(big),
            "1071508607186267320948425049060001810561404811705533607443750388"
            "3703510511249361224931983788156958581275946729175531468251871452"
            "8569231404359845775746985748039345677748242309854210746050623711"
            "4187795418215304647498358194126739876755916554394607706291457119"
            "6477686542167660429831652624386837205668081721");
  EXPECT_EQ(FormatBigInt(Bytes(5000, 1)), "<int of 5000 bytes>");
  EXPECT_EQ(FormatBigInt(Bytes(5000, 1), 5000).size() > 100, true);
}

}  // namespace
}  // namespace dynahug::hooks

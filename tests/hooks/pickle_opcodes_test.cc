#include "hooks/pickle_opcodes.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace dynahug::hooks {
namespace {

struct Case {
  Opcode op;
  uint8_t byte;
  const char* name;
  ArgKind arg;
  uint8_t proto;
};

// Straight from pickletools.opcodes (CPython 3.11).
const Case kCases[] = {
    {Opcode::kMark, 0x28, "MARK", ArgKind::kNone, 0},
    {Opcode::kEmptyTuple, 0x29, "EMPTY_TUPLE", ArgKind::kNone, 1},
    {Opcode::kStop, 0x2e, "STOP", ArgKind::kNone, 0},
    {Opcode::kPop, 0x30, "POP", ArgKind::kNone, 0},
    {Opcode::kPopMark, 0x31, "POP_MARK", ArgKind::kNone, 1},
    {Opcode::kDup, 0x32, "DUP", ArgKind::kNone, 0},
    {Opcode::kBinbytes, 0x42, "BINBYTES", ArgKind::kBytes4, 3},
    {Opcode::kShortBinbytes, 0x43, "SHORT_BINBYTES", ArgKind::kBytes1, 3},
    {Opcode::kFloat, 0x46, "FLOAT", ArgKind::kFloatNl, 0},
    {Opcode::kBinfloat, 0x47, "BINFLOAT", ArgKind::kFloat8, 1},
    {Opcode::kInt, 0x49, "INT", ArgKind::kDecimalNlShort, 0},
    {Opcode::kBinint, 0x4a, "BININT", ArgKind::kInt4, 1},
    {Opcode::kBinint1, 0x4b, "BININT1", ArgKind::kUint1, 1},
    {Opcode::kLong, 0x4c, "LONG", ArgKind::kDecimalNlLong, 0},
    {Opcode::kBinint2, 0x4d, "BININT2", ArgKind::kUint2, 1},
    {Opcode::kNone, 0x4e, "NONE", ArgKind::kNone, 0},
    {Opcode::kPersid, 0x50, "PERSID", ArgKind::kStringNlNoescape, 0},
    {Opcode::kBinpersid, 0x51, "BINPERSID", ArgKind::kNone, 1},
    {Opcode::kReduce, 0x52, "REDUCE", ArgKind::kNone, 0},
    {Opcode::kString, 0x53, "STRING", ArgKind::kStringNl, 0},
    {Opcode::kBinstring, 0x54, "BINSTRING", ArgKind::kString4, 1},
    {Opcode::kShortBinstring, 0x55, "SHORT_BINSTRING", ArgKind::kString1, 1},
    {Opcode::kUnicode, 0x56, "UNICODE", ArgKind::kUnicodeStringNl, 0},
    {Opcode::kBinunicode, 0x58, "BINUNICODE", ArgKind::kUnicodeString4, 1},
    {Opcode::kEmptyList, 0x5d, "EMPTY_LIST", ArgKind::kNone, 1},
    {Opcode::kAppend, 0x61, "APPEND", ArgKind::kNone, 0},
    {Opcode::kBuild, 0x62, "BUILD", ArgKind::kNone, 0},
    {Opcode::kGlobal, 0x63, "GLOBAL", ArgKind::kStringNlNoescapePair, 0},
    {Opcode::kDict, 0x64, "DICT", ArgKind::kNone, 0},
    {Opcode::kAppends, 0x65, "APPENDS", ArgKind::kNone, 1},
    {Opcode::kGet, 0x67, "GET", ArgKind::kDecimalNlShort, 0},
    {Opcode::kBinget, 0x68, "BINGET", ArgKind::kUint1, 1},
    {Opcode::kInst, 0x69, "INST", ArgKind::kStringNlNoescapePair, 0},
    {Opcode::kLongBinget, 0x6a, "LONG_BINGET", ArgKind::kUint4, 1},
    {Opcode::kList, 0x6c, "LIST", ArgKind::kNone, 0},
    {Opcode::kObj, 0x6f, "OBJ", ArgKind::kNone, 1},
    {Opcode::kPut, 0x70, "PUT", ArgKind::kDecimalNlShort, 0},
    {Opcode::kBinput, 0x71, "BINPUT", ArgKind::kUint1, 1},
    {Opcode::kLongBinput, 0x72, "LONG_BINPUT", ArgKind::kUint4, 1},
    {Opcode::kSetitem, 0x73, "SETITEM", ArgKind::kNone, 0},
    {Opcode::kTuple, 0x74, "TUPLE", ArgKind::kNone, 0},
    {Opcode::kSetitems, 0x75, "SETITEMS", ArgKind::kNone, 1},
    {Opcode::kEmptyDict, 0x7d, "EMPTY_DICT", ArgKind::kNone, 1},
    {Opcode::kProto, 0x80, "PROTO", ArgKind::kUint1, 2},
    {Opcode::kNewobj, 0x81, "NEWOBJ", ArgKind::kNone, 2},
    {Opcode::kExt1, 0x82, "EXT1", ArgKind::kUint1, 2},
    {Opcode::kExt2, 0x83, "EXT2", ArgKind::kUint2, 2},
    {Opcode::kExt4, 0x84, "EXT4", ArgKind::kInt4, 2},
    {Opcode::kTuple1, 0x85, "TUPLE1", ArgKind::kNone, 2},
    {Opcode::kTuple2, 0x86, "TUPLE2", ArgKind::kNone, 2},
    {Opcode::kTuple3, 0x87, "TUPLE3", ArgKind::kNone, 2},
    {Opcode::kNewtrue, 0x88, "NEWTRUE", ArgKind::kNone, 2},
    {Opcode::kNewfalse, 0x89, "NEWFALSE", ArgKind::kNone, 2},
    {Opcode::kLong1, 0x8a, "LONG1", ArgKind::kLong1, 2},
    {Opcode::kLong4, 0x8b, "LONG4", ArgKind::kLong4, 2},
    {Opcode::kShortBinunicode, 0x8c, "SHORT_BINUNICODE",
     ArgKind::kUnicodeString1, 4},
    {Opcode::kBinunicode8, 0x8d, "BINUNICODE8", ArgKind::kUnicodeString8, 4},
    {Opcode::kBinbytes8, 0x8e, "BINBYTES8", ArgKind::kBytes8, 4},
    {Opcode::kEmptySet, 0x8f, "EMPTY_SET", ArgKind::kNone, 4},
    {Opcode::kAdditems, 0x90, "ADDITEMS", ArgKind::kNone, 4},
    {Opcode::kFrozenset, 0x91, "FROZENSET", ArgKind::kNone, 4},
    {Opcode::kNewobjEx, 0x92, "NEWOBJ_EX", ArgKind::kNone, 4},
    {Opcode::kStackGlobal, 0x93, "STACK_GLOBAL", ArgKind::kNone, 4},
    {Opcode::kMemoize, 0x94, "MEMOIZE", ArgKind::kNone, 4},
    {Opcode::kFrame, 0x95, "FRAME", ArgKind::kUint8, 4},
    {Opcode::kBytearray8, 0x96, "BYTEARRAY8", ArgKind::kBytearray8, 5},
    {Opcode::kNextBuffer, 0x97, "NEXT_BUFFER", ArgKind::kNone, 5},
    {Opcode::kReadonlyBuffer, 0x98, "READONLY_BUFFER", ArgKind::kNone, 5},
};

TEST(PickleOpcodesTest, TableMatchesPickletools) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(static_cast<uint8_t>(c.op), c.byte);
    EXPECT_EQ(OpcodeName(c.op), c.name);
    EXPECT_TRUE(IsKnownOpcode(c.byte));
    const OpcodeInfo& info = GetOpcodeInfo(c.byte);
    EXPECT_TRUE(info.known);
    EXPECT_EQ(info.name, c.name);
    EXPECT_EQ(info.arg, c.arg);
    EXPECT_EQ(info.min_protocol, c.proto);
    ASSERT_TRUE(OpcodeFromName(c.name).has_value());
    EXPECT_EQ(*OpcodeFromName(c.name), c.op);
  }
}

TEST(PickleOpcodesTest, ExactlyTheSixtyEightOpcodesAreKnown) {
  std::set<uint8_t> listed;
  for (const Case& c : kCases) listed.insert(c.byte);
  ASSERT_EQ(listed.size(), 68u);
  int known = 0;
  for (int b = 0; b < 256; ++b) {
    const bool expect = listed.count(static_cast<uint8_t>(b)) > 0;
    EXPECT_EQ(IsKnownOpcode(static_cast<uint8_t>(b)), expect) << b;
    known += IsKnownOpcode(static_cast<uint8_t>(b));
  }
  EXPECT_EQ(known, 68);
}

TEST(PickleOpcodesTest, UnknownBytesHaveNoName) {
  for (uint8_t b : {0x00, 0x27, 0x99, 0xff}) {
    EXPECT_FALSE(IsKnownOpcode(b));
    EXPECT_FALSE(GetOpcodeInfo(b).known);
    EXPECT_TRUE(GetOpcodeInfo(b).name.empty());
    EXPECT_EQ(OpcodeName(static_cast<Opcode>(b)), "UNKNOWN");
  }
  EXPECT_FALSE(OpcodeFromName("NOPE").has_value());
  EXPECT_FALSE(OpcodeFromName("").has_value());
}

TEST(PickleOpcodesTest, ArgKindNamesArePickletoolsNames) {
  EXPECT_EQ(ArgKindName(ArgKind::kNone), "");
  EXPECT_EQ(ArgKindName(ArgKind::kUnicodeString4), "unicodestring4");
  EXPECT_EQ(ArgKindName(ArgKind::kStringNlNoescapePair),
            "stringnl_noescape_pair");
  EXPECT_EQ(ArgKindName(ArgKind::kDecimalNlLong), "decimalnl_long");
  EXPECT_EQ(ArgKindName(ArgKind::kBytearray8), "bytearray8");
}

}  // namespace
}  // namespace dynahug::hooks

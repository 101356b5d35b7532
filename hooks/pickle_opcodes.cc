#include "hooks/pickle_opcodes.h"

#include <array>

namespace dynahug::hooks {
namespace {

struct Entry {
  Opcode op;
  std::string_view name;
  ArgKind arg;
  uint8_t proto;
};

// Mirrors pickletools.opcodes.
constexpr Entry kEntries[] = {
    {Opcode::kInt, "INT", ArgKind::kDecimalNlShort, 0},
    {Opcode::kBinint, "BININT", ArgKind::kInt4, 1},
    {Opcode::kBinint1, "BININT1", ArgKind::kUint1, 1},
    {Opcode::kBinint2, "BININT2", ArgKind::kUint2, 1},
    {Opcode::kLong, "LONG", ArgKind::kDecimalNlLong, 0},
    {Opcode::kLong1, "LONG1", ArgKind::kLong1, 2},
    {Opcode::kLong4, "LONG4", ArgKind::kLong4, 2},
    {Opcode::kString, "STRING", ArgKind::kStringNl, 0},
    {Opcode::kBinstring, "BINSTRING", ArgKind::kString4, 1},
    {Opcode::kShortBinstring, "SHORT_BINSTRING", ArgKind::kString1, 1},
    {Opcode::kBinbytes, "BINBYTES", ArgKind::kBytes4, 3},
    {Opcode::kShortBinbytes, "SHORT_BINBYTES", ArgKind::kBytes1, 3},
    {Opcode::kBinbytes8, "BINBYTES8", ArgKind::kBytes8, 4},
    {Opcode::kBytearray8, "BYTEARRAY8", ArgKind::kBytearray8, 5},
    {Opcode::kNextBuffer, "NEXT_BUFFER", ArgKind::kNone, 5},
    {Opcode::kReadonlyBuffer, "READONLY_BUFFER", ArgKind::kNone, 5},
    {Opcode::kNone, "NONE", ArgKind::kNone, 0},
    {Opcode::kNewtrue, "NEWTRUE", ArgKind::kNone, 2},
    {Opcode::kNewfalse, "NEWFALSE", ArgKind::kNone, 2},
    {Opcode::kUnicode, "UNICODE", ArgKind::kUnicodeStringNl, 0},
    {Opcode::kShortBinunicode, "SHORT_BINUNICODE", ArgKind::kUnicodeString1,
     4},
    {Opcode::kBinunicode, "BINUNICODE", ArgKind::kUnicodeString4, 1},
    {Opcode::kBinunicode8, "BINUNICODE8", ArgKind::kUnicodeString8, 4},
    {Opcode::kFloat, "FLOAT", ArgKind::kFloatNl, 0},
    {Opcode::kBinfloat, "BINFLOAT", ArgKind::kFloat8, 1},
    {Opcode::kEmptyList, "EMPTY_LIST", ArgKind::kNone, 1},
    {Opcode::kAppend, "APPEND", ArgKind::kNone, 0},
    {Opcode::kAppends, "APPENDS", ArgKind::kNone, 1},
    {Opcode::kList, "LIST", ArgKind::kNone, 0},
    {Opcode::kEmptyTuple, "EMPTY_TUPLE", ArgKind::kNone, 1},
    {Opcode::kTuple, "TUPLE", ArgKind::kNone, 0},
    {Opcode::kTuple1, "TUPLE1", ArgKind::kNone, 2},
    {Opcode::kTuple2, "TUPLE2", ArgKind::kNone, 2},
    {Opcode::kTuple3, "TUPLE3", ArgKind::kNone, 2},
    {Opcode::kEmptyDict, "EMPTY_DICT", ArgKind::kNone, 1},
    {Opcode::kDict, "DICT", ArgKind::kNone, 0},
    {Opcode::kSetitem, "SETITEM", ArgKind::kNone, 0},
    {Opcode::kSetitems, "SETITEMS", ArgKind::kNone, 1},
    {Opcode::kEmptySet, "EMPTY_SET", ArgKind::kNone, 4},
    {Opcode::kAdditems, "ADDITEMS", ArgKind::kNone, 4},
    {Opcode::kFrozenset, "FROZENSET", ArgKind::kNone, 4},
    {Opcode::kPop, "POP", ArgKind::kNone, 0},
    {Opcode::kDup, "DUP", ArgKind::kNone, 0},
    {Opcode::kMark, "MARK", ArgKind::kNone, 0},
    {Opcode::kPopMark, "POP_MARK", ArgKind::kNone, 1},
    {Opcode::kGet, "GET", ArgKind::kDecimalNlShort, 0},
    {Opcode::kBinget, "BINGET", ArgKind::kUint1, 1},
    {Opcode::kLongBinget, "LONG_BINGET", ArgKind::kUint4, 1},
    {Opcode::kPut, "PUT", ArgKind::kDecimalNlShort, 0},
    {Opcode::kBinput, "BINPUT", ArgKind::kUint1, 1},
    {Opcode::kLongBinput, "LONG_BINPUT", ArgKind::kUint4, 1},
    {Opcode::kMemoize, "MEMOIZE", ArgKind::kNone, 4},
    {Opcode::kExt1, "EXT1", ArgKind::kUint1, 2},
    {Opcode::kExt2, "EXT2", ArgKind::kUint2, 2},
    {Opcode::kExt4, "EXT4", ArgKind::kInt4, 2},
    {Opcode::kGlobal, "GLOBAL", ArgKind::kStringNlNoescapePair, 0},
    {Opcode::kStackGlobal, "STACK_GLOBAL", ArgKind::kNone, 4},
    {Opcode::kReduce, "REDUCE", ArgKind::kNone, 0},
    {Opcode::kBuild, "BUILD", ArgKind::kNone, 0},
    {Opcode::kInst, "INST", ArgKind::kStringNlNoescapePair, 0},
    {Opcode::kObj, "OBJ", ArgKind::kNone, 1},
    {Opcode::kNewobj, "NEWOBJ", ArgKind::kNone, 2},
    {Opcode::kNewobjEx, "NEWOBJ_EX", ArgKind::kNone, 4},
    {Opcode::kProto, "PROTO", ArgKind::kUint1, 2},
    {Opcode::kStop, "STOP", ArgKind::kNone, 0},
    {Opcode::kFrame, "FRAME", ArgKind::kUint8, 4},
    {Opcode::kPersid, "PERSID", ArgKind::kStringNlNoescape, 0},
    {Opcode::kBinpersid, "BINPERSID", ArgKind::kNone, 1},
};

constexpr std::array<OpcodeInfo, 256> BuildTable() {
  std::array<OpcodeInfo, 256> table{};
  for (const Entry& e : kEntries) {
    OpcodeInfo& info = table[static_cast<uint8_t>(e.op)];
    info.name = e.name;
    info.arg = e.arg;
    info.min_protocol = e.proto;
    info.known = true;
  }
  return table;
}

constexpr std::array<OpcodeInfo, 256> kTable = BuildTable();

}  // namespace

const OpcodeInfo& GetOpcodeInfo(uint8_t byte) { return kTable[byte]; }

bool IsKnownOpcode(uint8_t byte) { return kTable[byte].known; }

std::string_view OpcodeName(Opcode op) {
  const OpcodeInfo& info = kTable[static_cast<uint8_t>(op)];
  return info.known ? info.name : std::string_view("UNKNOWN");
}

std::string_view ArgKindName(ArgKind kind) {
  switch (kind) {
    case ArgKind::kNone: return "";
    case ArgKind::kUint1: return "uint1";
    case ArgKind::kUint2: return "uint2";
    case ArgKind::kInt4: return "int4";
    case ArgKind::kUint4: return "uint4";
    case ArgKind::kUint8: return "uint8";
    case ArgKind::kDecimalNlShort: return "decimalnl_short";
    case ArgKind::kDecimalNlLong: return "decimalnl_long";
    case ArgKind::kFloatNl: return "floatnl";
    case ArgKind::kFloat8: return "float8";
    case ArgKind::kStringNl: return "stringnl";
    case ArgKind::kStringNlNoescape: return "stringnl_noescape";
    case ArgKind::kStringNlNoescapePair: return "stringnl_noescape_pair";
    case ArgKind::kString1: return "string1";
    case ArgKind::kString4: return "string4";
    case ArgKind::kBytes1: return "bytes1";
    case ArgKind::kBytes4: return "bytes4";
    case ArgKind::kBytes8: return "bytes8";
    case ArgKind::kBytearray8: return "bytearray8";
    case ArgKind::kUnicodeStringNl: return "unicodestringnl";
    case ArgKind::kUnicodeString1: return "unicodestring1";
    case ArgKind::kUnicodeString4: return "unicodestring4";
    case ArgKind::kUnicodeString8: return "unicodestring8";
    case ArgKind::kLong1: return "long1";
    case ArgKind::kLong4: return "long4";
  }
  return "";
}

std::optional<Opcode> OpcodeFromName(std::string_view name) {
  for (const Entry& e : kEntries) {
    if (e.name == name) return e.op;
  }
  return std::nullopt;
}

}  // namespace dynahug::hooks

// The pickle opcode set of protocols 0-5, as defined by CPython's
// Lib/pickletools.py: byte values, names, argument encodings and the
// protocol that introduced each opcode.
#ifndef DYNAHUG_HOOKS_PICKLE_OPCODES_H_
#define DYNAHUG_HOOKS_PICKLE_OPCODES_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace dynahug::hooks {

// Every opcode of pickle protocols 0-5. The value is the opcode byte; the
// name is the pickletools name in kCamelCase.
enum class Opcode : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kFloat = 'F',
  kInt = 'I',
  kBinint = 'J',
  kBinint1 = 'K',
  kLong = 'L',
  kBinint2 = 'M',
  kNone = 'N',
  kPersid = 'P',
  kBinpersid = 'Q',
  kReduce = 'R',
  kString = 'S',
  kBinstring = 'T',
  kShortBinstring = 'U',
  kUnicode = 'V',
  kBinunicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kGet = 'g',
  kBinget = 'h',
  kInst = 'i',
  kLongBinget = 'j',
  kList = 'l',
  kEmptyList = ']',
  kObj = 'o',
  kPut = 'p',
  kBinput = 'q',
  kLongBinput = 'r',
  kSetitem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetitems = 'u',
  kBinfloat = 'G',
  // Protocol 2.
  kProto = 0x80,
  kNewobj = 0x81,
  kExt1 = 0x82,
  kExt2 = 0x83,
  kExt4 = 0x84,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewtrue = 0x88,
  kNewfalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  // Protocol 3.
  kBinbytes = 'B',
  kShortBinbytes = 'C',
  // Protocol 4.
  kShortBinunicode = 0x8c,
  kBinunicode8 = 0x8d,
  kBinbytes8 = 0x8e,
  kEmptySet = 0x8f,
  kAdditems = 0x90,
  kFrozenset = 0x91,
  kNewobjEx = 0x92,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  // Protocol 5.
  kBytearray8 = 0x96,
  kNextBuffer = 0x97,
  kReadonlyBuffer = 0x98,
};

// How an opcode's argument is encoded in the stream; names follow the
// pickletools ArgumentDescriptor names.
enum class ArgKind : uint8_t {
  kNone,                 // no argument
  kUint1,                // 1-byte unsigned
  kUint2,                // 2-byte little-endian unsigned
  kInt4,                 // 4-byte little-endian signed
  kUint4,                // 4-byte little-endian unsigned
  kUint8,                // 8-byte little-endian unsigned
  kDecimalNlShort,       // decimal text up to '\n' (INT, GET, PUT)
  kDecimalNlLong,        // decimal text with optional 'L', up to '\n' (LONG)
  kFloatNl,              // float text up to '\n' (FLOAT)
  kFloat8,               // 8-byte big-endian IEEE double (BINFLOAT)
  kStringNl,             // quoted repr-style string up to '\n' (STRING)
  kStringNlNoescape,     // raw text up to '\n' (PERSID)
  kStringNlNoescapePair, // two raw lines: module, name (GLOBAL, INST)
  kString1,              // 1-byte length + bytes (SHORT_BINSTRING)
  kString4,              // 4-byte signed length + bytes (BINSTRING)
  kBytes1,               // 1-byte length + bytes (SHORT_BINBYTES)
  kBytes4,               // 4-byte unsigned length + bytes (BINBYTES)
  kBytes8,               // 8-byte length + bytes (BINBYTES8)
  kBytearray8,           // 8-byte length + bytes (BYTEARRAY8)
  kUnicodeStringNl,      // raw-unicode-escape text up to '\n' (UNICODE)
  kUnicodeString1,       // 1-byte length + UTF-8 (SHORT_BINUNICODE)
  kUnicodeString4,       // 4-byte unsigned length + UTF-8 (BINUNICODE)
  kUnicodeString8,       // 8-byte length + UTF-8 (BINUNICODE8)
  kLong1,                // 1-byte length + two's complement (LONG1)
  kLong4,                // 4-byte signed length + two's complement (LONG4)
};

struct OpcodeInfo {
  std::string_view name;  // pickletools name, e.g. "BINUNICODE"; empty if
                          // the byte is not an opcode
  ArgKind arg = ArgKind::kNone;
  uint8_t min_protocol = 0;  // protocol that introduced the opcode
  bool known = false;
};

// Information about opcode byte `byte`; `known` is false for bytes that are
// not opcodes. Constant time, no allocation, thread-safe.
const OpcodeInfo& GetOpcodeInfo(uint8_t byte);

// True when `byte` is an opcode of protocols 0-5.
bool IsKnownOpcode(uint8_t byte);

// The exact pickletools name ("BINUNICODE"); "UNKNOWN" for values that are
// not opcodes (only reachable through a cast).
std::string_view OpcodeName(Opcode op);

// The pickletools name of an argument encoding ("unicodestring4"), or
// "" for kNone.
std::string_view ArgKindName(ArgKind kind);

// The opcode whose pickletools name is `name`, or nullopt.
std::optional<Opcode> OpcodeFromName(std::string_view name);

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_PICKLE_OPCODES_H_

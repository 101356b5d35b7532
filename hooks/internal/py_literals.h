// Python's text and number literal rules, as the static pickle decoder needs
// them to check and decode opcode arguments the way the C unpickler does:
// UTF-8 with surrogates (BINUNICODE*), raw-unicode-escape (UNICODE), bytes
// escapes (STRING), int() and float() of text (INT, LONG, FLOAT). Pure
// functions on untrusted bytes: linear time, never read past the input.
#ifndef DYNAHUG_HOOKS_INTERNAL_PY_LITERALS_H_
#define DYNAHUG_HOOKS_INTERNAL_PY_LITERALS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dynahug::hooks::internal {

// Valid UTF-8 where encoded surrogates are allowed (Python "surrogatepass").
bool IsUtf8Surrogatepass(const uint8_t* p, size_t n);

// Every byte < 0x80.
bool IsAscii(std::string_view s);

// Appends code point `cp` (<= 0x10FFFF; surrogates encoded as 3 bytes).
void AppendUtf8(uint32_t cp, std::string* out);

// Each byte of `s` as the code point of the same value, in UTF-8.
std::string Latin1ToUtf8(std::string_view s);

// raw-unicode-escape decoding (CPython's _PyUnicode_DecodeRawUnicodeEscape)
// into UTF-8. With out == nullptr it only validates. False for a truncated
// or out-of-range \u/\U escape.
bool RawUnicodeEscape(std::string_view s, std::string* out);

// Python's bytes escape decoding (PyBytes_DecodeEscape). With out == nullptr
// it only validates. False for a trailing backslash or a bad \x escape.
bool EscapeDecode(std::string_view s, std::string* out);

// `s` without Python whitespace (" \t\n\r\v\f") at either end.
std::string_view StripPySpace(std::string_view s);

// Parses `s` the way Python's int(s) does for base 10 (surrounding
// whitespace, sign, digits with single underscores between them).
// Returns false when it is not an integer. *fits is set when the value fits
// an int64_t, in which case *value holds it.
bool ParsePyDecimal(std::string_view s, bool* fits, int64_t* value);

// Parses `s` the way Python's float(s) does (whitespace, underscores
// between digits, inf/infinity/nan in any case; overflow gives inf and
// underflow 0.0). False when it is not a float.
bool ParsePyFloat(std::string_view s, double* value);

}  // namespace dynahug::hooks::internal

#endif  // DYNAHUG_HOOKS_INTERNAL_PY_LITERALS_H_

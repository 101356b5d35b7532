// placeholder: being written (see hooks/pickle_decoder.h)
#ifndef DYNAHUG_HOOKS_PICKLE_OPCODES_H_
#define DYNAHUG_HOOKS_PICKLE_OPCODES_H_
#include <cstdint>
namespace dynahug::hooks {
enum class Opcode : uint8_t { kStop = '.', kGlobal = 'c' };
}  // namespace dynahug::hooks
#endif  // DYNAHUG_HOOKS_PICKLE_OPCODES_H_

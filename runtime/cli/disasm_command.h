// `dynahug disasm FILE... [--format text|json]`: for every container member of
// every file, a listing like `pickletools.dis` (offset, opcode, argument,
// memo effects) and the globals each pickle stream references. Static only:
// nothing is unpickled.
#ifndef DYNAHUG_RUNTIME_CLI_DISASM_COMMAND_H_
#define DYNAHUG_RUNTIME_CLI_DISASM_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "hooks/pickle_decoder.h"

namespace dynahug::runtime {

// Runs the subcommand; `args` excludes "disasm". Returns kExitOk when every
// file was analysed without error, kExitError otherwise (errors go to `err`,
// naming the file, member and offset).
int RunDisasm(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);

// Renders an opcode argument the way pickletools.dis shows it (Python repr
// of str/bytes, decimal ints), truncated to about `max_chars` characters.
std::string FormatOpArg(const hooks::DecodedOp& op, size_t max_chars = 120);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_DISASM_COMMAND_H_

// The `dynahug` command line: subcommand dispatch and usage. Exit codes:
// runtime/cli/exit_codes.h (commands include that, not this header).
#ifndef DYNAHUG_RUNTIME_CLI_CLI_H_
#define DYNAHUG_RUNTIME_CLI_CLI_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace dynahug::runtime {

// Runs the CLI with `args` (without the program name), writing results to
// `out` and diagnostics to `err`. Returns the process exit code.
int RunCli(const std::vector<std::string>& args, std::ostream& out,
           std::ostream& err);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_CLI_H_

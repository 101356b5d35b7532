// The `dynahug` command line: subcommand dispatch, usage and exit codes.
//
// Exit codes (as picklescan/modelscan users expect): 0 all benign / success,
// 1 at least one malicious file, 2 error (unreadable or unanalysable input,
// bad usage) and nothing malicious; 128 + signal number when a run was
// interrupted by SIGINT, SIGTERM or SIGHUP (after its children were killed).
#ifndef DYNAHUG_RUNTIME_CLI_CLI_H_
#define DYNAHUG_RUNTIME_CLI_CLI_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace dynahug::runtime {

inline constexpr int kExitOk = 0;
inline constexpr int kExitMalicious = 1;
inline constexpr int kExitError = 2;

// Runs the CLI with `args` (without the program name), writing results to
// `out` and diagnostics to `err`. Returns the process exit code.
int RunCli(const std::vector<std::string>& args, std::ostream& out,
           std::ostream& err);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_CLI_H_

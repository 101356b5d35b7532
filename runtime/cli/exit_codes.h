// Exit codes of the `dynahug` command, as picklescan/modelscan users expect:
// 0 all benign / success, 1 at least one malicious file, 2 error
// (unreadable or unanalysable input, bad usage) and nothing malicious;
// 128 + signal number when a run was interrupted by SIGINT, SIGTERM or
// SIGHUP (after its children were killed).
#ifndef DYNAHUG_RUNTIME_CLI_EXIT_CODES_H_
#define DYNAHUG_RUNTIME_CLI_EXIT_CODES_H_

namespace dynahug::runtime {

inline constexpr int kExitOk = 0;
inline constexpr int kExitMalicious = 1;
inline constexpr int kExitError = 2;

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_EXIT_CODES_H_

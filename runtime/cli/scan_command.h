// `dynahug scan PATH...`: every file under the given paths gets one verdict
// (benign, malicious, error or skipped) from its sandboxed load and the
// model bundle; text, JSON or SARIF output; exit code 0 all benign, 1 any
// malicious, 2 error (and nothing malicious). See README.md "scan".
#ifndef DYNAHUG_RUNTIME_CLI_SCAN_COMMAND_H_
#define DYNAHUG_RUNTIME_CLI_SCAN_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace dynahug::runtime {

int RunScan(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_SCAN_COMMAND_H_

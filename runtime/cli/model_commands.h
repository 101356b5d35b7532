// `dynahug train` (a model bundle from benign files) and `dynahug eval`
// (detection quality of a bundle on labelled benign and malicious files).
// Both trace their inputs in the sandbox exactly as `scan` does.
#ifndef DYNAHUG_RUNTIME_CLI_MODEL_COMMANDS_H_
#define DYNAHUG_RUNTIME_CLI_MODEL_COMMANDS_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace dynahug::runtime {

// dynahug train --benign PATH... --out FILE [--task LABEL] [--no-cluster]
//   [--families LIST] [--target-fpr F] [--jobs N] [--timeout S] [--memory M]
int RunTrain(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err);

// dynahug eval --benign PATH... --malicious PATH... [--model FILE]
//   [--format text|json] [--jobs N] [--timeout S] [--memory M]
int RunEval(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_MODEL_COMMANDS_H_

#include "runtime/cli/cli.h"

#include <ostream>

#include "runtime/cli/disasm_command.h"
#include "runtime/cli/trace_command.h"

namespace dynahug::runtime {
namespace {

constexpr char kVersion[] = "0.1.0";

constexpr char kUsage[] =
    R"(usage: dynahug <command> [options] FILE...

Detects malicious pickle-based ML model files (PyTorch, joblib, NumPy,
raw pickles and archives of them).

commands:
  disasm FILE... [--format text|json] [--max-depth N] [--max-expanded BYTES]
                 List every pickle opcode (offset, opcode, argument, memo
                 effect) and the globals of every pickle stream in every
                 container member, statically (nothing is unpickled).

  trace FILE... [--opcodes] [--format text|json] [--loader L]
               [--timeout SECONDS] [--memory MIB] [--jobs N] [--prewarm]
                 Load each file for real inside the sandbox (seccomp, no
                 network, writes confined to a scratch directory, limits)
                 and show what the load did: globals, calls, audit events,
                 blocked actions, integrity findings, syscalls, exit status.
                 --opcodes executes the pickle one opcode at a time and
                 interleaves each opcode with the events it caused.
                 --jobs N traces with N worker zygotes in parallel (output
                 stays in input order); --prewarm makes every worker import
                 all allowlisted ML libraries first, so a trace does not
                 depend on what the worker traced before.
                 Needs root (namespaces, seccomp supervision).

options:
  -h, --help     show this help
  --version      show the version

exit codes: 0 success/benign, 1 malicious found, 2 error; 130 (SIGINT),
143 (SIGTERM), 129 (SIGHUP): trace was interrupted, its workers and
sandboxed loads were killed first.
)";

}  // namespace

int RunCli(const std::vector<std::string>& args, std::ostream& out,
           std::ostream& err) {
  if (args.empty()) {
    err << kUsage;
    return kExitError;
  }
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "-h" || command == "--help" || command == "help") {
    out << kUsage;
    return kExitOk;
  }
  if (command == "--version") {
    out << "dynahug " << kVersion << "\n";
    return kExitOk;
  }
  if (command == "disasm") return RunDisasm(rest, out, err);
  if (command == "trace") return RunTrace(rest, out, err);
  err << "dynahug: unknown command '" << command << "'\n\n" << kUsage;
  return kExitError;
}

}  // namespace dynahug::runtime

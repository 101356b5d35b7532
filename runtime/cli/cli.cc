#include "runtime/cli/cli.h"

#include <ostream>

#include "runtime/cli/disasm_command.h"
#include "runtime/cli/exit_codes.h"
#include "runtime/cli/model_commands.h"
#include "runtime/cli/scan_command.h"
#include "runtime/cli/serve_command.h"
#include "runtime/cli/trace_command.h"
#include "runtime/cli/version.h"

namespace dynahug::runtime {
namespace {

constexpr char kUsage[] =
    R"(usage: dynahug <command> [options] FILE...

Detects malicious pickle-based ML model files (PyTorch, joblib, NumPy,
raw pickles and archives of them).

commands:
  scan PATH... [--format text|json|sarif] [--model FILE] [--jobs N]
               [--task LABEL] [--strict] [--timeout S] [--memory MIB] [--quiet]
               [--loader L] [--as NAME] [--full-hash]
                 Decide for every file under PATH (directories recursively,
                 Hugging Face cache folders named repo@revision:file) whether
                 it is malicious: sandboxed load, behaviour features, the
                 task cluster's one-class SVM and observed capabilities.
                 Formats without a code-execution path (safetensors, GGUF,
                 JSON, text) are reported as skipped; --strict turns files
                 dynahug cannot vouch for (unknown data, ONNX, HDF5) into
                 errors. Uses the shipped default model unless --model.
                 --loader and --as choose the loader as for trace.

  train --benign PATH... --out FILE [--task LABEL] [--no-cluster]
        [--families LIST] [--target-fpr F] [--jobs N]
                 Train a model bundle from benign files only (task clusters,
                 one-class SVMs, thresholds by cross-validation).

  eval --benign PATH... --malicious PATH... [--model FILE] [--format F]
                 Precision, recall, F1, FPR, ROC-AUC of a bundle, overall,
                 per technique (first folder under a --malicious path) and
                 per cluster (first folder under a --benign path).

  disasm FILE... [--format text|json] [--max-depth N] [--max-expanded BYTES]
                 [--full-hash]
                 List every pickle opcode (offset, opcode, argument, memo
                 effect) and the globals of every pickle stream in every
                 container member, statically (nothing is unpickled).

  trace FILE... [--opcodes] [--format text|json] [--loader L] [--as NAME]
               [--timeout SECONDS] [--memory MIB] [--jobs N] [--no-prewarm]
               [--full-hash]
                 Load each file for real inside the sandbox (seccomp, no
                 network, writes confined to a scratch directory, limits)
                 and show what the load did: globals, calls, audit events,
                 blocked actions, integrity findings, syscalls, exit status.
                 --opcodes executes the pickle one opcode at a time and
                 interleaves each opcode with the events it caused.
                 --jobs N traces with N worker zygotes in parallel (output
                 stays in input order). Every worker imports all
                 allowlisted ML libraries first (as for scan, train and
                 eval), so a trace does not depend on what the worker traced
                 before; --no-prewarm imports lazily (faster start-up for
                 one file, but the trace then depends on that history).
                 The loaders a victim would call run on the file: the one
                 for its content, plus the one its extension implies where
                 that could run other code (a raw pickle named .pt also
                 goes through torch.load, a joblib file named .pkl through
                 pickle.load); stacked pickles all run, each event marked
                 with its stream. --loader L runs L alone (auto|torch.load|
                 joblib.load|numpy.load|pickle.load); --as NAME loads as if
                 the file were named NAME (e.g. --as .pt for a hub blob).
                 Needs root (namespaces, seccomp supervision).

  serve [--model FILE] [--task LABEL] [--strict] [--timeout S]
        [--memory MIB] [--no-prewarm]
                 The helper of the Python package (`dynahug.load`): keeps a
                 warm zygote and answers scan requests on stdin/stdout
                 (a binary protocol, not for interactive use).

Tensor storages are never read: a file is identified by its content key
(SHA-256 over every byte analysed plus where the skipped storages lie; the
plain SHA-256 when nothing was skipped). --full-hash also computes the whole
file's SHA-256 (one more read of every byte).

options:
  -h, --help     show this help
  --version      show the version

exit codes: 0 success/benign, 1 malicious found, 2 error (and nothing
malicious); 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP): the run was
interrupted, its workers and sandboxed loads were killed first.
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
  if (command == "scan") return RunScan(rest, out, err);
  if (command == "serve") return RunServe(rest, out, err);
  if (command == "train") return RunTrain(rest, out, err);
  if (command == "eval") return RunEval(rest, out, err);
  err << "dynahug: unknown command '" << command << "'\n\n" << kUsage;
  return kExitError;
}

}  // namespace dynahug::runtime

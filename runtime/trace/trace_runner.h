// TraceRunner: the zygote. It owns the process's embedded interpreter and the
// loader, imports the ML libraries a file's load needs once (from an
// allowlist, never a name taken from the file), and traces each file by:
//
//   1. reading and analysing it statically in this process (no unpickling),
//   2. forking a sandboxed child (sandbox::RunSandboxed) that runs the real
//      library loaders a victim would call (FileLoaders; archive members
//      one by one) with every hook on and streams events back,
//   3. assembling the proto::Trace: static part + events + syscall counts +
//      how the child ended.
//
// This process never unpickles the file: only the child does, after the
// sandbox is in place.
//
// Threading: one TraceRunner per process, used from the thread that created
// it (the interpreter's thread). Trace() is not reentrant.
#ifndef DYNAHUG_RUNTIME_TRACE_TRACE_RUNNER_H_
#define DYNAHUG_RUNTIME_TRACE_TRACE_RUNNER_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "hooks/integrity_diff.h"
#include "proto/dynahug.pb.h"
#include "runtime/container/container.h"
#include "runtime/embed/interpreter.h"
#include "runtime/embed/loader.h"
#include "sandbox/child_launcher.h"

namespace dynahug::runtime {

struct TraceRunnerOptions {
  InterpreterOptions interpreter;
  // Top-level packages the zygote may import before forking. Only names on
  // this list are ever imported in this (unsandboxed) process, whatever a
  // file references.
  std::vector<std::string> preimport_allowlist = {
      "numpy", "torch", "joblib", "sklearn", "pandas", "scipy", "xgboost"};
  // Also import, before the fork, the submodules of allowlisted packages
  // that a file's static globals name, as runtime/trace/preimport_policy.h
  // vets them (an sklearn pickle's child then no longer imports ~100
  // modules under every hook).
  bool preimport_submodules = true;
};

struct TraceOptions {
  // Loader choice and hook switches (LoadOptions::format is filled in from
  // the static analysis). load.loader other than "auto" (`--loader`) is the
  // only loader run, on the file itself; see FileLoaders for "auto".
  LoadOptions load;
  sandbox::Policy policy;
  AnalyzeOptions analyze;
  // The name a victim would load the file under (`--as`): its extension
  // picks the extension loader (LoaderForName) instead of the path's own
  // name. A bare extension (".pt") is enough. "" = the path's name.
  std::string as_name;
};

// Which loaders run on the file itself (not on the members of a generic
// archive), in order; empty when none does. The sandbox runs the loader a
// victim would call, on the raw file, and that loader decides what is
// loadable:
//   - options.load.loader other than "auto": that loader alone.
//   - else the loader for the sniffed format (DefaultLoaderFor), and the
//     loader the file's extension implies (LoaderForName of options.as_name
//     or of the path) when it differs and could run code the first one does
//     not:
//       raw pickle named .pt/.pth/.bin/.ckpt: pickle.load (every stacked
//         stream) and then torch.load (its legacy path unpickles the fourth
//         stream with a persistent_load, where a pickle.load loop stops);
//       joblib file named .pkl/.pickle: joblib.load and then pickle.load
//         (which reads joblib's inline array bytes as opcodes).
//     Every other disagreement adds nothing (the extension's loader would
//     fail before running any pickle code, or run a prefix of what the
//     content loader runs) and is not run: e.g. a torch zip named .pkl
//     (pickle.load stops at "PK"), a raw pickle named .joblib or .npy
//     (joblib.load and numpy.load unpickle its first stream only).
//   - a generic archive (zip, 7z, tar) or a file of unknown format: only a
//     loader that opens such a container itself, when the extension names
//     it: torch.load for a zip (it finds data.pkl where dynahug's reader
//     may not) or a tar (its legacy tar format), numpy.load for a zip (as
//     npz). A pickle-reading loader fails on the first byte of bytes the
//     sniff found no pickle in, so it is not run. Loadable members of a
//     generic archive are loaded besides, as a user who unpacks it would.
std::vector<std::string> FileLoaders(const AnalyzedFile& file,
                                     const TraceOptions& options);

// Analyses `path` for tracing: like AnalyzeFile, but with an explicit
// loader (`--loader`) a file of unknown format is accepted (root format
// kData) and handed to that loader, which decides.
absl::StatusOr<AnalyzedFile> AnalyzeForTrace(const std::string& path,
                                             const TraceOptions& options);

// Name of the LOG event the child sends last with the loader's result; the
// parent folds it into Trace.loader / Trace.loaded_type and drops it.
inline constexpr char kLoadResultEvent[] = "dynahug.load_result";

class TraceRunner {
 public:
  // Initialises the interpreter (once per process) and the loader.
  static absl::StatusOr<TraceRunner> Create(
      const TraceRunnerOptions& options = {});

  TraceRunner(TraceRunner&&) = default;
  TraceRunner& operator=(TraceRunner&&) = default;

  // Imports the allowlisted packages that loading `file` will need: those of
  // its loaders (torch for torch formats, joblib + numpy for joblib, numpy for
  // npy/npz) and the top-level packages of its static globals; then, with
  // preimport_submodules, the submodules SubmodulesToPreimport allows (a
  // submodule whose import fails is skipped and never retried). Idempotent.
  absl::Status Warm(const AnalyzedFile& file, const TraceOptions& options);

  // Traces one file (steps 1-3 above). Errors are for files that cannot be
  // analysed at all (unreadable, unknown format) and for sandbox set-up
  // failures; a load that fails, crashes, times out or is blocked is a
  // Trace, not an error.
  absl::StatusOr<proto::Trace> Trace(const std::string& path,
                                     const TraceOptions& options);
  // Same, for a file already analysed by the caller.
  absl::StatusOr<proto::Trace> Trace(const AnalyzedFile& file,
                                     const TraceOptions& options);

  // The zygote's interpreter (diagnostics and tests).
  Interpreter& interpreter() { return interpreter_; }

  // Packages and submodules imported so far by Warm().
  const std::set<std::string>& imported() const { return imported_; }

 private:
  TraceRunner(Interpreter interpreter, Loader loader,
              std::vector<std::string> allowlist, bool submodules)
      : interpreter_(std::move(interpreter)),
        loader_(std::move(loader)),
        allowlist_(std::move(allowlist)),
        preimport_submodules_(submodules) {}

  // Imports what SubmodulesToPreimport allows for `file`; true when
  // something new was imported.
  bool PreimportSubmodules(const AnalyzedFile& file);

  Interpreter interpreter_;
  Loader loader_;
  std::vector<std::string> allowlist_;
  bool preimport_submodules_ = true;
  std::set<std::string> imported_;
  // Directories of the imported allowlisted packages, and submodules whose
  // import failed.
  std::map<std::string, std::string> package_dirs_;
  std::set<std::string> failed_;
  size_t preimported_ = 0;  // submodule imports tried (kMaxPreimportPerZygote)
  // Integrity snapshot taken once in the zygote (after the last import) and
  // shared copy-on-write by every child, which then only diffs against it:
  // far fewer page faults per child than snapshotting in the child.
  std::optional<hooks::IntegritySnapshot> baseline_;
};

// Top-level packages loading `file` needs: those of each load target's loader
// (LoaderSpec::packages: torch for torch.load, joblib + numpy for
// joblib.load, numpy for numpy.load) and the top-level packages of its static
// globals. Not filtered by any allowlist. Pure.
std::set<std::string> PackagesNeeded(const AnalyzedFile& file,
                                     const TraceOptions& options);

// Packages the loader `loader` ("torch.load", ...) itself imports
// (LoaderSpec::packages; none for a name not in the table).
void LoaderPackages(std::string_view loader, std::set<std::string>& out);

// What Trace.loader says for `file`: FileLoaders joined by ",", or
// "archive" when only the members of a generic archive are loaded.
std::string ResolveLoader(const AnalyzedFile& file,
                          const TraceOptions& options);

// Names of the LOG events by which the pickle.load driver marks stacked
// streams (runtime/embed/loader.py): one before each stream after the first
// ({index, offset}; the parent turns it into Event.stream and drops it), and
// a summary after a multi-stream load ({streams, stop}; kept).
inline constexpr char kPickleStreamEvent[] = "dynahug.pickle_stream";
inline constexpr char kPickleStreamsEvent[] = "dynahug.pickle_streams";

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_TRACE_TRACE_RUNNER_H_

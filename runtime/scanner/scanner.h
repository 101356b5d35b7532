// dynahug::Scanner: the C++ API of dynahug. Decides whether a model file
// (a path, or bytes in memory) is malicious, the way `dynahug scan` does:
// sandboxed load in a warm zygote, behaviour features, the model bundle's
// one-class SVMs and observed capabilities.
//
//   absl::StatusOr<std::unique_ptr<dynahug::Scanner>> scanner =
//       dynahug::Scanner::Create();          // default model bundle
//   if (!scanner.ok()) fail(scanner.status());
//   absl::StatusOr<dynahug::ScanOutcome> r = (*scanner)->ScanPath("m.pt");
//   if (r.ok() && r->verdict.label() == dynahug::proto::Verdict::BENIGN) ...
//
// Verdicts, not errors: a malicious file, a file that could not be analysed
// (unreadable, truncated, timed out: label ERROR, "inconclusive is never
// clean") and a skipped format (safetensors, GGUF, JSON, text: label
// SKIPPED) are all ScanOutcomes. A Status error means the scanner itself is
// broken (its worker could not be started or kept dying).
//
// Processes: Create() forks the worker zygotes (sandbox/worker_pool.h) from
// the calling process; each builds its own embedded interpreter and, with
// ScannerOptions::prewarm, imports the allowlisted ML libraries (seconds).
// Every scan then forks a sandboxed child from a zygote, never the caller.
// Workers die with the Scanner (and with the process).
//
// Preconditions: Linux, root (namespaces and seccomp supervision, like
// `dynahug trace`); the calling process is single-threaded while Create()
// and the Scan calls run (a worker that died is re-forked from the caller)
// and does not reap children it did not create.
//
// Thread safety: none; one thread uses a Scanner at a time.
#ifndef DYNAHUG_RUNTIME_SCANNER_SCANNER_H_
#define DYNAHUG_RUNTIME_SCANNER_SCANNER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/dynahug.pb.h"

namespace dynahug {

struct ScannerOptions {
  // Model bundle file; "" = the default bundle ($DYNAHUG_MODEL, else
  // default.dhm beside the binary, ../share/dynahug/default.dhm, the source
  // tree's models/default.dhm).
  std::string model_path;
  // Route only to clusters trained under this task label ("" = any).
  std::string task;
  // Formats dynahug cannot vouch for (unknown data, ONNX, HDF5) are ERROR
  // instead of SKIPPED (`dynahug scan --strict`).
  bool strict = false;
  // Wall-clock and CPU limit of one sandboxed load, seconds (0: the
  // sandbox default, 10 s).
  uint32_t timeout_seconds = 0;
  // Memory limit of one sandboxed load, MiB (0: the sandbox default).
  uint64_t memory_mib = 0;
  // ScanPath also reads every byte of the file for ScanOutcome::sha256
  // (`--full-hash`); without it, a file whose tensor storages were skipped
  // has only its content key.
  bool full_hash = false;
  // Import every allowlisted ML library in the zygote before the first scan:
  // the conditions the default bundle was trained under (a trace then does
  // not depend on what was scanned before). Costs seconds at Create().
  bool prewarm = true;
};

// A global the sandboxed load resolved (an Event of kind GLOBAL, or a
// "pickle.find_class" audit event of an unpickler the loader ran itself).
struct ResolvedGlobal {
  std::string module;
  std::string name;
  // Resolved to an inert stub: its module is not installed for the sandbox.
  bool stub = false;
};

struct ScanOutcome {
  proto::Verdict verdict;
  // Top-level format (FORMAT_UNSPECIFIED when the file was not loaded).
  proto::ContainerFormat format = proto::FORMAT_UNSPECIFIED;
  // The loader the sandbox ran ("torch.load", "joblib.load", "numpy.load",
  // "pickle.load"); "" when the file was not loaded.
  std::string loader;
  // Lowercase hex SHA-256 of the whole file: set when the file was loaded
  // and either read in full (nothing skipped), scanned with
  // ScannerOptions::full_hash, or passed to ScanBytes (hashed from memory,
  // unless ScanOptions::hash_bytes is off).
  std::string sha256;
  // The file's identity without reading tensor storages (FileIdentity
  // .content_key, runtime/container/content_key.h): SHA-256 over every byte
  // analysed plus the ranges skipped; equal to sha256 when nothing was
  // skipped. "" when the file was not loaded.
  std::string content_key;
  // Every distinct global the load resolved, in first-resolved order
  // (values longer than the trace's bound end in "..."). Empty when the
  // file was not loaded.
  std::vector<ResolvedGlobal> globals;
  // The sandboxed load returned (the child ended OK); else `load_error`
  // says how it ended (the loader raised, a limit, a crash).
  bool loaded = false;
  std::string load_error;
  // Wall time of the scan, milliseconds.
  double elapsed_ms = 0;
  // The full trace, when ScanOptions::keep_trace and the file was loaded.
  std::optional<proto::Trace> trace;
};

struct ScanOptions {
  bool keep_trace = false;
  // ScanBytes fills ScanOutcome::sha256 from memory (~0.6 ms per MB); off
  // for callers that hash the bytes themselves (the Python package).
  bool hash_bytes = true;
};

class Scanner {
 public:
  // Loads the model bundle and starts the worker zygote. Errors: the bundle
  // cannot be read or is invalid (names the file), the worker cannot be
  // forked.
  static absl::StatusOr<std::unique_ptr<Scanner>> Create(
      const ScannerOptions& options = {});

  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;
  ~Scanner();

  // Scans the file at `path` (the sandbox reads the file itself).
  absl::StatusOr<ScanOutcome> ScanPath(const std::string& path,
                                       const ScanOptions& options = {});

  // Scans `data`: the bytes are written to a private temporary file named
  // after the last component of `name` (so that a loader chosen by
  // extension is the same as for the original file), scanned, and removed.
  // Verdict messages name that temporary file.
  absl::StatusOr<ScanOutcome> ScanBytes(std::span<const uint8_t> data,
                                        std::string_view name,
                                        const ScanOptions& options = {});

  // "<bundle name> sha256:<16 hex>" of the model bundle in use.
  const std::string& model_id() const;

 private:
  struct Impl;
  explicit Scanner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dynahug

#endif  // DYNAHUG_RUNTIME_SCANNER_SCANNER_H_

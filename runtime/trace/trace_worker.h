// Tracing on the generic worker pool (sandbox/worker_pool.h): each worker is
// a zygote holding its own TraceRunner (and with it the embedded
// interpreter); a request is a path (TraceRequest: optionally with the name
// the file is loaded under), the reply a serialized proto::Trace.
//
// Scheduling by needs (sandbox::WorkerJob::needs, TraceNeeds below) was
// measured to save nothing for tracing -- the small zygotes' children import
// more -- so `dynahug trace` leaves `needs` empty: plain FIFO
// (bench/README.md).
#ifndef DYNAHUG_RUNTIME_TRACE_TRACE_WORKER_H_
#define DYNAHUG_RUNTIME_TRACE_TRACE_WORKER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/trace/trace_runner.h"
#include "sandbox/worker_pool.h"

namespace dynahug::runtime {

struct TraceWorkerOptions {
  // Before the first fork, after every import and then every this many
  // files, back the zygote's private anonymous memory with transparent huge
  // pages (madvise MADV_HUGEPAGE + MADV_COLLAPSE, Linux >= 6.1, best
  // effort): fork() copies page tables, and one 2 MiB entry replaces 512.
  // Re-done periodically because the zygote's own writes while a child
  // shares a huge page split it again. 0: never.
  uint32_t compact_every = 64;
  // At start, import every package of TraceRunnerOptions'
  // preimport_allowlist (through TraceRunner::Warm on a built-in pickle
  // that references them; nothing is unpickled), so that every zygote is in
  // the same state whatever files it traced before. Without it, libraries
  // are imported lazily and a child's trace depends on the zygote's import
  // history (e.g. a .npy load in a fresh zygote records ~2x the
  // PYTHON_CALL events it records in one that imported torch), which with
  // several workers depends on scheduling. On by default (trace, scan, train
  // and eval alike); costs start-up time (seconds per worker) and memory,
  // measured in bench/README.md.
  bool prewarm = true;
};

// The request that traces `path` as if it were named `as_name` (overriding
// TraceOptions::as_name for this file; "" keeps the worker's option): e.g. a
// Hugging Face blob, stored under its hash, is loaded under its snapshot
// name. The path and the name are separated by a NUL, which no path holds.
std::string TraceRequest(const std::string& path, const std::string& as_name);

// Handler that traces files: the request is a TraceRequest, the reply a serialized
// proto::Trace; errors are TraceRunner::Trace's. The TraceRunner (and with
// it the interpreter) is created in the worker; libraries are imported
// lazily, per file, by TraceRunner::Warm (called before Trace so that the
// zygote is compacted after an import, before the fork).
sandbox::WorkerFactory TraceWorkerFactory(
    TraceOptions trace_options, TraceRunnerOptions runner_options = {},
    TraceWorkerOptions worker_options = {});

// sandbox::WorkerJob::needs for tracing `path`: PackagesNeeded (trace_runner.h,
// the set TraceRunner::Warm imports) filtered by the allowlist, sorted. Files
// up to `max_analyze_bytes` are analysed statically in the calling process (no
// unpickling); larger ones are classified from their first bytes only. Empty
// when the file cannot be read (the worker reports why).
std::vector<std::string> TraceNeeds(
    const std::string& path, const TraceOptions& options,
    const TraceRunnerOptions& runner_options = {},
    uint64_t max_analyze_bytes = uint64_t{1} << 20);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_TRACE_TRACE_WORKER_H_

#include "runtime/trace/trace_worker.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/container/container.h"
#include "runtime/container/sniff.h"
#include "runtime/embed/loader.h"
#include "runtime/embed/loader_table.h"

namespace dynahug::runtime {
namespace {

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux >= 6.1
#endif

// Backs the zygote's private anonymous memory (heap, arenas) with
// transparent huge pages, synchronously: fork() then copies one PMD entry
// per 2 MiB instead of 512 PTEs, which is most of what a fork of a process
// with torch imported costs. Only the contents' backing changes. A child
// that writes to such a page gets it split and copies 4 KiB as before.
// Best effort (kernels without MADV_COLLAPSE or with THP "never" keep 4 KiB
// pages). Returns how many bytes are now in huge pages.
uint64_t CompactForFork() {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  std::ifstream maps("/proc/self/maps");
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  for (std::string line; std::getline(maps, line);) {
    // "start-end perms offset dev inode [path]"
    char perms[8] = {};
    unsigned long start = 0, end = 0, inode = 0;
    char path[64] = {};
    const int n = std::sscanf(line.c_str(), "%lx-%lx %7s %*s %*s %lu %63s",
                              &start, &end, perms, &inode, path);
    if (n < 4 || std::strcmp(perms, "rw-p") != 0 || inode != 0) continue;
    if (n == 5 && std::strcmp(path, "[heap]") != 0) continue;  // [stack]...
    const uintptr_t lo = (start + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t hi = end & ~(kHuge - 1);
    if (hi > lo) ranges.emplace_back(lo, hi);
  }
  for (const auto& [lo, hi] : ranges) {
    void* addr = reinterpret_cast<void*>(lo);
    if (madvise(addr, hi - lo, MADV_HUGEPAGE) == 0) {
      (void)madvise(addr, hi - lo, MADV_COLLAPSE);
    }
  }
  std::ifstream rollup("/proc/self/smaps_rollup");
  for (std::string line; std::getline(rollup, line);) {
    unsigned long kib = 0;
    if (std::sscanf(line.c_str(), "AnonHugePages: %lu kB", &kib) == 1) {
      return uint64_t{kib} << 10;
    }
  }
  return 0;
}

class TraceHandler final : public sandbox::WorkerHandler {
 public:
  TraceHandler(TraceRunner runner, TraceOptions options,
               TraceWorkerOptions worker_options)
      : runner_(std::move(runner)),
        options_(std::move(options)),
        worker_options_(worker_options) {}

  absl::StatusOr<std::string> Handle(std::string_view request) override {
    const size_t nul = request.find('\0');
    const std::string path(request.substr(0, nul));
    TraceOptions named;
    const TraceOptions* options = &options_;
    if (nul != std::string_view::npos) {
      named = options_;
      named.as_name = std::string(request.substr(nul + 1));
      options = &named;
    }
    return Trace(path, *options);
  }

 private:
  absl::StatusOr<std::string> Trace(const std::string& path,
                                    const TraceOptions& options) {
    absl::StatusOr<AnalyzedFile> file = AnalyzeForTrace(path, options);
    if (!file.ok()) return file.status();
    // Import what the file needs first (Trace would do it too), so that the
    // zygote can be compacted before the fork when something new came in.
    const size_t imported = runner_.imported().size();
    (void)runner_.Warm(*file, options);  // Trace reports failures
    if (worker_options_.compact_every > 0) {
      ++files_since_compact_;
      if (!compacted_ || runner_.imported().size() != imported ||
          files_since_compact_ >= worker_options_.compact_every) {
        CompactForFork();
        compacted_ = true;
        files_since_compact_ = 0;
      }
    }
    absl::StatusOr<proto::Trace> trace = runner_.Trace(*file, options);
    if (!trace.ok()) return trace.status();
    std::string out;
    if (!trace->SerializeToString(&out)) {
      return absl::InternalError(
          absl::StrCat(path, ": serializing the trace failed"));
    }
    return out;
  }

  TraceRunner runner_;
  TraceOptions options_;
  TraceWorkerOptions worker_options_;
  bool compacted_ = false;
  uint32_t files_since_compact_ = 0;
};

// Imports `packages` in the zygote: a protocol-2 pickle made of one GLOBAL
// per package ("<package> __name__", popped) is analysed statically and
// handed to TraceRunner::Warm, which imports the allowlisted top-level
// packages of a file's globals. Nothing is unpickled.
absl::Status Prewarm(TraceRunner& runner,
                     const std::vector<std::string>& packages) {
  std::string pickle = "\x80\x02";
  for (const std::string& package : packages) {
    pickle += "c" + package + "\n__name__\n0";  // GLOBAL, POP
  }
  pickle += "N.";  // NONE, STOP
  absl::StatusOr<AnalyzedFile> file = AnalyzeBytes(
      {reinterpret_cast<const uint8_t*>(pickle.data()), pickle.size()},
      "dynahug-prewarm");
  if (!file.ok()) return file.status();
  TraceOptions options;
  options.load.loader = "pickle.load";
  absl::Status status = runner.Warm(*file, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("zygote: pre-importing ", absl::StrJoin(packages, ", "),
                     " failed: ", std::string(status.message())));
  }
  return absl::OkStatus();
}

}  // namespace

std::string TraceRequest(const std::string& path, const std::string& as_name) {
  if (as_name.empty()) return path;
  std::string request = path;
  request.push_back('\0');
  request += as_name;
  return request;
}

sandbox::WorkerFactory TraceWorkerFactory(TraceOptions trace_options,
                                          TraceRunnerOptions runner_options,
                                          TraceWorkerOptions worker_options) {
  return [trace_options = std::move(trace_options),
          runner_options = std::move(runner_options), worker_options](
             int) -> absl::StatusOr<std::unique_ptr<sandbox::WorkerHandler>> {
    absl::StatusOr<TraceRunner> runner = TraceRunner::Create(runner_options);
    if (!runner.ok()) return runner.status();
    if (worker_options.prewarm) {
      absl::Status warm = Prewarm(*runner, runner_options.preimport_allowlist);
      if (!warm.ok()) return warm;
    }
    return std::make_unique<TraceHandler>(std::move(*runner), trace_options,
                                          worker_options);
  };
}

std::vector<std::string> TraceNeeds(const std::string& path,
                                    const TraceOptions& options,
                                    const TraceRunnerOptions& runner_options,
                                    uint64_t max_analyze_bytes) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  std::set<std::string> needs;
  const std::string& loader = options.load.loader;
  if (static_cast<uint64_t>(st.st_size) <= max_analyze_bytes) {
    absl::StatusOr<AnalyzedFile> file = AnalyzeForTrace(path, options);
    if (!file.ok()) return {};
    needs = PackagesNeeded(*file, options);
  } else if (loader != "auto") {
    LoaderPackages(loader, needs);
  } else {
    // Too big to analyse twice: classify by magic bytes, the way the
    // automatic loader choice would; a large generic archive is most likely
    // a torch checkpoint.
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    uint8_t head[kSniffBytes];
    const ssize_t got = read(fd, head, sizeof(head));
    close(fd);
    if (got <= 0) return {};
    const Format format = SniffMagic({head, static_cast<size_t>(got)}).format;
    if (absl::StatusOr<std::string> by_format =
            DefaultLoaderFor(FormatName(format));
        by_format.ok()) {
      LoaderPackages(*by_format, needs);
    } else if (format == Format::kZip || format == Format::kTar ||
               format == Format::kSevenZip) {
      LoaderPackages("torch.load", needs);
    }
    if (absl::StatusOr<std::string> by_name = LoaderForName(
            options.as_name.empty() ? path : options.as_name);
        by_name.ok()) {
      LoaderPackages(*by_name, needs);
    }
  }
  std::vector<std::string> out;
  for (const std::string& package : needs) {
    if (std::find(runner_options.preimport_allowlist.begin(),
                  runner_options.preimport_allowlist.end(),
                  package) != runner_options.preimport_allowlist.end()) {
      out.push_back(package);
    }
  }
  return out;
}

}  // namespace dynahug::runtime

// Throughput and per-file latency of sandboxed tracing (the work behind
// `dynahug trace`), one JSON object per run on stdout.
//
//   trace_throughput --mode pool --workers N [--rounds R] FILE... | @LIST
//   trace_throughput --mode inproc [--rounds R] FILE... | @LIST
//
// pool:   a WorkerPool of N zygote processes (sandbox/worker_pool.h), as
//         `dynahug trace --jobs N` uses it (--affinity: route files by the
//         packages they need, TraceNeeds, instead of plain FIFO; --no-prewarm:
//         lazy imports instead of TraceWorkerOptions::prewarm (the default;
//         --prewarm is still accepted); --no-compact: zygotes keep 4 KiB
//         pages, see TraceWorkerOptions::compact_every). Latency of a file =
//         from handing it to a worker to its reply in the parent (static
//         analysis, fork, sandbox, load, hooks, event transfer, trace assembly,
//         serialization and the pipe to the parent).
// inproc: one TraceRunner in this process (`dynahug trace`, --jobs 1), with
//         the parent-side time split into static analysis, the sandboxed
//         child's lifetime and the rest (fork/reap/assembly), per file.
//
// "cold" is the first pass over the files, including interpreter start-up
// and library imports in every zygote; the R "warm" passes that follow
// measure the steady state, and their latencies and files/s are what the
// summary reports. Benign inputs only: the loads run in the sandbox, but
// this is a benchmark, not a scanner.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/dynahug.pb.h"
#include "runtime/container/container.h"
#include "runtime/trace/trace_runner.h"
#include "runtime/trace/trace_worker.h"

namespace {

using dynahug::proto::Trace;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// CPU time of `pid` from /proc/PID/stat, milliseconds: {own (utime +
// stime), reaped descendants (cutime + cstime)}.
struct CpuMs {
  double self = 0, children = 0;
  CpuMs& operator+=(const CpuMs& o) {
    self += o.self;
    children += o.children;
    return *this;
  }
};
CpuMs ProcessCpuMs(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double ticks[18] = {};
  // Fields 14-17: utime, stime, cutime, cstime; field 3 comes first here.
  for (int i = 3; i <= 17 && fields >> field; ++i) {
    if (i >= 14) ticks[i] = std::stod(field);
  }
  const double ms = 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  return {(ticks[14] + ticks[15]) * ms, (ticks[16] + ticks[17]) * ms};
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()));
  if (rank >= v.size()) rank = v.size() - 1;
  return v[rank];
}

double LoadMs(const Trace& trace) {
  double total = 0;
  for (const auto& e : trace.events()) {
    if (e.name() != dynahug::runtime::kLoadResultEvent) continue;
    for (const auto& a : e.args()) {
      double v = 0;
      if (a.key() == "load_ms" && absl::SimpleAtod(a.value(), &v)) total += v;
    }
  }
  return total;
}

// Per-file samples of the warm passes.
struct Samples {
  std::vector<double> latency_ms, child_wall_ms, child_cpu_ms, load_ms;
  std::vector<double> static_ms, rest_ms;  // inproc only
  // errors: no trace at all; not_ok: traced, but the child did not end OK
  // (a load that fails on purpose-built stubs, say): a result, not an error.
  size_t ok = 0, errors = 0, not_ok = 0;
  std::string first_error, first_not_ok;
  // Per container format: latency, child wall, child CPU.
  std::map<std::string, std::vector<double>> format_latency, format_wall,
      format_cpu;
  void Add(const absl::StatusOr<Trace>& trace, double latency) {
    latency_ms.push_back(latency);
    if (!trace.ok()) {
      ++errors;
      if (first_error.empty()) first_error = trace.status().ToString();
      return;
    }
    ++ok;
    child_wall_ms.push_back(trace->exit().wall_ms());
    child_cpu_ms.push_back(trace->exit().cpu_ms());
    load_ms.push_back(LoadMs(*trace));
    const std::string format =
        dynahug::proto::ContainerFormat_Name(trace->root().format());
    format_latency[format].push_back(latency);
    format_wall[format].push_back(trace->exit().wall_ms());
    format_cpu[format].push_back(trace->exit().cpu_ms());
    if (trace->exit().status() != dynahug::proto::ChildExit::OK) {
      ++not_ok;
      if (first_not_ok.empty()) {
        first_not_ok = absl::StrCat(
            trace->file().path(), ": child ",
            dynahug::proto::ChildExit::Status_Name(trace->exit().status()), " ",
            trace->exit().reason());
      }
    }
  }
};

std::string Stat(const char* name, const std::vector<double>& v) {
  return absl::StrFormat("\"%s_p50\": %.2f, \"%s_p99\": %.2f", name,
                         Percentile(v, 50), name, Percentile(v, 99));
}

int Usage() {
  std::cerr << "usage: trace_throughput --mode pool|inproc [--workers N] "
               "[--rounds R] [--affinity] [--no-prewarm] "
               "[--no-compact | --compact-every N] FILE... | @LIST\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode;
  int workers = 1;
  int rounds = 1;
  bool affinity = false;
  dynahug::runtime::TraceWorkerOptions worker_options;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--affinity") {
      affinity = true;
      continue;
    }
    if (arg == "--prewarm" || arg == "--no-prewarm") {
      worker_options.prewarm = arg == "--prewarm";
      continue;
    }
    if (arg == "--no-compact") {
      worker_options.compact_every = 0;
      continue;
    }
    if ((arg == "--mode" || arg == "--workers" || arg == "--rounds" ||
         arg == "--compact-every") &&
        i + 1 < argc) {
      const std::string v = argv[++i];
      if (arg == "--compact-every" &&
          !absl::SimpleAtoi(v, &worker_options.compact_every)) {
        return Usage();
      }
      if (arg == "--mode") mode = v;
      if (arg == "--workers" && !absl::SimpleAtoi(v, &workers)) return Usage();
      if (arg == "--rounds" && !absl::SimpleAtoi(v, &rounds)) return Usage();
    } else if (arg.starts_with("@")) {
      std::ifstream list(arg.substr(1));
      for (std::string line; std::getline(list, line);) {
        if (!line.empty()) files.push_back(line);
      }
    } else if (arg.starts_with("-")) {
      return Usage();
    } else {
      files.push_back(arg);
    }
  }
  if ((mode != "pool" && mode != "inproc") || files.empty() || workers < 1 ||
      rounds < 1) {
    return Usage();
  }

  dynahug::runtime::TraceOptions options;
  Samples warm;
  double cold_s = 0, warm_s = 0, startup_ms = 0;
  // CPU of every process involved (driver, workers, sandboxed children)
  // over the warm passes: what a file costs whatever else the machine runs.
  // zygote: the process(es) that fork (fork, supervision, static analysis,
  // trace assembly); children: the sandboxed children; driver: this
  // process when it is not the zygote (pool mode).
  double zygote_cpu_ms = 0, children_cpu_ms = 0, driver_cpu_ms = 0;
  std::string extra;

  if (mode == "pool") {
    const auto t0 = Clock::now();
    dynahug::sandbox::WorkerPoolOptions pool_options;
    pool_options.workers = workers;
    auto pool = dynahug::sandbox::WorkerPool::Create(
        dynahug::runtime::TraceWorkerFactory(options, {}, worker_options),
        pool_options);
    if (!pool.ok()) {
      std::cerr << pool.status() << "\n";
      return 1;
    }
    std::vector<dynahug::sandbox::WorkerJob> jobs;
    for (const auto& f : files) {
      jobs.push_back({f, affinity ? dynahug::runtime::TraceNeeds(f, options)
                                  : std::vector<std::string>{}});
    }
    startup_ms = Ms(Clock::now() - t0);
    CpuMs driver_before, workers_before;
    for (int round = 0; round <= rounds; ++round) {
      if (round == 1) {
        driver_before = ProcessCpuMs(getpid());
        for (pid_t pid : (*pool)->worker_pids()) {
          workers_before += ProcessCpuMs(pid);
        }
      }
      std::vector<absl::StatusOr<Trace>> traces;
      const auto start = Clock::now();
      absl::Status run =
          (*pool)->Run(jobs, [&](size_t, absl::StatusOr<std::string> reply) {
            if (!reply.ok()) {
              traces.push_back(reply.status());
              return;
            }
            Trace trace;
            if (!trace.ParseFromString(*reply)) {
              traces.push_back(absl::InternalError("unparseable trace"));
              return;
            }
            traces.push_back(std::move(trace));
          });
      const double seconds = Ms(Clock::now() - start) / 1000;
      if (!run.ok()) {
        std::cerr << run << "\n";
        return 1;
      }
      if (round == 0) {
        cold_s = seconds + startup_ms / 1000;
        continue;
      }
      warm_s += seconds;
      for (size_t i = 0; i < traces.size(); ++i) {
        warm.Add(traces[i], (*pool)->stats().job_wall_ms[i]);
      }
    }
    CpuMs workers_after;
    for (pid_t pid : (*pool)->worker_pids()) {
      workers_after += ProcessCpuMs(pid);
    }
    driver_cpu_ms = ProcessCpuMs(getpid()).self - driver_before.self;
    zygote_cpu_ms = workers_after.self - workers_before.self;
    children_cpu_ms = workers_after.children - workers_before.children;
    std::string per_worker;
    for (uint64_t n : (*pool)->stats().jobs_per_worker) {
      per_worker += (per_worker.empty() ? "" : ", ") + std::to_string(n);
    }
    extra = absl::StrFormat(
        ", \"restarts\": %d, \"affinity_hits\": %d, \"jobs_per_worker\": [%s]",
        (*pool)->stats().restarts, (*pool)->stats().affinity_hits, per_worker);
  } else {
    const auto t0 = Clock::now();
    auto runner = dynahug::runtime::TraceRunner::Create();
    if (!runner.ok()) {
      std::cerr << runner.status() << "\n";
      return 1;
    }
    startup_ms = Ms(Clock::now() - t0);
    CpuMs before;
    for (int round = 0; round <= rounds; ++round) {
      if (round == 1) before = ProcessCpuMs(getpid());
      const auto start = Clock::now();
      for (const auto& f : files) {
        const auto a = Clock::now();
        auto file = dynahug::runtime::AnalyzeFile(f, options.analyze);
        const auto b = Clock::now();
        absl::StatusOr<Trace> trace =
            file.ok() ? runner->Trace(*file, options)
                      : absl::StatusOr<Trace>(file.status());
        std::string bytes;
        if (trace.ok()) trace->SerializeToString(&bytes);  // as a worker does
        const auto c = Clock::now();
        if (round == 0) continue;
        warm.Add(trace, Ms(c - a));
        warm.static_ms.push_back(Ms(b - a));
        if (trace.ok()) {
          warm.rest_ms.push_back(Ms(c - b) - trace->exit().wall_ms());
        }
      }
      const double seconds = Ms(Clock::now() - start) / 1000;
      if (round == 0) {
        cold_s = seconds + startup_ms / 1000;
      } else {
        warm_s += seconds;
      }
    }
    const CpuMs after = ProcessCpuMs(getpid());
    zygote_cpu_ms = after.self - before.self;
    children_cpu_ms = after.children - before.children;
    extra = absl::StrCat(", ", Stat("static_ms", warm.static_ms), ", ",
                         Stat("fork_reap_assembly_ms", warm.rest_ms));
  }

  const double n_warm = static_cast<double>(warm.latency_ms.size());
  std::cout << absl::StrFormat(
                   "{\"mode\": \"%s\", \"workers\": %d, \"files\": %d, "
                   "\"rounds\": %d, \"ok\": %d, \"errors\": %d, "
                   "\"child_not_ok\": %d, "
                   "\"startup_ms\": %.1f, \"cold_s\": %.3f, "
                   "\"cold_files_per_s\": %.1f, \"warm_s\": %.3f, "
                   "\"files_per_s\": %.1f, \"cpu_ms_per_file\": %.2f, "
                   "\"zygote_cpu_ms_per_file\": %.2f, "
                   "\"children_cpu_ms_per_file\": %.2f, "
                   "\"driver_cpu_ms_per_file\": %.2f, %s, %s, %s, %s",
                   mode, mode == "pool" ? workers : 1, files.size(), rounds,
                   warm.ok, warm.errors, warm.not_ok, startup_ms, cold_s,
                   static_cast<double>(files.size()) / cold_s, warm_s,
                   n_warm / warm_s,
                   (zygote_cpu_ms + children_cpu_ms + driver_cpu_ms) / n_warm,
                   zygote_cpu_ms / n_warm, children_cpu_ms / n_warm,
                   driver_cpu_ms / n_warm, Stat("latency_ms", warm.latency_ms),
                   Stat("child_wall_ms", warm.child_wall_ms),
                   Stat("child_cpu_ms", warm.child_cpu_ms),
                   Stat("load_ms", warm.load_ms))
            << extra;
  std::cout << ", \"by_format\": {";
  bool first_format = true;
  for (const auto& [format, latency] : warm.format_latency) {
    std::cout << (first_format ? "" : ", ")
              << absl::StrFormat(
                     "\"%s\": {\"n\": %d, \"latency_ms_p50\": %.2f, "
                     "\"child_wall_ms_p50\": %.2f, \"child_cpu_ms_p50\": "
                     "%.2f}",
                     format, latency.size(), Percentile(latency, 50),
                     Percentile(warm.format_wall[format], 50),
                     Percentile(warm.format_cpu[format], 50));
    first_format = false;
  }
  std::cout << "}";
  for (const auto& [key, text] :
       {std::pair{"first_error", warm.first_error},
        std::pair{"first_child_not_ok", warm.first_not_ok}}) {
    if (text.empty()) continue;
    std::string escaped;
    for (char c : text) {
      if (c == '"' || c == '\\') escaped.push_back('\\');
      escaped.push_back(c == '\n' ? ' ' : c);
    }
    std::cout << ", \"" << key << "\": \"" << escaped << "\"";
  }
  std::cout << "}\n";
  return warm.errors == 0 ? 0 : 1;
}

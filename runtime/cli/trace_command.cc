#include "runtime/cli/trace_command.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "runtime/cli/exit_codes.h"
#include "runtime/cli/trace_batch.h"
#include "runtime/embed/loader_table.h"
#include "runtime/trace/trace_runner.h"
#include "runtime/trace/trace_worker.h"

namespace dynahug::runtime {
namespace {

struct TraceCommandOptions {
  bool json = false;
  // Worker processes (zygotes).
  uint64_t jobs = 1;
  TraceWorkerOptions worker;
  TraceOptions trace;
  std::vector<std::string> files;
};

// The usage line; the loader names come from the loader table.
std::string Usage() {
  return "usage: dynahug trace FILE... [--opcodes] [--format text|json] "
         "[--loader " +
         LoaderChoices() +
         "] [--as NAME] [--timeout SECONDS] [--memory MIB] [--jobs N] "
         "[--no-prewarm]\n"
         "       [--full-hash]\n";
}

bool ParseOptions(const std::vector<std::string>& args,
                  TraceCommandOptions& options, std::ostream& err) {
  for (size_t i = 0; i < args.size(); ++i) {
    const FlagResult batch_flag =
        ParseBatchFlag("trace", args, i, options.jobs, options.trace,
                       Usage(), err);
    if (batch_flag == FlagResult::kError) return false;
    if (batch_flag == FlagResult::kTaken) continue;
    const FlagResult loader_flag =
        ParseLoaderFlag("trace", args, i, options.trace, Usage(), err);
    if (loader_flag == FlagResult::kError) return false;
    if (loader_flag == FlagResult::kTaken) continue;
    const std::string& arg = args[i];
    auto value = [&](std::string& v) {
      if (i + 1 >= args.size()) {
        err << "dynahug trace: " << arg << " needs a value\n" << Usage();
        return false;
      }
      v = args[++i];
      return true;
    };
    std::string v;
    if (arg == "--opcodes") {
      options.trace.load.opcodes = true;
    } else if (arg == "--prewarm") {
      options.worker.prewarm = true;  // the default; kept for scripts
    } else if (arg == "--no-prewarm") {
      options.worker.prewarm = false;
    } else if (arg == "--format") {
      if (!value(v)) return false;
      if (v != "text" && v != "json") {
        err << "dynahug trace: unknown format '" << v << "'\n" << Usage();
        return false;
      }
      options.json = v == "json";
    } else if (arg.size() > 1 && arg[0] == '-') {
      err << "dynahug trace: unknown option '" << arg << "'\n" << Usage();
      return false;
    } else {
      options.files.push_back(arg);
    }
  }
  if (options.files.empty()) {
    err << Usage();
    return false;
  }
  return true;
}

std::string ArgsText(const proto::Event& e, size_t max_chars = 160) {
  std::string out;
  for (const auto& a : e.args()) {
    if (!out.empty()) out += ' ';
    out += a.key() + "=" + a.value();
  }
  if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
  return out;
}

std::string EventLine(const proto::Event& e) {
  char head[64];
  std::snprintf(head, sizeof(head), "%10.3f ms  %-11s ",
                static_cast<double>(e.timestamp_ns()) / 1e6,
                proto::Event::Kind_Name(e.kind()).c_str());
  std::string line = head + e.name();
  const std::string args = ArgsText(e);
  if (!args.empty()) line += "  " + args;
  if (e.has_pickle_offset()) line += "  @" + std::to_string(e.pickle_offset());
  if (!e.member().empty()) line += "  [" + e.member() + "]";
  if (e.has_stream()) line += "  (stream " + std::to_string(e.stream()) + ")";
  if (!e.loader().empty()) line += "  <" + e.loader() + ">";
  if (e.count() > 1) line += "  x" + std::to_string(e.count());
  if (e.blocked()) line += "  BLOCKED";
  return line;
}

void CollectGlobals(const proto::Member& m, std::vector<std::string>& out) {
  for (const auto& p : m.pickles()) {
    for (const auto& g : p.globals())
      out.push_back(g.module() + "." + g.name());
  }
  for (const auto& c : m.children()) CollectGlobals(c, out);
}

void CollectStaticErrors(const proto::Member& m, const std::string& path,
                         std::vector<std::string>& out) {
  if (!m.error().empty()) out.push_back(path + ": " + m.error());
  for (const auto& p : m.pickles()) {
    if (!p.error().empty()) out.push_back(path + ": " + p.error());
  }
  for (const auto& c : m.children()) {
    CollectStaticErrors(c, path.empty() ? c.name() : path + "/" + c.name(),
                        out);
  }
}

}  // namespace

void PrintTraceText(const proto::Trace& trace, bool chronological,
                    std::ostream& out) {
  out << trace.file().path() << ": "
      << proto::ContainerFormat_Name(trace.root().format()) << ", "
      << trace.file().size() << " bytes, "
      << (trace.file().sha256().empty() ? "content key " : "sha256 ")
      << (trace.file().sha256().empty() ? trace.file().content_key()
                                        : trace.file().sha256());
  if (trace.file().unread_bytes() > 0) {
    out << " (" << trace.file().unread_bytes()
        << " bytes of tensor or array data not read)";
  }
  out << "\n";
  std::vector<std::string> globals;
  CollectGlobals(trace.root(), globals);
  std::sort(globals.begin(), globals.end());
  globals.erase(std::unique(globals.begin(), globals.end()), globals.end());
  out << "  static globals (" << globals.size() << "):";
  for (const auto& g : globals) out << " " << g;
  out << "\n";
  std::vector<std::string> static_errors;
  CollectStaticErrors(trace.root(), "", static_errors);
  for (const auto& e : static_errors) out << "  static error: " << e << "\n";

  const proto::ChildExit& exit = trace.exit();
  out << "  loader " << trace.loader() << ": ";
  if (!trace.loaded_type().empty()) {
    out << "loaded " << trace.loaded_type();
  } else {
    out << "no object";
  }
  out << "\n  child: " << proto::ChildExit::Status_Name(exit.status())
      << " (exit " << exit.exit_code();
  if (exit.signal() != 0) out << ", signal " << exit.signal();
  char times[128];
  std::snprintf(times, sizeof(times),
                "), wall %.1f ms, cpu %.1f ms, max rss %" PRIu64 " KiB",
                exit.wall_ms(), exit.cpu_ms(), exit.max_rss_kib());
  out << times;
  if (!exit.reason().empty()) out << ", " << exit.reason();
  out << "\n";
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::LOG && e.name() == kLoadResultEvent) {
      out << "  load result"
          << (e.member().empty() ? "" : " [" + e.member() + "]")
          << (e.loader().empty() ? "" : " <" + e.loader() + ">") << ": "
          << ArgsText(e, 400) << "\n";
    }
  }

  if (chronological) {
    out << "  events (" << trace.events_size() << ", in order):\n";
    for (const auto& e : trace.events()) {
      if (e.kind() == proto::Event::OPCODE) {
        char line[64];
        std::snprintf(line, sizeof(line), "    %8" PRIu64 ": %-16s ",
                      e.has_pickle_offset() ? e.pickle_offset() : 0,
                      e.name().c_str());
        out << line << ArgsText(e) << "\n";
      } else {
        out << "        -> " << EventLine(e) << "\n";
      }
    }
  } else {
    // Grouped by kind, in the order the kinds matter to a reader.
    const proto::Event::Kind order[] = {
        proto::Event::BLOCKED,   proto::Event::AUDIT,
        proto::Event::GLOBAL,    proto::Event::PICKLE_CALL,
        proto::Event::IMPORT,    proto::Event::NATIVE,
        proto::Event::INTEGRITY, proto::Event::PYTHON_CALL,
        proto::Event::LOG,       proto::Event::SYSCALL,
        proto::Event::OPCODE};
    for (proto::Event::Kind kind : order) {
      std::vector<const proto::Event*> group;
      for (const auto& e : trace.events()) {
        if (e.kind() != kind) continue;
        if (kind == proto::Event::LOG && e.name() == kLoadResultEvent) continue;
        group.push_back(&e);
      }
      if (group.empty()) continue;
      out << "  " << proto::Event::Kind_Name(kind) << " (" << group.size()
          << "):\n";
      const size_t limit = kind == proto::Event::PYTHON_CALL ? 40 : 400;
      for (size_t i = 0; i < group.size() && i < limit; ++i) {
        out << "    " << EventLine(*group[i]) << "\n";
      }
      if (group.size() > limit) {
        out << "    ... " << group.size() - limit << " more\n";
      }
    }
  }
  if (trace.syscalls_size() > 0) {
    out << "  syscalls:";
    for (const auto& s : trace.syscalls()) {
      out << " " << s.name() << "=" << s.count();
      if (s.denied() > 0) out << "(denied " << s.denied() << ")";
    }
    out << "\n";
  }
  if (trace.dropped_events() > 0) {
    out << "  dropped events: " << trace.dropped_events() << "\n";
  }
}

int RunTrace(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err) {
  TraceCommandOptions options;
  if (!ParseOptions(args, options, err)) return kExitError;

  bool any_error = false;
  bool first = true;
  // Prints one file's result; called in input order.
  auto emit = [&](const absl::StatusOr<proto::Trace>& trace) {
    if (!trace.ok()) {
      any_error = true;
      err << "dynahug: " << std::string(trace.status().message()) << "\n";
      return;
    }
    if (options.json) {
      std::string json;
      google::protobuf::util::JsonPrintOptions print;
      print.preserve_proto_field_names = true;
      (void)google::protobuf::util::MessageToJsonString(*trace, &json, print);
      out << (first ? "\n" : ",\n") << json;
    } else {
      PrintTraceText(*trace, options.trace.load.opcodes, out);
      out << "\n";
    }
    first = false;
  };

  // Workers are zygotes forked before this process has any interpreter. One
  // worker rather than tracing in this process: the worker compacts its
  // memory for cheaper forks (TraceWorkerOptions), which measured ~15% less
  // CPU per file than the in-process zygote (bench/README.md). Plain FIFO:
  // routing files by the packages they need (TraceNeeds) was measured to
  // save nothing (bench/README.md) and costs a static analysis of every file
  // in this process. SIGINT/SIGTERM/SIGHUP end the run through the pool.
  BatchOptions batch;
  batch.trace = options.trace;
  batch.worker = options.worker;
  batch.jobs = options.jobs;
  bool started = false;
  batch.on_started = [&] {
    started = true;
    if (options.json) out << "{\"traces\": [";
  };
  absl::StatusOr<BatchOutcome> run = TraceBatch(
      options.files, batch,
      [&](size_t, absl::StatusOr<proto::Trace> trace) { emit(trace); });
  if (run.ok() && run->interrupted_by != 0) {
    // Every worker, and with it every sandboxed load, is already dead and
    // reaped. A JSON document is left unclosed: truncated output must not
    // parse as a complete one.
    out.flush();
    err << "dynahug trace: interrupted by " << SignalName(run->interrupted_by)
        << ": stopped every worker and sandboxed load; " << run->reported
        << " of " << options.files.size() << " files traced\n";
    return 128 + run->interrupted_by;
  }
  if (options.json && started) out << "\n]}\n";
  if (!run.ok()) {
    err << "dynahug trace: " << std::string(run.status().message()) << "\n";
    return kExitError;
  }
  return any_error ? kExitError : kExitOk;
}

}  // namespace dynahug::runtime

#include "runtime/cli/scan_command.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "features/detector.h"
#include "proto/dynahug.pb.h"
#include "runtime/cli/exit_codes.h"
#include "runtime/cli/json_writer.h"
#include "runtime/cli/scan_inputs.h"
#include "runtime/cli/trace_batch.h"
#include "runtime/cli/verdict_json.h"
#include "runtime/cli/version.h"
#include "runtime/scanner/default_model.h"
#include "runtime/scanner/precheck.h"

namespace dynahug::runtime {
namespace {

constexpr char kUsage[] =
    "usage: dynahug scan PATH... [--format text|json|sarif] [--model FILE]\n"
    "                    [--jobs N] [--task LABEL] [--strict] [--timeout S]\n"
    "                    [--memory MIB] [--full-hash] [--quiet] [--loader L]\n"
    "                    [--as NAME]\n";

enum class OutputFormat { kText, kJson, kSarif };

struct ScanOptions {
  OutputFormat format = OutputFormat::kText;
  std::string model;
  BatchOptions batch;
  std::string task;
  bool strict = false;
  bool quiet = false;
  std::vector<std::string> paths;
};

bool ParseOptions(const std::vector<std::string>& args, ScanOptions& options,
                  std::ostream& err) {
  options.batch.jobs = CpuJobs();
  for (size_t i = 0; i < args.size(); ++i) {
    const FlagResult batch_flag =
        ParseBatchFlag("scan", args, i, options.batch.jobs,
                       options.batch.trace, kUsage, err);
    if (batch_flag == FlagResult::kError) return false;
    if (batch_flag == FlagResult::kTaken) continue;
    const FlagResult loader_flag =
        ParseLoaderFlag("scan", args, i, options.batch.trace, kUsage, err);
    if (loader_flag == FlagResult::kError) return false;
    if (loader_flag == FlagResult::kTaken) continue;
    const std::string& arg = args[i];
    std::string v;
    auto value = [&]() {
      if (i + 1 >= args.size()) {
        err << "dynahug scan: " << arg << " needs a value\n" << kUsage;
        return false;
      }
      v = args[++i];
      return true;
    };
    if (arg == "--format") {
      if (!value()) return false;
      if (v == "text") {
        options.format = OutputFormat::kText;
      } else if (v == "json") {
        options.format = OutputFormat::kJson;
      } else if (v == "sarif") {
        options.format = OutputFormat::kSarif;
      } else {
        err << "dynahug scan: unknown format '" << v << "'\n" << kUsage;
        return false;
      }
    } else if (arg == "--model") {
      if (!value()) return false;
      options.model = v;
    } else if (arg == "--task") {
      if (!value()) return false;
      options.task = v;
    } else if (arg == "--strict") {
      options.strict = true;
    } else if (arg == "--quiet" || arg == "-q") {
      options.quiet = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      err << "dynahug scan: unknown option '" << arg << "'\n" << kUsage;
      return false;
    } else {
      options.paths.push_back(arg);
    }
  }
  if (options.paths.empty()) {
    err << kUsage;
    return false;
  }
  return true;
}

// Progress on stderr when it is a terminal: one rewritten line.
class Progress {
 public:
  Progress(bool enabled, size_t total) : enabled_(enabled), total_(total) {}
  void Update(size_t done, size_t malicious) {
    if (!enabled_ || total_ == 0) return;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total_);
    std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu files, %zu malicious", filled,
                 "==============================", kWidth - filled, "", done,
                 total_, malicious);
    std::fflush(stderr);
  }
  void Clear() {
    if (enabled_ && total_ > 0) std::fprintf(stderr, "\r\033[K");
  }

 private:
  bool enabled_;
  size_t total_;
};

// "feature: detail", or whichever of the two says it all.
std::string ReasonText(const proto::Reason& reason) {
  if (reason.detail().empty()) return reason.feature();
  if (reason.feature().empty() ||
      reason.detail().rfind(reason.feature(), 0) == 0 ||
      reason.detail().find(reason.feature()) != std::string::npos) {
    return reason.detail();
  }
  return absl::StrCat(reason.feature(), ": ", reason.detail());
}

std::string ResultName(const proto::ScanResult& r) {
  if (r.hub_repo().empty()) return r.path();
  HubRef ref{r.hub_kind(), r.hub_repo(), r.hub_revision(), r.hub_file()};
  return absl::StrCat(HubDisplay(ref), " (", r.path(), ")");
}

void PrintText(const proto::ScanReport& report, bool quiet, std::ostream& out) {
  for (const proto::ScanResult& r : report.results()) {
    const proto::Verdict& v = r.verdict();
    if (quiet && v.label() == proto::Verdict::BENIGN) continue;
    if (quiet && v.label() == proto::Verdict::SKIPPED) continue;
    char head[64];
    std::snprintf(head, sizeof head, "%-9s ", LabelName(v.label()));
    for (char* c = head; *c; ++c) *c = static_cast<char>(toupper(*c));
    out << head << ResultName(r);
    switch (v.label()) {
      case proto::Verdict::BENIGN:
      case proto::Verdict::MALICIOUS: {
        char score[96];
        std::snprintf(score, sizeof score, "  score %.3f %s %.3f", v.score(),
                      v.score() > v.threshold() ? ">" : "<=", v.threshold());
        out << score << "  [" << v.cluster() << "]";
        if (v.capabilities_size() > 0) {
          out << "  capabilities: " << absl::StrJoin(v.capabilities(), ", ");
        }
        break;
      }
      case proto::Verdict::SKIPPED:
        out << "  " << v.skip_reason();
        break;
      default:
        out << "  " << v.error();
    }
    out << "\n";
    if (v.label() == proto::Verdict::MALICIOUS) {
      int shown = 0;
      for (const proto::Reason& reason : v.reasons()) {
        if (++shown > 6) break;
        out << "    - " << ReasonText(reason) << "\n";
      }
    }
  }
  const proto::ScanSummary& s = report.summary();
  char line[256];
  std::snprintf(line, sizeof line,
                "%llu files: %llu malicious, %llu benign, %llu errors, %llu "
                "skipped (%.1f s, model %s)\n",
                static_cast<unsigned long long>(s.files()),
                static_cast<unsigned long long>(s.malicious()),
                static_cast<unsigned long long>(s.benign()),
                static_cast<unsigned long long>(s.errors()),
                static_cast<unsigned long long>(s.skipped()),
                s.elapsed_ms() / 1000.0, report.model_bundle().c_str());
  out << line;
}

void PrintJson(const proto::ScanReport& report, std::ostream& out) {
  JsonWriter w(2);
  w.BeginObject();
  w.Field("tool", "dynahug");
  w.Field("version", report.tool_version());
  w.Field("model", report.model_bundle());
  w.Key("results");
  w.BeginArray();
  for (const proto::ScanResult& r : report.results()) {
    const proto::Verdict& v = r.verdict();
    w.BeginObject();
    w.Field("path", r.path());
    if (!r.hub_repo().empty()) {
      w.Key("hub");
      w.BeginObject();
      w.Field("kind", r.hub_kind());
      w.Field("repo", r.hub_repo());
      w.Field("revision", r.hub_revision());
      w.Field("file", r.hub_file());
      w.EndObject();
    }
    w.Field("verdict", LabelName(v.label()));
    const bool scored = v.label() == proto::Verdict::BENIGN ||
                        v.label() == proto::Verdict::MALICIOUS ||
                        !v.cluster().empty();
    if (scored) {
      w.Field("score", v.score());
      w.Field("threshold", v.threshold());
      w.Field("ocsvm_score", v.ocsvm_score());
      w.Field("ocsvm_verdict",
              v.ocsvm_score() > v.threshold() ? "malicious" : "benign");
      w.Field("cluster", v.cluster());
    } else {
      w.Key("score");
      w.Null();
      w.Key("threshold");
      w.Null();
      w.Key("cluster");
      w.Null();
    }
    w.Field("format", r.format() == proto::FORMAT_UNSPECIFIED
                          ? std::string()
                          : proto::ContainerFormat_Name(r.format()));
    WriteCapabilitiesAndReasons(w, v);
    if (!v.error().empty()) w.Field("error", v.error());
    if (!v.skip_reason().empty()) w.Field("skip_reason", v.skip_reason());
    w.Field("elapsed_ms", r.elapsed_ms());
    if (!r.content_key().empty()) w.Field("content_key", r.content_key());
    w.EndObject();
    w.Flush(out);
  }
  w.EndArray();
  const proto::ScanSummary& s = report.summary();
  w.Key("summary");
  w.BeginObject();
  w.Field("files", s.files());
  w.Field("benign", s.benign());
  w.Field("malicious", s.malicious());
  w.Field("errors", s.errors());
  w.Field("skipped", s.skipped());
  w.Field("elapsed_ms", s.elapsed_ms());
  w.EndObject();
  w.EndObject();
  w.Flush(out);
  out << "\n";
}

// SARIF 2.1.0: one rule per kind of finding; a result for every malicious
// file (level error) and every inconclusive one (level warning).
void PrintSarif(const proto::ScanReport& report, std::ostream& out) {
  JsonWriter w(2);
  w.BeginObject();
  w.Field("$schema",
          "https://json.schemastore.org/sarif-2.1.0.json");
  w.Field("version", "2.1.0");
  w.Key("runs");
  w.BeginArray();
  w.BeginObject();
  w.Key("tool");
  w.BeginObject();
  w.Key("driver");
  w.BeginObject();
  w.Field("name", "dynahug");
  w.Field("version", report.tool_version());
  w.Field("informationUri", "https://github.com/dynahug/dynahug");
  w.Key("rules");
  w.BeginArray();
  struct Rule {
    const char* id;
    const char* name;
    const char* text;
  };
  for (const Rule& rule :
       {Rule{"DH001", "MaliciousModel",
             "Loading this model file behaves unlike benign models of its task "
             "(sandboxed load, one-class SVM) or shows a malicious capability."},
        Rule{"DH002", "InconclusiveAnalysis",
             "The model file could not be analysed; it is not known to be "
             "safe."}}) {
    w.BeginObject();
    w.Field("id", rule.id);
    w.Field("name", rule.name);
    w.Key("shortDescription");
    w.BeginObject();
    w.Field("text", rule.text);
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  w.EndObject();
  w.Key("results");
  w.BeginArray();
  for (const proto::ScanResult& r : report.results()) {
    const proto::Verdict& v = r.verdict();
    const bool malicious = v.label() == proto::Verdict::MALICIOUS;
    if (!malicious && v.label() != proto::Verdict::ERROR) continue;
    w.BeginObject();
    w.Field("ruleId", malicious ? "DH001" : "DH002");
    w.Field("level", malicious ? "error" : "warning");
    std::string text;
    if (malicious) {
      std::vector<std::string> details;
      for (const proto::Reason& reason : v.reasons()) {
        details.push_back(ReasonText(reason));
        if (details.size() == 6) break;
      }
      text = absl::StrCat("Malicious model file (score ", v.score(), " > ",
                          v.threshold(), ", cluster ", v.cluster(), "): ",
                          absl::StrJoin(details, "; "));
    } else {
      text = absl::StrCat("Analysis inconclusive: ", v.error());
    }
    w.Key("message");
    w.BeginObject();
    w.Field("text", text);
    w.EndObject();
    w.Key("locations");
    w.BeginArray();
    w.BeginObject();
    w.Key("physicalLocation");
    w.BeginObject();
    w.Key("artifactLocation");
    w.BeginObject();
    w.Field("uri", r.path());
    w.EndObject();
    w.EndObject();
    w.EndObject();
    w.EndArray();
    w.Key("properties");
    w.BeginObject();
    w.Field("score", v.score());
    w.Field("threshold", v.threshold());
    w.Key("capabilities");
    w.BeginArray();
    for (const std::string& c : v.capabilities()) w.String(c);
    w.EndArray();
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  w.EndArray();
  w.EndObject();
  w.Flush(out);
  out << "\n";
}

}  // namespace

int RunScan(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  ScanOptions options;
  if (!ParseOptions(args, options, err)) return kExitError;
  const std::string model_path =
      options.model.empty() ? DefaultModelPath() : options.model;
  absl::StatusOr<features::Detector> detector =
      features::Detector::Load(model_path);
  if (!detector.ok()) {
    err << "dynahug scan: model bundle: " << detector.status().message()
        << "\n";
    return kExitError;
  }

  const InputSet inputs = CollectScanInputs(options.paths);
  // One verdict per blob (a file reached by several paths is analysed once).
  std::vector<std::optional<proto::Verdict>> verdicts(inputs.blobs.size());
  std::vector<proto::ContainerFormat> formats(inputs.blobs.size(),
                                              proto::FORMAT_UNSPECIFIED);
  std::vector<double> elapsed(inputs.blobs.size(), 0);
  std::vector<std::string> content_keys(inputs.blobs.size());
  std::vector<std::string> to_trace;
  std::vector<size_t> traced_blob;
  for (size_t b = 0; b < inputs.blobs.size(); ++b) {
    if (std::optional<proto::Verdict> v =
            VerdictWithoutLoad(inputs.blobs[b], options.strict)) {
      verdicts[b] = std::move(*v);
    } else {
      to_trace.push_back(inputs.blobs[b]);
      traced_blob.push_back(b);
    }
  }

  // A hub blob is stored under its hash; a victim loads it under its
  // snapshot name, whose extension picks the extension loader (trace_runner.h
  // FileLoaders). A blob several names share gets the first one. --as wins.
  if (options.batch.trace.as_name.empty()) {
    std::vector<std::string> hub_names(inputs.blobs.size());
    for (const ScanInput& in : inputs.inputs) {
      if (in.blob && in.hub && hub_names[*in.blob].empty()) {
        hub_names[*in.blob] =
            std::filesystem::path(in.hub->file).filename().string();
      }
    }
    options.batch.as_names.clear();
    for (size_t b : traced_blob) options.batch.as_names.push_back(hub_names[b]);
  }

  Progress progress(isatty(STDERR_FILENO) && !options.quiet, to_trace.size());
  size_t done = 0, malicious = 0;
  features::ClassifyOptions classify;
  classify.task = options.task;
  absl::StatusOr<BatchOutcome> run = TraceBatch(
      to_trace, options.batch,
      [&](size_t i, absl::StatusOr<proto::Trace> trace) {
        const size_t b = traced_blob[i];
        if (!trace.ok()) {
          verdicts[b] = features::Detector::ErrorVerdict(
              std::string(trace.status().message()));
        } else {
          const auto t0 = std::chrono::steady_clock::now();
          verdicts[b] = detector->Classify(*trace, classify);
          formats[b] = trace->root().format();
          content_keys[b] = trace->file().content_key();
          elapsed[b] = trace->exit().wall_ms() +
                       std::chrono::duration<double, std::milli>(
                           std::chrono::steady_clock::now() - t0)
                           .count();
          if (verdicts[b]->label() == proto::Verdict::MALICIOUS) ++malicious;
        }
        progress.Update(++done, malicious);
      });
  progress.Clear();
  if (!run.ok()) {
    err << "dynahug scan: " << run.status().message() << "\n";
    return kExitError;
  }
  if (run->interrupted_by != 0) {
    err << "dynahug scan: interrupted by " << SignalName(run->interrupted_by)
        << ": stopped every worker and sandboxed load; " << run->reported
        << " of " << to_trace.size() << " files analysed, no report\n";
    return 128 + run->interrupted_by;
  }

  proto::ScanReport report;
  report.set_tool_version(kVersion);
  report.set_model_bundle(detector->id());
  proto::ScanSummary& summary = *report.mutable_summary();
  for (const ScanInput& in : inputs.inputs) {
    proto::ScanResult& r = *report.add_results();
    r.set_path(in.path);
    if (in.hub) {
      r.set_hub_kind(in.hub->kind);
      r.set_hub_repo(in.hub->repo);
      r.set_hub_revision(in.hub->revision);
      r.set_hub_file(in.hub->file);
    }
    if (!in.error.empty()) {
      *r.mutable_verdict() =
          features::Detector::ErrorVerdict(absl::StrCat(in.path, ": ", in.error));
    } else if (!in.blob) {
      *r.mutable_verdict() = SkippedVerdict(in.skip_reason);
    } else {
      *r.mutable_verdict() = verdicts[*in.blob].value_or(
          features::Detector::ErrorVerdict("not analysed"));
      r.set_format(formats[*in.blob]);
      r.set_elapsed_ms(elapsed[*in.blob]);
      r.set_content_key(content_keys[*in.blob]);
    }
    summary.set_files(summary.files() + 1);
    switch (r.verdict().label()) {
      case proto::Verdict::BENIGN:
        summary.set_benign(summary.benign() + 1);
        break;
      case proto::Verdict::MALICIOUS:
        summary.set_malicious(summary.malicious() + 1);
        break;
      case proto::Verdict::SKIPPED:
        summary.set_skipped(summary.skipped() + 1);
        break;
      default:
        summary.set_errors(summary.errors() + 1);
    }
  }
  summary.set_elapsed_ms(std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - start)
                             .count());
  switch (options.format) {
    case OutputFormat::kText:
      PrintText(report, options.quiet, out);
      break;
    case OutputFormat::kJson:
      PrintJson(report, out);
      break;
    case OutputFormat::kSarif:
      PrintSarif(report, out);
      break;
  }
  if (summary.malicious() > 0) return kExitMalicious;
  return summary.errors() > 0 ? kExitError : kExitOk;
}

}  // namespace dynahug::runtime

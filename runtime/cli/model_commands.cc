#include "runtime/cli/model_commands.h"


#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <map>
#include <ostream>
#include <utility>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "absl/strings/str_cat.h"
#include "features/detector.h"
#include "features/evaluation.h"
#include "features/model_bundle.h"
#include "features/trainer.h"
#include "runtime/cli/exit_codes.h"
#include "runtime/scanner/default_model.h"
#include "runtime/cli/json_writer.h"
#include "runtime/cli/scan_inputs.h"
#include "runtime/cli/trace_batch.h"
#include "runtime/container/inert_formats.h"

namespace dynahug::runtime {
namespace {

// A file to trace, with what the command knows about it from where it was
// found: `label` is the first directory below the argument it came from
// (the technique of a malicious file, the cluster of a benign one) or, for
// a file argument, its parent directory's name; `group` is its parent
// directory (files of one model folder form one group).
struct LabeledFile {
  std::string path;
  std::string label;
  std::string group;
};

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Files under `args` that may hold pickles (inert formats, errors and
// skipped entries are reported on `err` and left out).
std::vector<LabeledFile> CollectLabeled(const std::vector<std::string>& args,
                                        const char* command, std::ostream& err) {
  std::vector<LabeledFile> files;
  for (const std::string& arg : args) {
    InputSet set = CollectScanInputs({arg});
    std::vector<bool> used(set.blobs.size(), false);
    std::string root = arg;
    while (root.size() > 1 && root.back() == '/') root.pop_back();
    for (const ScanInput& in : set.inputs) {
      if (!in.error.empty()) {
        err << "dynahug " << command << ": " << in.path << ": " << in.error
            << " (left out)\n";
        continue;
      }
      if (!in.blob || used[*in.blob]) continue;
      used[*in.blob] = true;
      absl::StatusOr<InertCheck> check = CheckInertFile(set.blobs[*in.blob]);
      if (!check.ok() || check->kind != InertCheck::kAnalyse) continue;
      LabeledFile f;
      f.path = in.path;
      f.group = Parent(in.path);
      if (in.path.size() > root.size() + 1 && in.path.rfind(root + "/", 0) == 0) {
        const std::string rel = in.path.substr(root.size() + 1);
        const size_t slash = rel.find('/');
        f.label = slash == std::string::npos ? Basename(root) : rel.substr(0, slash);
      } else {
        f.label = Basename(Parent(in.path));
      }
      files.push_back(std::move(f));
    }
  }
  return files;
}

// Options both commands share; returns false (usage printed) on a bad one.
// Unknown options are left to the caller through `extra`.
bool ParseCommon(const std::string& command, const std::vector<std::string>& args,
                 BatchOptions& batch,
                 const std::function<int(size_t&)>& extra, const char* usage,
                 std::ostream& err) {
  batch.jobs = CpuJobs();
  for (size_t i = 0; i < args.size(); ++i) {
    const int taken = extra(i);
    if (taken < 0) return false;
    if (taken > 0) continue;
    const FlagResult batch_flag = ParseBatchFlag(
        command.c_str(), args, i, batch.jobs, batch.trace, usage, err);
    if (batch_flag == FlagResult::kError) return false;
    if (batch_flag == FlagResult::kTaken) continue;
    const std::string& arg = args[i];
    err << "dynahug " << command << ": unknown argument '" << arg << "'\n"
        << usage;
    return false;
  }
  return true;
}

// Collects the values after a list option (--benign A B C) up to the next
// option. Returns how many arguments were consumed.
int ListOption(const std::vector<std::string>& args, size_t& i,
               std::vector<std::string>& into) {
  size_t j = i + 1;
  while (j < args.size() && !(args[j].size() > 1 && args[j][0] == '-')) {
    into.push_back(args[j++]);
  }
  const int taken = static_cast<int>(j - i);
  i = j - 1;
  return taken;
}

// Benign and malicious files of a corpus manifest (tools/corpus/README.md:
// {"files": [{"path", "label", "cluster", "technique", "split", ...}]}),
// restricted to `splits`; labels come from the manifest, paths are relative
// to its folder.
absl::Status ReadManifest(const std::string& path,
                          const std::set<std::string>& splits,
                          std::vector<LabeledFile>& benign,
                          std::vector<LabeledFile>& malicious) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::Struct doc;
  if (!google::protobuf::util::JsonStringToMessage(text.str(), &doc).ok() ||
      !doc.fields().contains("files")) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a corpus manifest"));
  }
  const std::string dir = Parent(path);
  for (const auto& v : doc.fields().at("files").list_value().values()) {
    const auto& f = v.struct_value().fields();
    auto str = [&](const char* key) {
      auto it = f.find(key);
      return it == f.end() ? std::string() : it->second.string_value();
    };
    if (!splits.empty() && !splits.contains(str("split"))) continue;
    LabeledFile file{dir + "/" + str("path"), "", ""};
    file.group = Parent(file.path);
    if (str("label") == "malicious") {
      file.label = str("technique");
      malicious.push_back(std::move(file));
    } else {
      file.label = str("cluster");
      benign.push_back(std::move(file));
    }
  }
  return absl::OkStatus();
}

constexpr char kTrainUsage[] =
    "usage: dynahug train --benign PATH... --out FILE [--task LABEL]\n"
    "                     [--no-cluster] [--families LIST] [--target-fpr F]\n"
    "                     [--jobs N] [--timeout S] [--memory MIB]\n";

constexpr char kEvalUsage[] =
    "usage: dynahug eval (--benign PATH... --malicious PATH... |\n"
    "                     --manifest FILE [--split S[,S...]]) [--model FILE]\n"
    "                    [--format text|json] [--jobs N] [--timeout S]\n"
    "                    [--memory MIB]\n";

}  // namespace

int RunTrain(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err) {
  std::vector<std::string> benign;
  std::string out_path, task;
  features::TrainOptions train;
  BatchOptions batch;
  auto extra = [&](size_t& i) -> int {
    const std::string& arg = args[i];
    auto value = [&](std::string& v) -> int {
      if (i + 1 >= args.size()) {
        err << "dynahug train: " << arg << " needs a value\n" << kTrainUsage;
        return -1;
      }
      v = args[++i];
      return 1;
    };
    if (arg == "--benign") return ListOption(args, i, benign);
    if (arg == "--out") return value(out_path);
    if (arg == "--task") return value(task);
    if (arg == "--no-cluster") {
      train.cluster = false;
      return 1;
    }
    std::string v;
    if (arg == "--families") {
      if (value(v) < 0) return -1;
      absl::StatusOr<features::FamilySet> families = features::ParseFamilySet(v);
      if (!families.ok()) {
        err << "dynahug train: " << families.status().message() << "\n";
        return -1;
      }
      train.families = *families;
      return 1;
    }
    if (arg == "--target-fpr") {
      double fpr = 0;
      if (value(v) < 0) return -1;
      if (!absl::SimpleAtod(v, &fpr) || !(fpr > 0 && fpr < 1)) {
        err << "dynahug train: --target-fpr needs a number in (0, 1)\n";
        return -1;
      }
      train.calibration.target_fpr = fpr;
      return 1;
    }
    return 0;
  };
  if (!ParseCommon("train", args, batch, extra, kTrainUsage, err)) return kExitError;
  if (benign.empty() || out_path.empty()) {
    err << kTrainUsage;
    return kExitError;
  }
  const std::vector<LabeledFile> files = CollectLabeled(benign, "train", err);
  std::vector<std::string> paths;
  for (const LabeledFile& f : files) paths.push_back(f.path);
  features::Trainer trainer(train);
  size_t left_out = 0;
  absl::StatusOr<BatchOutcome> run = TraceBatch(
      paths, batch, [&](size_t i, absl::StatusOr<proto::Trace> trace) {
        absl::Status added =
            trace.ok() ? trainer.Add(*trace, files[i].path, files[i].group, task)
                       : trace.status();
        if (!added.ok()) {
          ++left_out;
          err << "dynahug train: " << files[i].path << ": " << added.message()
              << " (left out)\n";
        }
      });
  if (!run.ok()) {
    err << "dynahug train: " << run.status().message() << "\n";
    return kExitError;
  }
  if (run->interrupted_by != 0) {
    err << "dynahug train: interrupted by " << SignalName(run->interrupted_by)
        << "; no bundle written\n";
    return 128 + run->interrupted_by;
  }
  absl::StatusOr<proto::ModelBundle> bundle = trainer.Train();
  if (!bundle.ok()) {
    err << "dynahug train: " << bundle.status().message() << "\n";
    return kExitError;
  }
  if (absl::Status s = features::WriteModelBundle(*bundle, out_path); !s.ok()) {
    err << "dynahug train: " << s.message() << "\n";
    return kExitError;
  }
  out << "dynahug train: " << trainer.size() << " benign files ("
      << left_out << " left out), " << bundle->clusters_size()
      << " clusters, written to " << out_path << "\n";
  return kExitOk;
}

int RunEval(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  std::vector<std::string> benign, malicious;
  std::string model, format = "text", manifest, split;
  BatchOptions batch;
  auto extra = [&](size_t& i) -> int {
    const std::string& arg = args[i];
    if (arg == "--benign") return ListOption(args, i, benign);
    if (arg == "--malicious") return ListOption(args, i, malicious);
    if (arg == "--manifest" || arg == "--split") {
      if (i + 1 >= args.size()) {
        err << "dynahug eval: " << arg << " needs a value\n" << kEvalUsage;
        return -1;
      }
      (arg == "--manifest" ? manifest : split) = args[++i];
      return 1;
    }
    if (arg == "--model" || arg == "--format") {
      if (i + 1 >= args.size()) {
        err << "dynahug eval: " << arg << " needs a value\n" << kEvalUsage;
        return -1;
      }
      (arg == "--model" ? model : format) = args[++i];
      if (format != "text" && format != "json") {
        err << "dynahug eval: unknown format '" << format << "'\n";
        return -1;
      }
      return 1;
    }
    return 0;
  };
  if (!ParseCommon("eval", args, batch, extra, kEvalUsage, err)) return kExitError;
  if (manifest.empty() == (benign.empty() || malicious.empty())) {
    err << kEvalUsage;
    return kExitError;
  }
  if (model.empty()) model = DefaultModelPath();
  absl::StatusOr<features::Detector> detector = features::Detector::Load(model);
  if (!detector.ok()) {
    err << "dynahug eval: model bundle: " << detector.status().message() << "\n";
    return kExitError;
  }
  std::vector<LabeledFile> files, bad;
  if (!manifest.empty()) {
    std::set<std::string> splits;
    for (const std::string& s :
         std::vector<std::string>(absl::StrSplit(split, ',', absl::SkipEmpty()))) {
      splits.insert(s);
    }
    if (absl::Status s = ReadManifest(manifest, splits, files, bad); !s.ok()) {
      err << "dynahug eval: " << s.message() << "\n";
      return kExitError;
    }
  } else {
    files = CollectLabeled(benign, "eval", err);
    bad = CollectLabeled(malicious, "eval", err);
  }
  const size_t benign_count = files.size();
  for (LabeledFile& f : bad) files.push_back(std::move(f));
  std::vector<std::string> paths;
  for (const LabeledFile& f : files) paths.push_back(f.path);
  std::vector<features::EvalRecord> records(files.size());
  absl::StatusOr<BatchOutcome> run = TraceBatch(
      paths, batch, [&](size_t i, absl::StatusOr<proto::Trace> trace) {
        features::EvalRecord& r = records[i];
        r.malicious = i >= benign_count;
        r.technique = r.malicious ? files[i].label : "";
        r.cluster = r.malicious ? "" : files[i].label;
        r.verdict = trace.ok() ? detector->Classify(*trace)
                               : features::Detector::ErrorVerdict(
                                     std::string(trace.status().message()));
      });
  if (!run.ok()) {
    err << "dynahug eval: " << run.status().message() << "\n";
    return kExitError;
  }
  if (run->interrupted_by != 0) {
    err << "dynahug eval: interrupted by " << SignalName(run->interrupted_by)
        << "\n";
    return 128 + run->interrupted_by;
  }
  const features::EvalReport report = features::Evaluate(records);
  if (format == "text") {
    out << "model " << detector->id() << ": " << benign_count << " benign, "
        << files.size() - benign_count << " malicious files\n"
        << features::FormatEvalReport(report);
    return kExitOk;
  }
  JsonWriter w(2);
  auto metrics = [&](const features::Metrics& m) {
    w.BeginObject();
    w.Field("positives", m.positives);
    w.Field("negatives", m.negatives);
    w.Field("tp", m.tp);
    w.Field("fp", m.fp);
    w.Field("tn", m.tn);
    w.Field("fn", m.fn);
    w.Field("errors", m.errors);
    w.Field("precision", m.precision);
    w.Field("recall", m.recall);
    w.Field("f1", m.f1);
    w.Field("fpr", m.fpr);
    w.Field("roc_auc", m.roc_auc);
    w.EndObject();
  };
  w.BeginObject();
  w.Field("model", detector->id());
  w.Key("overall");
  metrics(report.overall);
  w.Key("ocsvm_alone");
  metrics(report.ocsvm_alone);
  for (const auto& [key, table] :
       {std::pair<const char*, const std::map<std::string, features::Metrics>*>{
            "per_technique", &report.per_technique},
        {"per_cluster", &report.per_cluster},
        {"per_routed_cluster", &report.per_routed_cluster}}) {
    w.Key(key);
    w.BeginObject();
    for (const auto& [name, m] : *table) {
      w.Key(name);
      metrics(m);
    }
    w.EndObject();
  }
  w.Key("misclassified");
  w.BeginArray();
  for (size_t i = 0; i < records.size(); ++i) {
    const bool flagged = records[i].verdict.label() != proto::Verdict::BENIGN;
    if (flagged == records[i].malicious) continue;
    w.BeginObject();
    w.Field("path", files[i].path);
    w.Field("truth", records[i].malicious ? "malicious" : "benign");
    w.Field("score", records[i].verdict.score());
    w.Field("threshold", records[i].verdict.threshold());
    w.Field("cluster", records[i].verdict.cluster());
    w.Field("error", records[i].verdict.error());
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  w.Flush(out);
  out << "\n";
  return kExitOk;
}

}  // namespace dynahug::runtime

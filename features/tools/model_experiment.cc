// model_experiment: trains and evaluates dynahug's detector on a labelled
// corpus (tools/corpus/generate.py output) and its traces (`dynahug trace
// --format json` documents), for designing and checking features/. Not part
// of the library; features/README.md lists the commands whose numbers it
// quotes.
//
//   model_experiment --corpus DIR --traces DIR [options] COMMAND
//
// Traces: every *.json under --traces is read (one {"traces": [...]}
// document per file, or one document for many files); each trace is matched
// to the manifest entry whose path is a suffix of Trace.file.path.
// --cache FILE stores the parsed traces (length-delimited protos) and is
// read instead on later runs.
//
// Commands:
//   eval       train on benign files of --train-splits (default train,val),
//              evaluate benign and malicious files of --test-splits
//              (default test); --ablations runs StandardAblations.
//   lfo        leave-family-out on the training splits only: benign
//              families (group name without its trailing -vN / -N) are cut
//              into --lfo-folds folds by a hash of their name; each fold is
//              held out of training and scored; malicious files of
//              --test-splits are scored by the first fold's model (use val
//              while tuning). Reports FPR on new families and recall.
//   caps       capability firings on benign files of --train-splits and
//              malicious files of --test-splits (the rules' negative
//              control), listing every benign firing.
//
// Options: --families SPEC, --global, --crossfit-by-family,
// --family-distance X, --novelty-weight X, --target-fpr X,
// --merge-distance X, --group-by-family (pass the name-derived family as
// the training group), --exclude-test-families (drop training files whose
// family has test-split benign files: every benign test file is then of a
// family the bundle never saw), --out FILE (bundle of `eval`), --misses N
// (print N missed malicious files and N false positives with reasons),
// --dump FILE (per-file TSV of scores and raw novelty; DH_DEBUG=1 also
// prints nearest-support-vector distances), --note TEXT.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "features/capabilities.h"
#include "features/detector.h"
#include "features/evaluation.h"
#include "features/feature_extractor.h"
#include "features/internal/model_input.h"
#include "features/model_bundle.h"
#include "features/novelty.h"
#include "features/trainer.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "google/protobuf/util/json_util.h"

namespace dh = dynahug::features;
namespace pb = google::protobuf;
namespace fs = std::filesystem;

namespace {

struct Entry {
  std::string path, label, cluster, technique, group, split, family;
  std::vector<std::string> effects;  // manifest effects (malicious files)
  const dynahug::proto::Trace* trace = nullptr;
};

[[noreturn]] void Die(const std::string& msg) {
  std::cerr << "model_experiment: " << msg << "\n";
  std::exit(2);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Str(const pb::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

// Group name without a trailing "-v<digits>" or "-<digits>".
std::string FamilyOf(const std::string& group) {
  static const std::regex tail("-(v)?[0-9]+$");
  return std::regex_replace(group, tail, "");
}

std::vector<Entry> LoadManifest(const std::string& corpus) {
  pb::Struct doc;
  auto st =
      pb::util::JsonStringToMessage(ReadFile(corpus + "/manifest.json"), &doc);
  if (!st.ok()) Die("manifest: " + st.ToString());
  std::vector<Entry> out;
  for (const pb::Value& v : doc.fields().at("files").list_value().values()) {
    const pb::Struct& f = v.struct_value();
    Entry e{Str(f, "path"),
            Str(f, "label"),
            Str(f, "cluster"),
            Str(f, "technique"),
            Str(f, "group"),
            Str(f, "split"),
            "",
            {}};
    e.family =
        e.label == "benign" ? FamilyOf(e.group) : "malicious/" + e.technique;
    if (auto it = f.fields().find("effects"); it != f.fields().end()) {
      for (const pb::Value& x : it->second.list_value().values()) {
        e.effects.push_back(x.string_value());
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

void ParseDocument(const std::string& json, const std::string& name,
                   std::vector<dynahug::proto::Trace>* out) {
  pb::Struct doc;
  auto st = pb::util::JsonStringToMessage(json, &doc);
  if (!st.ok()) {
    std::cerr << "skipping " << name << ": " << st.ToString() << "\n";
    return;
  }
  auto it = doc.fields().find("traces");
  if (it == doc.fields().end()) return;
  pb::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  for (const pb::Value& v : it->second.list_value().values()) {
    std::string one;
    (void)pb::util::MessageToJsonString(v, &one);
    dynahug::proto::Trace t;
    if (pb::util::JsonStringToMessage(one, &t, opts).ok()) {
      out->push_back(std::move(t));
    }
  }
}

std::vector<dynahug::proto::Trace> LoadTraces(const std::string& dir,
                                              const std::string& cache) {
  std::vector<dynahug::proto::Trace> out;
  if (!cache.empty() && fs::exists(cache)) {
    std::ifstream in(cache, std::ios::binary);
    pb::io::IstreamInputStream raw(&in);
    while (true) {
      dynahug::proto::Trace t;
      bool clean_eof = false;
      if (!pb::util::ParseDelimitedFromZeroCopyStream(&t, &raw, &clean_eof)) {
        break;
      }
      out.push_back(std::move(t));
    }
    std::cerr << "read " << out.size() << " traces from " << cache << "\n";
    return out;
  }
  std::vector<std::string> files;
  for (const auto& p : fs::recursive_directory_iterator(dir)) {
    if (p.is_regular_file() && p.path().extension() == ".json") {
      files.push_back(p.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  // A file may hold several documents back to back (batched `dynahug
  // trace` runs appended to one file): split at top-level objects.
  for (const std::string& f : files) {
    const std::string text = ReadFile(f);
    int depth = 0;
    bool in_string = false, escaped = false;
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      const char ch = text[i];
      if (in_string) {
        if (escaped)
          escaped = false;
        else if (ch == '\\')
          escaped = true;
        else if (ch == '"')
          in_string = false;
        continue;
      }
      if (ch == '"')
        in_string = true;
      else if (ch == '{') {
        if (depth++ == 0) start = i;
      } else if (ch == '}' && --depth == 0) {
        ParseDocument(text.substr(start, i + 1 - start), f, &out);
      }
    }
  }
  std::cerr << "parsed " << out.size() << " traces from " << files.size()
            << " documents\n";
  if (!cache.empty()) {
    std::ofstream o(cache, std::ios::binary);
    pb::io::OstreamOutputStream raw(&o);
    for (const auto& t : out)
      pb::util::SerializeDelimitedToZeroCopyStream(t, &raw);
  }
  return out;
}

void Attach(std::vector<Entry>& entries,
            const std::vector<dynahug::proto::Trace>& traces) {
  std::map<std::string, Entry*> by_path;
  for (Entry& e : entries) by_path[e.path] = &e;
  for (const auto& t : traces) {
    std::string p = t.file().path();
    // Longest manifest path that is a suffix at a '/' boundary.
    for (size_t pos = 0; pos != std::string::npos;) {
      auto it = by_path.find(p.substr(pos));
      if (it != by_path.end()) {
        it->second->trace = &t;
        break;
      }
      pos = p.find('/', pos);
      if (pos != std::string::npos) ++pos;
    }
  }
  size_t missing = 0;
  for (const Entry& e : entries) missing += e.trace == nullptr;
  if (missing > 0) std::cerr << missing << " manifest files have no trace\n";
}

std::set<std::string> SplitSet(const std::string& s) {
  std::set<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) out.insert(part);
  return out;
}

struct Flags {
  std::string corpus, traces, cache, command, out, note;
  std::set<std::string> train_splits{"train", "val"}, test_splits{"test"};
  bool ablations = false, exclude_test_families = false;
  bool group_by_family = false;
  int lfo_folds = 5, misses = 0;
  std::string dump;
  dh::TrainOptions options;
};

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
      .count();
}

bool g_group_by_family = false;

dh::Detector TrainOn(const std::vector<const Entry*>& train,
                     const dh::TrainOptions& options, const std::string& out) {
  const auto t0 = std::chrono::steady_clock::now();
  dh::Trainer trainer(options);
  for (const Entry* e : train) {
    const std::string& group = g_group_by_family ? e->family : e->group;
    if (absl::Status s = trainer.Add(*e->trace, e->path, group); !s.ok()) {
      std::cerr << "  skip: " << s << "\n";
    }
  }
  absl::StatusOr<dynahug::proto::ModelBundle> b = trainer.Train();
  if (!b.ok()) Die(b.status().ToString());
  std::cerr << "  trained on " << trainer.size() << " files in " << Seconds(t0)
            << " s, " << b->clusters_size() << " clusters, "
            << dh::SerializeModelBundle(*b).size() << " bytes\n";
  for (const auto& c : b->clusters()) {
    std::cerr << "    " << c.name() << ": " << c.train_examples() << " files, "
              << c.train_groups() << " groups, vocab " << c.vocabulary_size()
              << ", nu " << c.svm().nu() << ", gamma " << c.svm().gamma()
              << ", SVs " << c.svm().coef_size() << ", threshold "
              << c.threshold() << ", cv_fpr " << c.calibration().cv_fpr()
              << ", injected " << c.calibration().cv_injected_recall()
              << ", units " << c.calibration().crossfit_units() << "\n";
  }
  if (!out.empty()) {
    if (absl::Status s = dh::WriteModelBundle(*b, out); !s.ok()) {
      Die(s.ToString());
    }
  }
  absl::StatusOr<dh::Detector> d = dh::Detector::FromBundle(*std::move(b));
  if (!d.ok()) Die(d.status().ToString());
  // Where the training files route, by manifest cluster.
  std::map<std::string, std::map<std::string, int>> routes;
  for (const Entry* e : train) {
    routes[d->Classify(*e->trace).cluster()][e->cluster]++;
  }
  for (const auto& [c, m] : routes) {
    std::cerr << "    route " << c << ":";
    for (const auto& [mc, n] : m) std::cerr << " " << mc << "=" << n;
    std::cerr << "\n";
  }
  return *std::move(d);
}

std::vector<dh::EvalRecord> Score(const dh::Detector& d,
                                  const std::vector<const Entry*>& files) {
  std::vector<dh::EvalRecord> out;
  for (const Entry* e : files) {
    dh::EvalRecord r;
    r.malicious = e->label == "malicious";
    r.technique = e->technique;
    r.cluster = r.malicious ? "malicious" : e->cluster;
    r.verdict = d.Classify(*e->trace);
    out.push_back(std::move(r));
  }
  return out;
}

void PrintMisses(const std::vector<dh::EvalRecord>& records,
                 const std::vector<const Entry*>& files, int n) {
  int fn = 0, fp = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const bool flagged = r.verdict.label() != dynahug::proto::Verdict::BENIGN;
    if (r.malicious == flagged) continue;
    int& count = r.malicious ? fn : fp;
    if (count++ >= n) continue;
    std::cout << (r.malicious ? "MISS " : "FP   ") << files[i]->path << "  "
              << dynahug::proto::Verdict::Label_Name(r.verdict.label())
              << " ocsvm " << r.verdict.ocsvm_score() << " thr "
              << r.verdict.threshold() << " cluster " << r.verdict.cluster()
              << (r.verdict.error().empty() ? ""
                                            : " error " + r.verdict.error())
              << "\n";
    for (const auto& reason : r.verdict.reasons()) {
      std::cout << "      " << reason.feature() << " (" << reason.weight()
                << "): " << reason.detail().substr(0, 200) << "\n";
    }
  }
  std::cout << "misses " << fn << ", false positives " << fp << "\n";
}

// One TSV line per file: path, label, technique, cluster, routed cluster,
// ocsvm score, threshold, then the raw novelty mass and count per group.
void Dump(const std::string& path, const dh::Detector& d,
          const std::vector<const Entry*>& files,
          const std::vector<dh::EvalRecord>& records) {
  std::ofstream out(path);
  out << "path\tlabel\ttechnique\tcluster\trouted\tocsvm\tthreshold";
  for (int g = 0; g < dh::kNoveltyGroupCount; ++g) {
    out << "\tm_" << dh::NoveltyGroupName(g) << "\tc_"
        << dh::NoveltyGroupName(g);
  }
  out << "\n";
  dh::FeatureExtractor ex;
  const auto& b = d.bundle();
  const dh::FamilySet fams = dh::FamilySet::FromBits(b.extraction().families());
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& v = records[i].verdict;
    const dynahug::proto::TaskCluster* c = nullptr;
    for (const auto& tc : b.clusters())
      if (tc.name() == v.cluster()) c = &tc;
    dh::GroupedVector g = dh::ToGrouped(ex.Extract(*files[i]->trace)), sel;
    for (size_t k = 0; k < g.size(); ++k) {
      if (!fams.Contains(dh::FamilyOfIndex(g.index[k]))) continue;
      sel.index.push_back(g.index[k]);
      sel.value.push_back(g.value[k]);
      sel.group.push_back(g.group[k]);
    }
    auto known = [&](uint32_t idx) {
      return c != nullptr && std::binary_search(c->vocabulary().begin(),
                                                c->vocabulary().end(), idx);
    };
    const auto raw = dh::internal::SplitKnown(sel, known);
    if (getenv("DH_DEBUG") != nullptr && c != nullptr) {
      dh::InputVector in = dh::internal::ScaleInput(
          raw, {c->vocabulary().data(), c->scale().data(),
                static_cast<size_t>(c->scale_size()), c->novelty_scale().data(),
                c->novelty_reference().data(), c->novelty_reference_width()});
      const auto& svm = c->svm();
      double best = 1e300, best_nov = 0;
      for (int k = 0; k < svm.coef_size(); ++k) {
        dh::InputVector sv;
        for (uint32_t j = svm.sv_start(k); j < svm.sv_start(k + 1); ++j)
          sv.push_back({svm.index(j), svm.value(j)});
        double d = dh::SquaredDistance(in, sv);
        dh::InputVector a, b2;
        for (auto& e : in)
          if (e.index >= dh::kNoveltyIndexBase) a.push_back(e);
        for (auto& e : sv)
          if (e.index >= dh::kNoveltyIndexBase) b2.push_back(e);
        if (d < best) {
          best = d;
          best_nov = dh::SquaredDistance(a, b2);
        }
      }
      std::cerr << files[i]->label << " " << files[i]->path << " score "
                << v.ocsvm_score() << " thr " << v.threshold() << " gamma "
                << svm.gamma() << " dmin " << best << " (novelty " << best_nov
                << ")";
      for (auto& e : in)
        if (e.index >= dh::kNoveltyIndexBase)
          std::cerr << " "
                    << dh::NoveltyFeatureName(e.index - dh::kNoveltyIndexBase)
                    << "=" << e.value;
      std::cerr << "\n";
    }
    out << files[i]->path << "\t" << files[i]->label << "\t"
        << files[i]->technique << "\t" << files[i]->cluster << "\t"
        << v.cluster() << "\t" << v.ocsvm_score() << "\t" << v.threshold();
    for (int k = 0; k < dh::kNoveltyGroupCount; ++k) {
      out << "\t" << raw.novelty.mass[k] << "\t" << raw.novelty.count[k];
    }
    out << "\n";
  }
}

void RunEval(const Flags& f, const std::vector<Entry>& entries) {
  std::set<std::string> test_families;
  for (const Entry& e : entries) {
    if (e.label == "benign" && f.test_splits.count(e.split)) {
      test_families.insert(e.family);
    }
  }
  std::vector<const Entry*> train, test;
  for (const Entry& e : entries) {
    if (e.trace == nullptr) continue;
    if (e.label == "benign" && f.train_splits.count(e.split)) {
      if (f.exclude_test_families && test_families.count(e.family)) continue;
      train.push_back(&e);
    } else if (f.test_splits.count(e.split)) {
      test.push_back(&e);
    }
  }
  std::cerr << "train " << train.size() << " benign, test " << test.size()
            << " files\n";
  std::vector<dh::Ablation> runs = {{"full", f.options}};
  if (f.ablations) runs = dh::StandardAblations(f.options);
  std::string table =
      "| configuration | files | recall | FPR | precision | F1 | ROC-AUC | "
      "errors |\n|---|---|---|---|---|---|---|---|\n";
  for (const dh::Ablation& a : runs) {
    std::cerr << a.name << ":\n";
    dh::Detector d = TrainOn(train, a.options, runs.size() == 1 ? f.out : "");
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<dh::EvalRecord> records = Score(d, test);
    if (!f.dump.empty() && runs.size() == 1) Dump(f.dump, d, test, records);
    std::cerr << "  classified " << records.size() << " in " << Seconds(t0)
              << " s\n";
    dh::EvalReport report = dh::Evaluate(records);
    table += dh::MetricsRow(a.name + ", OCSVM + capabilities", report.overall);
    table += dh::MetricsRow(a.name + ", OCSVM alone", report.ocsvm_alone);
    if (runs.size() == 1 || a.name == "full") {
      std::cout << "== " << a.name << "\n" << dh::FormatEvalReport(report);
      if (f.misses > 0) PrintMisses(records, test, f.misses);
    }
  }
  std::cout << "\n== summary\n" << table;
}

void RunLfo(const Flags& f, const std::vector<Entry>& entries) {
  std::vector<std::string> families;
  for (const Entry& e : entries) {
    if (e.label == "benign" && f.train_splits.count(e.split)) {
      families.push_back(e.family);
    }
  }
  std::sort(families.begin(), families.end());
  families.erase(std::unique(families.begin(), families.end()), families.end());
  // Families spread over folds by a stable hash, so each fold mixes clusters.
  auto fold_of = [&](const std::string& fam) {
    return static_cast<int>(dh::Sha256Hex(fam)[0] % f.lfo_folds);
  };
  std::vector<dh::EvalRecord> all;
  std::vector<const Entry*> all_files;
  for (int k = 0; k < f.lfo_folds; ++k) {
    std::vector<const Entry*> train, test;
    for (const Entry& e : entries) {
      if (e.trace == nullptr) continue;
      if (e.label == "benign" && f.train_splits.count(e.split)) {
        (fold_of(e.family) == k ? test : train).push_back(&e);
      } else if (e.label == "malicious" && f.test_splits.count(e.split) &&
                 k == 0) {
        test.push_back(&e);  // malicious scored once, by fold 0's model
      }
    }
    std::cerr << "fold " << k << ": train " << train.size() << ", test "
              << test.size() << "\n";
    dh::Detector d = TrainOn(train, f.options, "");
    std::vector<dh::EvalRecord> records = Score(d, test);
    if (!f.dump.empty()) {
      Dump(f.dump + "." + std::to_string(k), d, test, records);
    }
    all.insert(all.end(), records.begin(), records.end());
    all_files.insert(all_files.end(), test.begin(), test.end());
  }
  dh::EvalReport report = dh::Evaluate(all);
  std::cout << "== leave-family-out (" << f.lfo_folds << " folds)\n"
            << dh::FormatEvalReport(report);
  if (f.misses > 0) PrintMisses(all, all_files, f.misses);
}

// Capability firings on the files of --test-splits (and the training
// splits for benign files): the negative control of the capability rules.
void RunCaps(const Flags& f, const std::vector<Entry>& entries) {
  std::map<std::string, std::map<std::string, int>> fired;  // label -> cap
  std::map<std::string, int> files;
  for (const Entry& e : entries) {
    if (e.trace == nullptr) continue;
    const bool use = e.label == "benign" ? f.train_splits.count(e.split) > 0
                                         : f.test_splits.count(e.split) > 0;
    if (!use) continue;
    ++files[e.label];
    const auto found = dh::FindCapabilities(*e.trace);
    if (found.empty()) fired[e.label]["(none)"]++;
    for (const auto& c : found) {
      fired[e.label][std::string(dh::CapabilityName(c.capability))]++;
      if (e.label == "benign") {
        std::cout << "benign firing: " << e.path << ": "
                  << dh::CapabilityName(c.capability) << ": " << c.evidence
                  << "\n";
      }
    }
  }
  // Manifest effects of malicious files against their capabilities (the
  // integration test's evidence mapping).
  static const std::map<std::string, std::string> kEffect = {
      {"exec", "process"},
      {"connect", "network"},
      {"file-write", "write-outside-scratch"},
      {"tamper", "namespace-tamper"},
      {"delayed", "deferred"},
      {"import", "dynamic-import"},
      {"nested-load", "nested-load"}};
  int effects = 0, proven = 0;
  for (const Entry& e : entries) {
    if (e.trace == nullptr || e.label != "malicious" ||
        !f.test_splits.count(e.split)) {
      continue;
    }
    std::set<std::string> caps;
    for (const auto& c : dh::FindCapabilities(*e.trace)) {
      caps.insert(std::string(dh::CapabilityName(c.capability)));
    }
    for (const std::string& eff : e.effects) {
      auto it = kEffect.find(eff);
      if (it == kEffect.end()) continue;
      ++effects;
      if (caps.count(it->second)) {
        ++proven;
      } else {
        std::cout << "effect not proven: " << e.path << ": " << eff << "\n";
      }
    }
  }
  std::cout << "manifest effects proven: " << proven << " of " << effects
            << "\n";
  for (const auto& [label, m] : fired) {
    std::cout << label << " (" << files[label] << " files):";
    for (const auto& [cap, n] : m) std::cout << " " << cap << "=" << n;
    std::cout << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--corpus")
      f.corpus = next();
    else if (a == "--traces")
      f.traces = next();
    else if (a == "--cache")
      f.cache = next();
    else if (a == "--train-splits")
      f.train_splits = SplitSet(next());
    else if (a == "--test-splits")
      f.test_splits = SplitSet(next());
    else if (a == "--ablations")
      f.ablations = true;
    else if (a == "--group-by-family")
      g_group_by_family = true;
    else if (a == "--exclude-test-families")
      f.exclude_test_families = true;
    else if (a == "--lfo-folds")
      f.lfo_folds = std::stoi(next());
    else if (a == "--misses")
      f.misses = std::stoi(next());
    else if (a == "--out")
      f.out = next();
    else if (a == "--dump")
      f.dump = next();
    else if (a == "--note")
      f.options.note = next();
    else if (a == "--global")
      f.options.cluster = false;
    else if (a == "--crossfit-by-family")
      f.options.cross_fitting = dh::CrossFitting::kFamily;
    else if (a == "--family-distance")
      f.options.family_distance = std::stod(next());
    else if (a == "--novelty-weight")
      f.options.novelty_weight = std::stod(next());
    else if (a == "--target-fpr")
      f.options.calibration.target_fpr = std::stod(next());
    else if (a == "--merge-distance")
      f.options.clustering.merge_distance = std::stod(next());
    else if (a == "--families") {
      auto s = dh::ParseFamilySet(next());
      if (!s.ok()) Die(s.status().ToString());
      f.options.families = *s;
    } else if (a == "eval" || a == "lfo" || a == "caps")
      f.command = a;
    else
      Die("unknown argument " + a);
  }
  if (f.corpus.empty() || (f.traces.empty() && f.cache.empty()) ||
      f.command.empty()) {
    Die("usage: model_experiment --corpus DIR --traces DIR [--cache FILE] "
        "[options] eval|lfo");
  }
  std::vector<Entry> entries = LoadManifest(f.corpus);
  const std::vector<dynahug::proto::Trace> traces =
      LoadTraces(f.traces, f.cache);
  Attach(entries, traces);
  if (f.command == "eval") RunEval(f, entries);
  if (f.command == "lfo") RunLfo(f, entries);
  if (f.command == "caps") RunCaps(f, entries);
  return 0;
}

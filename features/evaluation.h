// Evaluation of verdicts against ground truth: precision, recall, F1, FPR
// and ROC-AUC, overall, per technique and per cluster, for the final
// verdict and for the OCSVM alone; and the standard ablations as training
// options.
//
//   std::vector<EvalRecord> records;
//   for (each labelled file) records.push_back({.malicious = ...,
//       .technique = ..., .cluster = ..., .verdict = d.Classify(trace)});
//   EvalReport r = Evaluate(records);
//   std::cout << FormatEvalReport(r);
//
// Counting: a file is *flagged* when its verdict is not BENIGN (MALICIOUS
// or ERROR: an inconclusive result is never clean, and `dynahug scan`
// exits non-zero for both). Errors are also counted on their own. The
// OCSVM-alone view flags ocsvm_score > threshold (errors keep their
// label). ROC-AUC ranks by Verdict.score (final) or ocsvm_score, ties
// counted half (Mann-Whitney); it is NaN when one class is absent.
//
// Thread safety: pure functions.
#ifndef DYNAHUG_FEATURES_EVALUATION_H_
#define DYNAHUG_FEATURES_EVALUATION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "features/trainer.h"
#include "proto/dynahug.pb.h"

namespace dynahug::features {

struct EvalRecord {
  bool malicious = false;  // ground truth
  // Malicious technique ("" for benign files).
  std::string technique;
  // Ground-truth cluster of the file (e.g. the corpus manifest's cluster;
  // "" when unknown). Per-cluster metrics also use verdict.cluster (the
  // routed cluster).
  std::string cluster;
  proto::Verdict verdict;
};

struct Metrics {
  uint64_t positives = 0;  // malicious files
  uint64_t negatives = 0;  // benign files
  uint64_t tp = 0, fp = 0, tn = 0, fn = 0;
  uint64_t errors = 0;   // ERROR verdicts (counted as flagged too)
  double precision = 0;  // NaN when nothing was flagged
  double recall = 0;     // NaN without positives
  double f1 = 0;
  double fpr = 0;      // NaN without negatives
  double roc_auc = 0;  // NaN when a class is absent
};

// Metrics of `records` (all of them) for the final verdict
// (`ocsvm_alone` false) or the OCSVM alone.
Metrics ComputeMetrics(const std::vector<const EvalRecord*>& records,
                       bool ocsvm_alone);

// Area under the ROC curve of `scores` (higher = more malicious) for
// `labels` (true = malicious); NaN when a class is absent.
double RocAuc(const std::vector<double>& scores,
              const std::vector<bool>& labels);

struct EvalReport {
  Metrics overall;
  Metrics ocsvm_alone;
  // Keys sorted; per technique: that technique's malicious files with all
  // benign files (so FPR is the overall one and ROC-AUC is per technique).
  std::map<std::string, Metrics> per_technique;
  // Per ground-truth cluster (EvalRecord.cluster) and per routed cluster
  // (Verdict.cluster): the files of that cluster only.
  std::map<std::string, Metrics> per_cluster;
  std::map<std::string, Metrics> per_routed_cluster;
};

EvalReport Evaluate(const std::vector<EvalRecord>& records);

// A text report for people: an overall table (final and OCSVM alone),
// then per technique and per cluster tables.
std::string FormatEvalReport(const EvalReport& report);

// One line of a markdown table: "| name | recall | FPR | precision | F1 |
// ROC-AUC |" with percentages to 2 decimals.
std::string MetricsRow(const std::string& name, const Metrics& m);

// A named training configuration for an ablation.
struct Ablation {
  std::string name;
  TrainOptions options;
};

// The standard ablations, all derived from `base`: "full" (base),
// "syscall-only" (FamilySet::SyscallOnly(), DynaHug parity),
// "static-only" (FamilySet::StaticOnly()), "global-model" (base without
// task clusters). OCSVM alone vs OCSVM + capabilities needs no retraining:
// EvalReport has both.
std::vector<Ablation> StandardAblations(const TrainOptions& base);

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_EVALUATION_H_

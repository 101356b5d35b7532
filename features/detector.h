// Trace -> Verdict with a model bundle: the call every front end makes.
//
//   absl::StatusOr<Detector> d = Detector::Load("model.dhm");
//   if (!d.ok()) fail(d.status());          // names the file and the problem
//   proto::Verdict v = d->Classify(trace);  // thread-safe, never fails
//
// Classify:
//  1. extracts the trace's features (all families, with names), its
//     routing profile and its capabilities (features/capabilities.h);
//  2. routes it to the nearest task cluster (ClassifyOptions::task limits
//     routing to clusters trained under that label);
//  3. splits the vector into the cluster's known part and the novelty
//     features (features/novelty.h), scales them, and scores with the
//     cluster's one-class SVM: ocsvm_score = AnomalyScore (higher is more
//     anomalous), compared to the cluster's threshold;
//  4. combines (the documented choice, features/README.md): the label is
//     MALICIOUS when ocsvm_score > threshold OR a convicting capability
//     was observed; score = ocsvm_score, raised to threshold +
//     kCapabilityScoreMargin when only a capability convicts, so that
//     score > threshold <=> MALICIOUS holds for every verdict;
//  5. otherwise, a trace whose child did not end normally (timeout,
//     memory or CPU limit, crash, policy violation) is ERROR
//     ("inconclusive: ..."): inconclusive is never clean; LOAD_FAILED is a
//     normal ending (the loader refused the file). A trace without a
//     dynamic part (the child never ran) is always ERROR: there is no
//     behaviour to judge;
//  6. reasons: one per observed capability with its evidence (weight 1),
//     then the features that drove the OCSVM score (ExplainScore) with
//     readable names, novelty features listing their unseen tokens.
// The OCSVM-alone decision is always recoverable: ocsvm_score > threshold.
//
// Thread safety: Detector is immutable after Load; Classify is const and
// may run on many threads at once.
#ifndef DYNAHUG_FEATURES_DETECTOR_H_
#define DYNAHUG_FEATURES_DETECTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "features/feature_extractor.h"
#include "proto/dynahug.pb.h"
#include "proto/model_bundle.pb.h"

namespace dynahug::features {

// Score a capability-only conviction is raised to, above the threshold.
inline constexpr double kCapabilityScoreMargin = 1.0;

struct ClassifyOptions {
  // Route only to clusters trained under this task label ("" = any). A
  // label no cluster has falls back to all clusters (and says so in the
  // reasons).
  std::string task;
  // Most OCSVM feature reasons to report (capability reasons come on top).
  int max_feature_reasons = 6;
  // Unseen tokens listed in the detail of one novelty reason.
  int max_tokens_per_reason = 4;
};

class Detector {
 public:
  // Reads, checks (features/model_bundle.h) and prepares a bundle file.
  static absl::StatusOr<Detector> Load(const std::string& path);
  // Same for a bundle in memory; `name` is used in error messages.
  static absl::StatusOr<Detector> FromBundle(proto::ModelBundle bundle,
                                             std::string name = "<memory>");

  proto::Verdict Classify(const proto::Trace& trace,
                          const ClassifyOptions& options = {}) const;

  // An ERROR verdict for a file that could not be traced at all.
  static proto::Verdict ErrorVerdict(std::string message);

  const proto::ModelBundle& bundle() const;
  // "<name> sha256:<first 16 hex of the bundle's SHA-256>", for
  // ScanReport.model_bundle.
  const std::string& id() const;
  // Names of the clusters, in bundle order.
  std::vector<std::string> ClusterNames() const;

 private:
  struct State;
  explicit Detector(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;
};

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_DETECTOR_H_

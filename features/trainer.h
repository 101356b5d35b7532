// Training a model bundle from benign traces only.
//
//   Trainer trainer(TrainOptions{});
//   for (each benign trace t of file f)
//     if (absl::Status s = trainer.Add(t, f.path, GroupOf(f), task); !s.ok())
//       report(s);                       // the file is skipped
//   absl::StatusOr<proto::ModelBundle> bundle = trainer.Train();
//   WriteModelBundle(*bundle, "model.dhm");   // features/model_bundle.h
//
// What Train does (features/README.md explains why):
//  1. Extracts every trace with all families and names, keeps its routing
//     profile (features/clustering.h) and a compact vector of the bundle's
//     families (features/novelty.h GroupedVector).
//  2. Clusters the groups (ClusterGroups over group profiles; task labels
//     are cannot-link constraints), or one cluster with cluster = false;
//     then reassigns every file to its nearest centroid (of its label) and
//     recomputes the centroids until nothing moves, so each cluster trains
//     on the files that route to it when scanned.
//  3. Per cluster: the vocabulary (indices at least vocabulary_min_groups
//     groups have); each training vector's novelty is measured without its
//     own cross-fitting unit (its group, or its family with
//     CrossFitting::kFamily); a per-feature max-abs scaler (each family's
//     block then scaled to unit norm) and, per novelty feature, the sorted
//     cross-fitted training values its surprisal is measured against.
//  4. Per cluster, group-aware cross-validation on benign data only:
//     cross-fitting units (groups, in name order) are cut into `folds`
//     contiguous blocks (so a fold tends to hold out whole families of
//     similarly named groups). For each fold, the model is refitted on the
//     other folds (vocabulary, cross-fitting, scaler, SVM for every
//     (nu, gamma) of the grid) and scores the held-out fold. For each grid
//     point the threshold is the (1 - target_fpr) quantile of the
//     out-of-fold scores; the chosen point maximises the detection of
//     injected novelty (held-out vectors given one unseen token in a
//     novelty group that fewer than 5% of training vectors show novelty
//     in), then the lowest transfer FPR (threshold from the other folds,
//     FPR on each fold), then grid order. Malicious data is never used.
//  5. The final SVM is trained on the whole cluster with the chosen point.
//
// Determinism: examples are sorted by (group, id) before anything else
// (so Add order does not matter), containers that are iterated are
// ordered, sums run in a fixed order, one thread, libsvm without
// probability estimates: the same inputs and options give a byte-identical
// bundle (SerializeModelBundle).
//
// Thread safety: a Trainer is not thread-safe; Train is const.
#ifndef DYNAHUG_FEATURES_TRAINER_H_
#define DYNAHUG_FEATURES_TRAINER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "features/clustering.h"
#include "features/feature_space.h"
#include "features/novelty.h"
#include "proto/dynahug.pb.h"
#include "proto/model_bundle.pb.h"

namespace dynahug::features {

enum class CrossFitting {
  kGroup,   // leave-one-group-out
  kFamily,  // leave-one-family-out (families found from routing profiles)
};

struct CalibrationOptions {
  // False-positive rate the thresholds aim at on benign files of new
  // groups, in (0, 1).
  double target_fpr = 0.005;
  // Group folds for cross-validation (at most the cluster's group count;
  // clusters with fewer than 3 groups are not cross-validated: their
  // threshold is the largest training score plus `margin`).
  int folds = 5;
  std::vector<double> nu_grid = {0.05, 0.2, 0.5};
  // Gamma = c / median squared distance between training vectors, for c in
  // this grid (the median heuristic, scaled).
  std::vector<double> gamma_scale_grid = {0.1, 0.3, 1.0, 3.0};
  // Added to a threshold taken from in-sample scores.
  double margin = 0.05;
};

struct TrainOptions {
  // Families the SVMs see (routing always uses globals, static and exit).
  FamilySet families = FamilySet::All();
  double hierarchy_decay = 0.5;
  // False: one global model (the ablation); true: task clusters.
  bool cluster = true;
  ClusterOptions clustering;
  // Vocabulary: indices at least this many groups of a cluster have.
  int vocabulary_min_groups = 1;
  // Cross-fitting unit (features/novelty.h): a training vector's novelty
  // is measured without its own group, or without its whole family: the
  // groups of its cluster whose routing profiles are within
  // family_distance (ClusterGroups, average linkage, cosine). Families make
  // training vectors carry the novelty a new family brings (a new xgboost
  // estimator next to known ones), not just a new checkpoint of a known
  // model; cross-validation folds are then blocks of whole families.
  CrossFitting cross_fitting = CrossFitting::kGroup;
  double family_distance = 0.2;
  // Multiplier of the novelty features (surprisal in nats, see
  // features/novelty.h NoveltySurprisal).
  double novelty_weight = 1.0;
  CalibrationOptions calibration;
  // Capabilities that convict whatever the OCSVM says (names from
  // CapabilityName); the default is all of them (see features/README.md
  // for the benign-corpus negative control that justifies it).
  std::vector<std::string> convicting_capabilities = {
      "process",        "network",          "write-outside-scratch",
      "exec-source",    "native-anon-exec", "namespace-tamper",
      "stub-code-call", "deferred",         "dynamic-import",
      "nested-load"};
  // Stored in TrainingMetadata.note.
  std::string note;
};

class Trainer {
 public:
  explicit Trainer(TrainOptions options = {});

  // Adds one benign training trace. `id` names the file (unique; used for
  // ordering and the input digest), `group` its near-duplicate group (files
  // of one model or one checkpoint folder, e.g. the parent directory: a
  // group never spans cross-validation folds and is the cross-fitting
  // unit), `task` an optional user task label. Errors: the trace has no
  // dynamic part (the child never ran: nothing to learn from), empty id
  // or group, or a duplicate id. The trace is not kept.
  absl::Status Add(const proto::Trace& trace, std::string id, std::string group,
                   std::string task = "");

  size_t size() const { return examples_.size(); }

  // Trains the bundle. Errors: fewer than 2 examples, or a libsvm failure
  // (named).
  absl::StatusOr<proto::ModelBundle> Train() const;

  const TrainOptions& options() const { return options_; }

 private:
  struct Example {
    std::string id;
    std::string group;
    std::string task;
    SparseVector profile;  // routing profile, with tokens
    GroupedVector vector;  // the bundle's families, no tokens
  };
  TrainOptions options_;
  std::vector<Example> examples_;
};

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_TRAINER_H_

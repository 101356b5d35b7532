#include "features/trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/status/status.h"
#include "features/capabilities.h"
#include "features/feature_extractor.h"
#include "features/internal/model_input.h"
#include "features/internal/str.h"
#include "features/model_bundle.h"
#include "features/ocsvm.h"

namespace dynahug::features {
namespace {

using internal::Cat;
using internal::RawInput;

// A novelty group is "rare" when fewer than this fraction of the
// cross-fitted training vectors have novelty in it; injected novelty goes
// only there (see SelectParams).
constexpr double kRareNoveltyFraction = 0.05;
// Rounds of file reassignment after clustering groups (Train).
constexpr int kMaxRoutingRounds = 20;
// Mass and count added by one injected unseen token.
constexpr double kInjectedMass = 1.0;

// Which indices a vector of one group knows, for one vocabulary context
// (features/novelty.h GroupFrequency, the cross-fitting table).
struct KnownRule {
  const GroupFrequency* freq = nullptr;
  int min_groups = 1;
  int fold = -1;  // CV fold whose groups do not count
  int unit = -1;  // cross-fitting unit whose groups do not count
  bool operator()(uint32_t index) const {
    return freq->GroupsOutside(index, fold, unit) >=
           static_cast<uint32_t>(min_groups);
  }
};

// The fitted scaler of one cluster (or of one CV fold of it).
struct Scaler {
  std::vector<uint32_t> vocabulary;
  std::vector<double> scale;
  std::array<double, kNoveltyFeatureCount> novelty_scale{};
  std::vector<double> novelty_reference;  // kNoveltyFeatureCount sorted rows
  size_t reference_size = 0;
  internal::ScaleView view() const {
    return {vocabulary.data(),        scale.data(),
            vocabulary.size(),        novelty_scale.data(),
            novelty_reference.data(), reference_size};
  }
};

// Max-abs scale per vocabulary index over the raw training vectors (each
// family's block is then scaled to unit norm by ScaleInput); the sorted
// cross-fitted novelty values of the training vectors as the surprisal
// references, and novelty_weight as the novelty multiplier.
Scaler FitScaler(const Vocabulary& vocabulary,
                 const std::vector<const GroupedVector*>& vectors,
                 const std::vector<RawInput>& raw, const TrainOptions& o) {
  Scaler s;
  s.vocabulary = vocabulary.indices();
  std::vector<double> maxabs(s.vocabulary.size(), 0);
  for (const GroupedVector* v : vectors) {
    auto it = s.vocabulary.begin();
    for (size_t i = 0; i < v->size(); ++i) {
      it = std::lower_bound(it, s.vocabulary.end(), v->index[i]);
      if (it == s.vocabulary.end()) break;
      if (*it != v->index[i]) continue;
      double& m = maxabs[it - s.vocabulary.begin()];
      m = std::max(m, std::abs(v->value[i]));
    }
  }
  s.scale.resize(s.vocabulary.size());
  for (size_t i = 0; i < s.vocabulary.size(); ++i) {
    s.scale[i] = 1 / (maxabs[i] > 0 ? maxabs[i] : 1);
  }
  s.reference_size = raw.size();
  for (int k = 0; k < kNoveltyFeatureCount; ++k) {
    std::vector<double> row;
    for (const RawInput& r : raw) row.push_back(r.novelty.Feature(k));
    std::sort(row.begin(), row.end());
    s.novelty_reference.insert(s.novelty_reference.end(), row.begin(),
                               row.end());
    s.novelty_scale[k] = o.novelty_weight;
  }
  return s;
}

// Squared distances, row-major: between all of `a` (symmetric, l x l) or
// between `a` (rows) and `b` (columns).
std::vector<double> Distances(const std::vector<InputVector>& a) {
  const size_t l = a.size();
  std::vector<double> d(l * l, 0);
  for (size_t i = 0; i < l; ++i) {
    for (size_t j = i + 1; j < l; ++j) {
      d[i * l + j] = d[j * l + i] = SquaredDistance(a[i], a[j]);
    }
  }
  return d;
}
std::vector<double> Distances(const std::vector<InputVector>& a,
                              const std::vector<InputVector>& b) {
  std::vector<double> d(a.size() * b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < b.size(); ++j) {
      d[i * b.size() + j] = SquaredDistance(a[i], b[j]);
    }
  }
  return d;
}

// Median of the off-diagonal entries of a symmetric l x l matrix (1 when
// it is 0 or there are none): the scale of the RBF kernel's gamma.
double MedianDistance(const std::vector<double>& d, size_t l) {
  std::vector<double> v;
  for (size_t i = 0; i < l; ++i) {
    for (size_t j = i + 1; j < l; ++j) v.push_back(d[i * l + j]);
  }
  if (v.empty()) return 1;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  const double m = v[v.size() / 2];
  return m > 0 ? m : 1;
}

std::vector<double> Kernel(const std::vector<double>& d, double gamma) {
  std::vector<double> k(d.size());
  for (size_t i = 0; i < d.size(); ++i) k[i] = std::exp(-gamma * d[i]);
  return k;
}

// Anomaly score (features/ocsvm.h AnomalyScore) from the distances of a
// vector to the training vectors.
double ScoreFromDistances(const OcsvmSolution& s, double gamma,
                          const double* dist_row) {
  std::vector<double> d(s.support.size());
  for (size_t k = 0; k < d.size(); ++k) d[k] = dist_row[s.support[k]];
  return AnomalyScoreFromDistances(s.coef, d, gamma, s.rho);
}

// The (1 - fpr) quantile of `scores`: the smallest value that at most
// floor(fpr * n) scores exceed (the maximum when fpr * n < 1).
double Quantile(std::vector<double> scores, double fpr) {
  if (scores.empty()) return 0;
  std::sort(scores.begin(), scores.end());
  const size_t n = scores.size();
  const size_t allowed = static_cast<size_t>(std::floor(fpr * n));
  return scores[n - 1 - std::min(allowed, n - 1)];
}

double FractionAbove(const std::vector<double>& scores, double threshold) {
  if (scores.empty()) return 0;
  size_t n = 0;
  for (double s : scores) n += s > threshold;
  return static_cast<double>(n) / scores.size();
}

// One cluster's training data, cluster-local: examples sorted by (group,
// id), groups numbered in that order.
struct ClusterData {
  std::vector<const GroupedVector*> vectors;
  std::vector<int> group;  // local group of each vector
  int groups = 0;
  std::vector<int> unit_of_group;  // cross-fitting unit of each group
  std::vector<int> fold_of_unit;   // CV fold of each unit (-1: none)
  int fold_of(size_t vector) const {
    return fold_of_unit[unit_of_group[group[vector]]];
  }
  int unit_of(size_t vector) const { return unit_of_group[group[vector]]; }
};

// Everything one vocabulary context (a CV fold, or the final model) needs:
// the scaler and the scaled inputs of its training vectors.
struct FittedContext {
  Scaler scaler;
  std::vector<InputVector> train;
  std::vector<RawInput> train_raw;
  std::vector<int> train_rows;  // ClusterData index of each training vector
};

// Fits the context that trains on the vectors outside fold `k` (-1: all).
FittedContext FitContext(const ClusterData& c, const GroupFrequency& freq,
                         int k, const TrainOptions& o) {
  FittedContext out;
  std::vector<const GroupedVector*> vectors;
  for (size_t i = 0; i < c.vectors.size(); ++i) {
    if (k >= 0 && c.fold_of(i) == k) continue;
    const KnownRule known{&freq, o.vocabulary_min_groups, k, c.unit_of(i)};
    out.train_raw.push_back(internal::SplitKnown(*c.vectors[i], known));
    out.train_rows.push_back(static_cast<int>(i));
    vectors.push_back(c.vectors[i]);
  }
  out.scaler = FitScaler(freq.Build(o.vocabulary_min_groups, k), vectors,
                         out.train_raw, o);
  for (const RawInput& r : out.train_raw) {
    out.train.push_back(internal::ScaleInput(r, out.scaler.view()));
  }
  return out;
}

// The input of `v` as a new file for a context trained without fold `k`.
InputVector HeldOutInput(const GroupedVector& v, const GroupFrequency& freq,
                         int k, const FittedContext& ctx, const TrainOptions& o,
                         RawInput* raw) {
  *raw =
      internal::SplitKnown(v, KnownRule{&freq, o.vocabulary_min_groups, k, -1});
  return internal::ScaleInput(*raw, ctx.scaler.view());
}

// Novelty groups in which fewer than kRareNoveltyFraction of `raw` have
// novelty (all groups when none is that rare). Only groups of selected
// families.
std::vector<int> RareNoveltyGroups(const std::vector<RawInput>& raw,
                                   FamilySet families) {
  std::vector<int> rare, all;
  for (int g = 0; g < kNoveltyGroupCount; ++g) {
    const Family f = g == kAuditPickleGroup    ? Family::kAudit
                     : g == kNativePickleGroup ? Family::kNative
                                               : static_cast<Family>(g);
    if (!families.Contains(f)) continue;
    all.push_back(g);
    size_t n = 0;
    for (const RawInput& r : raw) n += r.novelty.count[g] > 0;
    if (n < kRareNoveltyFraction * std::max<size_t>(raw.size(), 1)) {
      rare.push_back(g);
    }
  }
  return rare.empty() ? all : rare;
}

// Squared distance from `x` with one injected unseen token in novelty group
// g to training vector t, given d = |x - t|^2.
double InjectedDistance(double d, const InputVector& x, const RawInput& xr,
                        const InputVector& t, int g, const Scaler& s) {
  auto value = [](const InputVector& v, uint32_t index) {
    auto it = std::lower_bound(
        v.begin(), v.end(), index,
        [](const InputEntry& e, uint32_t i) { return e.index < i; });
    return it != v.end() && it->index == index ? it->value : 0.0;
  };
  for (int k : {2 * g, 2 * g + 1}) {
    const uint32_t index = kNoveltyIndexBase + static_cast<uint32_t>(k);
    const double old_x = value(x, index);
    const double tv = value(t, index);
    const double raw_new = k % 2 == 0
                               ? xr.novelty.mass[g] + kInjectedMass
                               : static_cast<double>(xr.novelty.count[g]) + 1;
    const double new_x =
        NoveltySurprisal(s.novelty_reference.data() + k * s.reference_size,
                         s.reference_size, raw_new) *
        s.novelty_scale[k];
    d += (new_x - tv) * (new_x - tv) - (old_x - tv) * (old_x - tv);
  }
  return d;
}

struct GridPoint {
  double nu = 0;
  double gamma_scale = 0;
};

struct FoldResult {
  std::vector<double> scores;                 // held-out benign
  std::vector<std::vector<double>> injected;  // per held-out vector, per group
};

struct Selection {
  GridPoint point;
  double threshold = 0;
  int folds = 0;
  size_t scores = 0;
  double cv_fpr = 0;
  double injected_recall = 0;
};

// Group-aware cross-validation of one cluster (trainer.h step 4).
absl::StatusOr<Selection> SelectParams(const ClusterData& c,
                                       const GroupFrequency& freq, int folds,
                                       const TrainOptions& o) {
  const CalibrationOptions& cal = o.calibration;
  std::vector<GridPoint> grid;
  for (double nu : cal.nu_grid) {
    for (double g : cal.gamma_scale_grid) grid.push_back({nu, g});
  }
  if (grid.empty()) return absl::InvalidArgumentError("empty (nu, gamma) grid");
  // results[point][fold]
  std::vector<std::vector<FoldResult>> results(grid.size(),
                                               std::vector<FoldResult>(folds));
  for (int k = 0; k < folds; ++k) {
    FittedContext ctx = FitContext(c, freq, k, o);
    if (ctx.train.size() < 2) continue;
    std::vector<InputVector> held;
    std::vector<RawInput> held_raw;
    for (size_t i = 0; i < c.vectors.size(); ++i) {
      if (c.fold_of(i) != k) continue;
      RawInput r;
      held.push_back(HeldOutInput(*c.vectors[i], freq, k, ctx, o, &r));
      held_raw.push_back(std::move(r));
    }
    const std::vector<double> dtrain = Distances(ctx.train);
    const std::vector<double> dheld = Distances(held, ctx.train);
    const double median = MedianDistance(dtrain, ctx.train.size());
    const std::vector<int> rare = RareNoveltyGroups(ctx.train_raw, o.families);
    // Injected distances do not depend on the grid point.
    const size_t l = ctx.train.size();
    std::vector<std::vector<std::vector<double>>> dinj(held.size());
    for (size_t h = 0; h < held.size(); ++h) {
      for (int g : rare) {
        std::vector<double> row(l);
        for (size_t t = 0; t < l; ++t) {
          row[t] = InjectedDistance(dheld[h * l + t], held[h], held_raw[h],
                                    ctx.train[t], g, ctx.scaler);
        }
        dinj[h].push_back(std::move(row));
      }
    }
    for (size_t p = 0; p < grid.size(); ++p) {
      const double gamma = grid[p].gamma_scale / median;
      absl::StatusOr<OcsvmSolution> s =
          SolveOneClass(Kernel(dtrain, gamma), static_cast<int>(l), grid[p].nu);
      if (!s.ok()) return s.status();
      FoldResult& r = results[p][k];
      for (size_t h = 0; h < held.size(); ++h) {
        r.scores.push_back(ScoreFromDistances(*s, gamma, &dheld[h * l]));
        std::vector<double> inj;
        for (const std::vector<double>& row : dinj[h]) {
          inj.push_back(ScoreFromDistances(*s, gamma, row.data()));
        }
        r.injected.push_back(std::move(inj));
      }
    }
  }
  // Pick the grid point: most injected novelty detected at its threshold,
  // then the lowest transfer FPR (threshold from the other folds, FPR on
  // each fold), then grid order.
  Selection best;
  double best_transfer = std::numeric_limits<double>::infinity();
  bool have = false;
  for (size_t p = 0; p < grid.size(); ++p) {
    std::vector<double> all;
    for (const FoldResult& r : results[p]) {
      all.insert(all.end(), r.scores.begin(), r.scores.end());
    }
    if (all.empty()) continue;
    const double threshold = Quantile(all, cal.target_fpr);
    size_t detected = 0, injected = 0;
    double transfer = 0;
    int transfer_folds = 0;
    for (int k = 0; k < folds; ++k) {
      for (const std::vector<double>& inj : results[p][k].injected) {
        for (double s : inj) detected += s > threshold;
        injected += inj.size();
      }
      std::vector<double> others;
      for (int j = 0; j < folds; ++j) {
        if (j == k) continue;
        others.insert(others.end(), results[p][j].scores.begin(),
                      results[p][j].scores.end());
      }
      if (others.empty() || results[p][k].scores.empty()) continue;
      transfer +=
          FractionAbove(results[p][k].scores, Quantile(others, cal.target_fpr));
      ++transfer_folds;
    }
    const double recall =
        injected > 0 ? static_cast<double>(detected) / injected : 0;
    transfer = transfer_folds > 0 ? transfer / transfer_folds : 0;
    const double eps = 1e-12;
    if (!have || recall > best.injected_recall + eps ||
        (recall > best.injected_recall - eps &&
         transfer < best_transfer - eps)) {
      have = true;
      best.point = grid[p];
      best.threshold = threshold;
      best.folds = folds;
      best.scores = all.size();
      best.cv_fpr = FractionAbove(all, threshold);
      best.injected_recall = recall;
      best_transfer = transfer;
    }
  }
  if (!have) return absl::InternalError("cross-validation produced no scores");
  return best;
}

std::string ClusterName(int number, const SparseVector& centroid,
                        std::vector<std::string>* top) {
  std::vector<const Feature*> entries;
  for (const Feature& f : centroid.entries()) entries.push_back(&f);
  std::stable_sort(
      entries.begin(), entries.end(),
      [](const Feature* a, const Feature* b) { return a->value > b->value; });
  std::vector<std::string> parts;
  for (const Feature* f : entries) {
    const std::string name = centroid.Name(f->index);
    if (top->size() < 8) top->push_back(name);
    // Short part for the cluster name: loader and global modules.
    const size_t slash = name.find('/');
    std::string_view token = std::string_view(name).substr(slash + 1);
    if (token.starts_with("loader:")) token.remove_prefix(7);
    if (token.starts_with("global:") || token.starts_with("format:")) continue;
    if (parts.size() < 2 && token.find(' ') == std::string_view::npos) {
      parts.emplace_back(token);
    }
  }
  return Cat("c", number, parts.empty() ? "" : ":", internal::Join(parts, "+"));
}

}  // namespace

Trainer::Trainer(TrainOptions options) : options_(std::move(options)) {}

absl::Status Trainer::Add(const proto::Trace& trace, std::string id,
                          std::string group, std::string task) {
  if (id.empty() || group.empty()) {
    return absl::InvalidArgumentError(
        Cat("training example \"", id, "\": id and group must not be empty"));
  }
  const bool dynamic =
      trace.events_size() > 0 || trace.syscalls_size() > 0 ||
      (trace.has_exit() &&
       trace.exit().status() != proto::ChildExit::STATUS_UNSPECIFIED);
  if (!dynamic) {
    return absl::FailedPreconditionError(
        Cat("training example ", id,
            ": the trace has no dynamic part (the load never ran)"));
  }
  for (const Example& e : examples_) {
    if (e.id == id) {
      return absl::AlreadyExistsError(
          Cat("training example ", id, ": added twice"));
    }
  }
  FeatureExtractor extractor(
      {.hierarchy_decay = options_.hierarchy_decay, .keep_names = true});
  const SparseVector full = extractor.Extract(trace);
  Example e;
  e.id = std::move(id);
  e.group = std::move(group);
  e.task = std::move(task);
  e.profile = RoutingProfile(full);
  GroupedVector all = ToGrouped(full);
  for (size_t i = 0; i < all.size(); ++i) {
    if (!options_.families.Contains(FamilyOfIndex(all.index[i]))) continue;
    e.vector.index.push_back(all.index[i]);
    e.vector.value.push_back(all.value[i]);
    e.vector.group.push_back(all.group[i]);
  }
  examples_.push_back(std::move(e));
  return absl::OkStatus();
}

absl::StatusOr<proto::ModelBundle> Trainer::Train() const {
  const TrainOptions& o = options_;
  if (examples_.size() < 2) {
    return absl::FailedPreconditionError(
        Cat("training needs at least 2 benign traces, got ", examples_.size()));
  }
  if (!(o.calibration.target_fpr > 0 && o.calibration.target_fpr < 1)) {
    return absl::InvalidArgumentError("target_fpr must be in (0, 1)");
  }
  for (const std::string& name : o.convicting_capabilities) {
    if (!ParseCapability(name).has_value()) {
      return absl::InvalidArgumentError(
          Cat("unknown capability \"", name, "\""));
    }
  }
  // Fixed order whatever the Add order.
  std::vector<const Example*> ex;
  for (const Example& e : examples_) ex.push_back(&e);
  std::sort(ex.begin(), ex.end(), [](const Example* a, const Example* b) {
    return std::tie(a->group, a->id) < std::tie(b->group, b->id);
  });
  // Groups in name order, with their profiles and labels.
  std::vector<std::string> group_names;
  std::vector<int> group_of(ex.size());
  std::vector<std::vector<const SparseVector*>> group_profiles;
  std::vector<GroupProfile> groups;
  for (size_t i = 0; i < ex.size(); ++i) {
    if (group_names.empty() || group_names.back() != ex[i]->group) {
      group_names.push_back(ex[i]->group);
      group_profiles.emplace_back();
      groups.push_back({SparseVector(), ex[i]->task});
    } else if (groups.back().task != ex[i]->task) {
      return absl::InvalidArgumentError(
          Cat("group ", ex[i]->group, " has files with different task labels"));
    }
    group_of[i] = static_cast<int>(group_names.size()) - 1;
    group_profiles.back().push_back(&ex[i]->profile);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].profile = Centroid(group_profiles[g]);
  }
  std::vector<int> cluster_of_group(groups.size(), 0);
  if (o.cluster) cluster_of_group = ClusterGroups(groups, o.clustering);
  // Files, not groups, are routed when scanning: reassign every training
  // file to its nearest centroid (of its task label) and recompute the
  // centroids until nothing moves, so that each cluster trains on exactly
  // the files that route to it.
  std::vector<int> cluster_of(ex.size());
  for (size_t i = 0; i < ex.size(); ++i) {
    cluster_of[i] = cluster_of_group[group_of[i]];
  }
  std::vector<SparseVector> centroids;
  std::vector<std::string> cluster_task;
  for (int round = 0; round < kMaxRoutingRounds; ++round) {
    // Renumber non-empty clusters in order of their first file.
    std::vector<int> number(ex.size() + 1, -1);
    int k = 0;
    for (int& c : cluster_of) {
      if (number[c] < 0) number[c] = k++;
      c = number[c];
    }
    std::vector<std::vector<const SparseVector*>> members(k);
    cluster_task.assign(k, "");
    for (size_t i = 0; i < ex.size(); ++i) {
      members[cluster_of[i]].push_back(&ex[i]->profile);
      cluster_task[cluster_of[i]] = ex[i]->task;
    }
    centroids.clear();
    for (const auto& m : members) centroids.push_back(Centroid(m));
    if (!o.cluster) break;
    bool moved = false;
    for (size_t i = 0; i < ex.size(); ++i) {
      std::vector<bool> allowed(k);
      for (int c = 0; c < k; ++c) allowed[c] = cluster_task[c] == ex[i]->task;
      const int c = Route(ex[i]->profile, centroids, allowed);
      if (c >= 0 && c != cluster_of[i]) {
        cluster_of[i] = c;
        moved = true;
      }
    }
    if (!moved) break;
  }
  const int clusters = static_cast<int>(centroids.size());

  proto::ModelBundle bundle;
  bundle.set_feature_space_version(kFeatureSpaceVersion);
  bundle.mutable_extraction()->set_families(o.families.bits());
  bundle.mutable_extraction()->set_hierarchy_decay(o.hierarchy_decay);
  proto::ModelConfig* mc = bundle.mutable_model();
  mc->set_vocabulary_min_groups(o.vocabulary_min_groups);
  mc->set_novelty_weight(o.novelty_weight);
  mc->set_target_fpr(o.calibration.target_fpr);
  for (const std::string& c : o.convicting_capabilities) {
    mc->add_convicting_capabilities(c);
  }
  mc->set_cross_fitting(
      o.cross_fitting == CrossFitting::kFamily
          ? Cat("leave-one-family-out:", std::to_string(o.family_distance))
          : std::string("leave-one-group-out"));

  for (int c = 0; c < clusters; ++c) {
    ClusterData data;
    std::vector<int> local_of_group(groups.size(), -1);
    std::vector<std::string> local_names;
    std::vector<const SparseVector*> profiles;
    for (size_t i = 0; i < ex.size(); ++i) {
      const int g = group_of[i];
      if (cluster_of[i] != c) continue;
      if (local_of_group[g] < 0) {
        local_of_group[g] = data.groups++;
        local_names.push_back(group_names[g]);
        profiles.push_back(&groups[g].profile);
      }
      data.vectors.push_back(&ex[i]->vector);
      data.group.push_back(local_of_group[g]);
    }
    const std::string& task = cluster_task[c];
    if (data.vectors.size() < 2) {
      return absl::FailedPreconditionError(
          Cat("task cluster ", c, task.empty() ? "" : Cat(" (task ", task, ")"),
              " has only ", data.vectors.size(),
              " training trace: add more benign files"));
    }
    // Cross-fitting units: the groups, or families of groups with nearly
    // the same routing profile (numbered in order of their first group).
    if (o.cross_fitting == CrossFitting::kFamily) {
      std::vector<GroupProfile> local;
      for (const SparseVector* p : profiles) local.push_back({*p, task});
      data.unit_of_group =
          ClusterGroups(local, {.merge_distance = o.family_distance,
                                .min_groups = 1,
                                .max_clusters = data.groups});
    } else {
      data.unit_of_group.resize(data.groups);
      std::iota(data.unit_of_group.begin(), data.unit_of_group.end(), 0);
    }
    const int units = data.groups == 0
                          ? 0
                          : *std::max_element(data.unit_of_group.begin(),
                                              data.unit_of_group.end()) +
                                1;
    // Folds: contiguous blocks of units (units follow group name order).
    const int folds = units >= 3 ? std::min(o.calibration.folds, units) : 0;
    data.fold_of_unit.assign(units, -1);
    for (int u = 0; u < units && folds > 0; ++u) {
      data.fold_of_unit[u] = u * folds / units;
    }
    GroupFrequency freq(data.unit_of_group, data.fold_of_unit);
    for (size_t i = 0; i < data.vectors.size(); ++i) {
      freq.Add(data.group[i], *data.vectors[i]);
    }
    freq.Finish();

    Selection sel;
    if (folds >= 2) {
      absl::StatusOr<Selection> s = SelectParams(data, freq, folds, o);
      if (!s.ok()) return s.status();
      sel = *s;
    } else {
      sel.point = {
          o.calibration.nu_grid.empty() ? 0.1 : o.calibration.nu_grid.back(),
          1.0};
    }
    // Final model on the whole cluster.
    FittedContext ctx = FitContext(data, freq, -1, o);
    const std::vector<double> d = Distances(ctx.train);
    const double gamma =
        sel.point.gamma_scale / MedianDistance(d, ctx.train.size());
    absl::StatusOr<OcsvmSolution> s = SolveOneClass(
        Kernel(d, gamma), static_cast<int>(ctx.train.size()), sel.point.nu);
    if (!s.ok()) return s.status();
    if (folds < 2) {
      // No held-out groups: the largest in-sample score plus a margin.
      double top = -std::numeric_limits<double>::infinity();
      for (size_t i = 0; i < ctx.train.size(); ++i) {
        top = std::max(top,
                       ScoreFromDistances(*s, gamma, &d[i * ctx.train.size()]));
      }
      sel.threshold = top + o.calibration.margin;
    }

    proto::TaskCluster* tc = bundle.add_clusters();
    const SparseVector& centroid = centroids[c];
    std::vector<std::string> top;
    tc->set_name(ClusterName(c, centroid, &top));
    tc->set_task(task);
    for (const Feature& f : centroid.entries()) {
      tc->add_centroid_index(f.index);
      tc->add_centroid_value(f.value);
    }
    for (std::string& t : top) tc->add_centroid_top(std::move(t));
    for (size_t i = 0; i < ctx.scaler.vocabulary.size(); ++i) {
      tc->add_vocabulary(ctx.scaler.vocabulary[i]);
      tc->add_scale(ctx.scaler.scale[i]);
    }
    for (double v : ctx.scaler.novelty_scale) tc->add_novelty_scale(v);
    for (double v : ctx.scaler.novelty_reference) tc->add_novelty_reference(v);
    tc->set_novelty_reference_width(
        static_cast<uint32_t>(ctx.scaler.reference_size));
    *tc->mutable_svm() = MakeOneClassSvm(ctx.train, *s, sel.point.nu, gamma);
    tc->set_threshold(sel.threshold);
    proto::Calibration* cal = tc->mutable_calibration();
    cal->set_folds(folds >= 2 ? folds : 0);
    cal->set_crossfit_units(static_cast<uint32_t>(units));
    cal->set_scores(static_cast<uint32_t>(sel.scores));
    cal->set_cv_fpr(sel.cv_fpr);
    cal->set_cv_injected_recall(sel.injected_recall);
    for (double v : o.calibration.nu_grid) cal->add_nu_grid(v);
    for (double v : o.calibration.gamma_scale_grid) cal->add_gamma_grid(v);
    tc->set_train_examples(static_cast<uint32_t>(data.vectors.size()));
    tc->set_train_groups(static_cast<uint32_t>(data.groups));
  }

  proto::TrainingMetadata* meta = bundle.mutable_training();
  meta->set_examples(static_cast<uint32_t>(ex.size()));
  meta->set_groups(static_cast<uint32_t>(groups.size()));
  std::string lines;
  for (const Example* e : ex) lines += Cat(e->group, "\t", e->id, "\n");
  meta->set_inputs_sha256(Sha256Hex(lines));
  meta->set_note(o.note);
  return bundle;
}

}  // namespace dynahug::features

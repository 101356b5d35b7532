#include "features/detector.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "absl/status/status.h"
#include "features/capabilities.h"
#include "features/clustering.h"
#include "features/internal/model_input.h"
#include "features/internal/str.h"
#include "features/model_bundle.h"
#include "features/novelty.h"
#include "features/ocsvm.h"

namespace dynahug::features {
namespace {

using internal::Cat;

bool HasDynamicPart(const proto::Trace& trace) {
  return trace.events_size() > 0 || trace.syscalls_size() > 0 ||
         (trace.has_exit() &&
          trace.exit().status() != proto::ChildExit::STATUS_UNSPECIFIED);
}

// Why a trace cannot count as a complete load, or "" when it can.
std::string Inconclusive(const proto::Trace& trace) {
  if (!HasDynamicPart(trace)) {
    return "the load never ran (no dynamic part in the trace)";
  }
  const proto::ChildExit& x = trace.exit();
  switch (x.status()) {
    case proto::ChildExit::OK:
    case proto::ChildExit::LOAD_FAILED:
      return "";
    case proto::ChildExit::STATUS_UNSPECIFIED:
      return "the child's end status is unknown";
    default:
      return Cat("the child ended with ",
                 proto::ChildExit::Status_Name(x.status()),
                 x.reason().empty() ? "" : Cat(": ", x.reason()));
  }
}

// Name of input index `index` for a reason: the vector's own tokens, or the
// family and offset of a feature the file lacks.
std::string InputName(uint32_t index, const SparseVector& features) {
  if (index >= kNoveltyIndexBase) {
    return NoveltyFeatureName(static_cast<int>(index - kNoveltyIndexBase));
  }
  const Feature* f = features.Find(index);
  if (f != nullptr) return features.Name(index);
  return Cat(features.Name(index), " (absent; usual in this cluster)");
}

}  // namespace

struct Detector::State {
  proto::ModelBundle bundle;
  std::string id;
  FeatureExtractor extractor;
  FamilySet families;
  std::vector<SparseVector> centroids;
  std::vector<bool> convicting = std::vector<bool>(kCapabilityCount, false);
};

Detector::Detector(std::shared_ptr<const State> state)
    : state_(std::move(state)) {}

absl::StatusOr<Detector> Detector::Load(const std::string& path) {
  absl::StatusOr<proto::ModelBundle> bundle = ReadModelBundle(path);
  if (!bundle.ok()) return bundle.status();
  return FromBundle(*std::move(bundle), path);
}

absl::StatusOr<Detector> Detector::FromBundle(proto::ModelBundle bundle,
                                              std::string name) {
  if (absl::Status s = ValidateModelBundle(bundle, name); !s.ok()) return s;
  auto state = std::make_shared<State>();
  state->bundle = std::move(bundle);
  state->extractor = FeatureExtractor(ExtractOptions{
      .families = FamilySet::All(),
      .hierarchy_decay = state->bundle.extraction().hierarchy_decay(),
      .keep_names = true});
  state->families = FamilySet::FromBits(state->bundle.extraction().families());
  for (const std::string& c : state->bundle.model().convicting_capabilities()) {
    std::optional<Capability> cap = ParseCapability(c);
    if (!cap.has_value()) {
      return absl::DataLossError(
          Cat("model bundle ", name, ": unknown capability \"", c, "\""));
    }
    state->convicting[static_cast<size_t>(*cap)] = true;
  }
  for (const proto::TaskCluster& c : state->bundle.clusters()) {
    std::vector<Feature> entries;
    for (int i = 0; i < c.centroid_index_size(); ++i) {
      entries.push_back({c.centroid_index(i), c.centroid_value(i), {}});
    }
    state->centroids.emplace_back(std::move(entries));
  }
  state->id = Cat(name, " sha256:",
                  Sha256Hex(SerializeModelBundle(state->bundle)).substr(0, 16));
  return Detector(std::move(state));
}

proto::Verdict Detector::ErrorVerdict(std::string message) {
  proto::Verdict v;
  v.set_label(proto::Verdict::ERROR);
  v.set_error(std::move(message));
  return v;
}

const proto::ModelBundle& Detector::bundle() const { return state_->bundle; }
const std::string& Detector::id() const { return state_->id; }

std::vector<std::string> Detector::ClusterNames() const {
  std::vector<std::string> out;
  for (const proto::TaskCluster& c : state_->bundle.clusters()) {
    out.push_back(c.name());
  }
  return out;
}

proto::Verdict Detector::Classify(const proto::Trace& trace,
                                  const ClassifyOptions& options) const {
  const State& st = *state_;
  proto::Verdict v;
  const SparseVector features = st.extractor.Extract(trace);
  const std::vector<CapabilityFinding> caps = FindCapabilities(trace);

  // Routing.
  std::vector<bool> allowed;
  bool task_missing = false;
  if (!options.task.empty()) {
    allowed.resize(st.bundle.clusters_size());
    for (int c = 0; c < st.bundle.clusters_size(); ++c) {
      allowed[c] = st.bundle.clusters(c).task() == options.task;
    }
    if (std::none_of(allowed.begin(), allowed.end(),
                     [](bool b) { return b; })) {
      allowed.clear();
      task_missing = true;
    }
  }
  const int c =
      std::max(0, Route(RoutingProfile(features), st.centroids, allowed));
  const proto::TaskCluster& cluster = st.bundle.clusters(c);
  v.set_cluster(cluster.name());

  // OCSVM.
  GroupedVector grouped = ToGrouped(features);
  GroupedVector selected;
  for (size_t i = 0; i < grouped.size(); ++i) {
    if (!st.families.Contains(FamilyOfIndex(grouped.index[i]))) continue;
    selected.index.push_back(grouped.index[i]);
    selected.value.push_back(grouped.value[i]);
    selected.group.push_back(grouped.group[i]);
  }
  const uint32_t* vb = cluster.vocabulary().data();
  const uint32_t* ve = vb + cluster.vocabulary_size();
  const auto known = [&](uint32_t index) {
    return std::binary_search(vb, ve, index);
  };
  const internal::RawInput raw = internal::SplitKnown(selected, known);
  const InputVector input = internal::ScaleInput(
      raw,
      {vb, cluster.scale().data(), static_cast<size_t>(cluster.scale_size()),
       cluster.novelty_scale().data(), cluster.novelty_reference().data(),
       cluster.novelty_reference_width()});
  const double ocsvm = AnomalyScore(cluster.svm(), input);
  const double threshold = cluster.threshold();
  v.set_ocsvm_score(ocsvm);
  v.set_threshold(threshold);

  // Combination.
  bool convicted = false;
  for (const CapabilityFinding& f : caps) {
    v.add_capabilities(std::string(CapabilityName(f.capability)));
    convicted |= st.convicting[static_cast<size_t>(f.capability)];
  }
  const bool anomalous = ocsvm > threshold;
  double score = ocsvm;
  if (convicted && !anomalous) score = threshold + kCapabilityScoreMargin;
  v.set_score(score);
  const std::string inconclusive = Inconclusive(trace);
  if (!HasDynamicPart(trace)) {
    // Nothing ran: no behaviour to judge, whatever the static part says.
    v.set_label(proto::Verdict::ERROR);
    v.set_error(Cat("inconclusive: ", inconclusive));
  } else if (anomalous || convicted) {
    v.set_label(proto::Verdict::MALICIOUS);
  } else if (!inconclusive.empty()) {
    v.set_label(proto::Verdict::ERROR);
    v.set_error(Cat("inconclusive: ", inconclusive));
  } else {
    v.set_label(proto::Verdict::BENIGN);
  }

  // Reasons: capabilities first, then what drove the OCSVM score.
  for (const CapabilityFinding& f : caps) {
    proto::Reason* r = v.add_reasons();
    r->set_feature(Cat("capability/", CapabilityName(f.capability)));
    r->set_weight(1);
    r->set_detail(Cat(CapabilityName(f.capability), ": ", f.evidence));
  }
  if (task_missing) {
    proto::Reason* r = v.add_reasons();
    r->set_feature("routing/task");
    r->set_detail(Cat("no cluster was trained under task \"", options.task,
                      "\"; routed among all clusters"));
  }
  const std::vector<InputEntry> explained = ExplainScore(cluster.svm(), input);
  double total = 0;
  for (const InputEntry& e : explained) total += e.value;
  bool novelty_done[kNoveltyGroupCount] = {};
  int shown = 0;
  for (const InputEntry& e : explained) {
    if (shown >= options.max_feature_reasons || !(total > 0)) break;
    proto::Reason* r;
    if (e.index >= kNoveltyIndexBase) {
      const int group = static_cast<int>(e.index - kNoveltyIndexBase) / 2;
      if (novelty_done[group]) continue;
      novelty_done[group] = true;
      if (raw.novelty.count[group] == 0) continue;  // novelty usual, absent
      r = v.add_reasons();
      r->set_feature(Cat("novelty/", NoveltyGroupName(group)));
      // The largest unseen entries of the group.
      std::vector<std::pair<double, uint32_t>> unseen;
      for (size_t i = 0; i < selected.size(); ++i) {
        if (selected.group[i] == group && !known(selected.index[i])) {
          unseen.emplace_back(-selected.value[i], selected.index[i]);
        }
      }
      std::sort(unseen.begin(), unseen.end());
      std::vector<std::string> names;
      for (size_t i = 0; i < unseen.size() &&
                         static_cast<int>(i) < options.max_tokens_per_reason;
           ++i) {
        names.push_back(features.Name(unseen[i].second));
      }
      r->set_detail(Cat(raw.novelty.count[group], " feature(s) of ",
                        NoveltyGroupName(group), " never seen in cluster ",
                        cluster.name(), ": ", internal::Join(names, ", "),
                        unseen.size() > names.size() ? ", ..." : ""));
    } else {
      r = v.add_reasons();
      r->set_feature(InputName(e.index, features));
      const Feature* f = features.Find(e.index);
      r->set_detail(f != nullptr
                        ? Cat("value ", std::to_string(f->value),
                              " differs from the cluster's usual files")
                        : std::string("missing, while the cluster's files "
                                      "have it"));
    }
    r->set_weight(e.value / total);
    ++shown;
  }
  return v;
}

}  // namespace dynahug::features

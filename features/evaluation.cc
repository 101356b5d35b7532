#include "features/evaluation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "features/internal/str.h"

namespace dynahug::features {
namespace {

using internal::Cat;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool Flagged(const EvalRecord& r, bool ocsvm_alone) {
  if (r.verdict.label() == proto::Verdict::ERROR) return true;
  if (ocsvm_alone) return r.verdict.ocsvm_score() > r.verdict.threshold();
  return r.verdict.label() != proto::Verdict::BENIGN;
}

double Score(const EvalRecord& r, bool ocsvm_alone) {
  // Errors rank above everything: they are flagged whatever the score.
  if (r.verdict.label() == proto::Verdict::ERROR) {
    return std::numeric_limits<double>::infinity();
  }
  return ocsvm_alone ? r.verdict.ocsvm_score() - r.verdict.threshold()
                     : r.verdict.score() - r.verdict.threshold();
}

std::string Percent(double v) {
  if (std::isnan(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f%%", 100 * v);
  return buf;
}

std::string Fixed(double v) {
  if (std::isnan(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

std::string Table(const std::map<std::string, Metrics>& rows,
                  std::string_view title) {
  std::string out = Cat("\n", title, "\n\n");
  out +=
      "| name | files | recall | FPR | precision | F1 | ROC-AUC | errors |\n";
  out += "|---|---|---|---|---|---|---|---|\n";
  for (const auto& [name, m] : rows) out += MetricsRow(name, m);
  return out;
}

}  // namespace

double RocAuc(const std::vector<double>& scores,
              const std::vector<bool>& labels) {
  // Mann-Whitney U with average ranks for ties.
  const size_t n = scores.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double pos = 0, neg = 0, rank_sum = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double avg_rank = (i + 1 + j) / 2.0;  // ranks i+1..j
    for (size_t k = i; k < j; ++k) {
      if (labels[order[k]]) {
        rank_sum += avg_rank;
        ++pos;
      } else {
        ++neg;
      }
    }
    i = j;
  }
  if (pos == 0 || neg == 0) return kNaN;
  return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

Metrics ComputeMetrics(const std::vector<const EvalRecord*>& records,
                       bool ocsvm_alone) {
  Metrics m;
  std::vector<double> scores;
  std::vector<bool> labels;
  for (const EvalRecord* r : records) {
    const bool flagged = Flagged(*r, ocsvm_alone);
    if (r->malicious) {
      ++m.positives;
      (flagged ? m.tp : m.fn)++;
    } else {
      ++m.negatives;
      (flagged ? m.fp : m.tn)++;
    }
    m.errors += r->verdict.label() == proto::Verdict::ERROR;
    scores.push_back(Score(*r, ocsvm_alone));
    labels.push_back(r->malicious);
  }
  const double tp = m.tp, fp = m.fp, fn = m.fn;
  m.precision = tp + fp > 0 ? tp / (tp + fp) : kNaN;
  m.recall = m.positives > 0 ? tp / m.positives : kNaN;
  m.f1 = tp > 0 ? 2 * tp / (2 * tp + fp + fn) : (m.positives > 0 ? 0 : kNaN);
  m.fpr = m.negatives > 0 ? fp / m.negatives : kNaN;
  m.roc_auc = RocAuc(scores, labels);
  return m;
}

EvalReport Evaluate(const std::vector<EvalRecord>& records) {
  EvalReport report;
  std::vector<const EvalRecord*> all, benign;
  std::map<std::string, std::vector<const EvalRecord*>> by_technique,
      by_cluster, by_routed;
  for (const EvalRecord& r : records) {
    all.push_back(&r);
    if (!r.malicious) benign.push_back(&r);
    if (r.malicious) {
      by_technique[r.technique.empty() ? "?" : r.technique].push_back(&r);
    }
    by_cluster[r.cluster.empty() ? "?" : r.cluster].push_back(&r);
    by_routed[r.verdict.cluster().empty() ? "?" : r.verdict.cluster()]
        .push_back(&r);
  }
  report.overall = ComputeMetrics(all, false);
  report.ocsvm_alone = ComputeMetrics(all, true);
  for (auto& [t, list] : by_technique) {
    list.insert(list.end(), benign.begin(), benign.end());
    report.per_technique[t] = ComputeMetrics(list, false);
  }
  for (auto& [c, list] : by_cluster) {
    report.per_cluster[c] = ComputeMetrics(list, false);
  }
  for (auto& [c, list] : by_routed) {
    report.per_routed_cluster[c] = ComputeMetrics(list, false);
  }
  return report;
}

std::string MetricsRow(const std::string& name, const Metrics& m) {
  return Cat("| ", name, " | ", m.positives + m.negatives, " | ",
             Percent(m.recall), " | ", Percent(m.fpr), " | ",
             Percent(m.precision), " | ", Fixed(m.f1), " | ", Fixed(m.roc_auc),
             " | ", m.errors, " |\n");
}

std::string FormatEvalReport(const EvalReport& report) {
  std::string out = Cat("Overall (", report.overall.positives, " malicious, ",
                        report.overall.negatives, " benign)\n\n");
  out +=
      "| verdict | files | recall | FPR | precision | F1 | ROC-AUC | errors "
      "|\n";
  out += "|---|---|---|---|---|---|---|---|\n";
  out += MetricsRow("OCSVM + capabilities", report.overall);
  out += MetricsRow("OCSVM alone", report.ocsvm_alone);
  out += Table(report.per_cluster, "Per ground-truth cluster");
  out += Table(report.per_routed_cluster, "Per routed cluster");
  out += Table(report.per_technique,
               "Per technique (its malicious files with all benign files)");
  return out;
}

std::vector<Ablation> StandardAblations(const TrainOptions& base) {
  std::vector<Ablation> out;
  out.push_back({"full", base});
  TrainOptions syscall = base;
  syscall.families = FamilySet::SyscallOnly();
  out.push_back({"syscall-only", syscall});
  TrainOptions static_only = base;
  static_only.families = FamilySet::StaticOnly();
  out.push_back({"static-only", static_only});
  TrainOptions global = base;
  global.cluster = false;
  out.push_back({"global-model", global});
  return out;
}

}  // namespace dynahug::features

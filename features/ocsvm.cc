#include "features/ocsvm.h"

#include <libsvm/svm.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "absl/status/status.h"
#include "features/internal/str.h"

namespace dynahug::features {
namespace {

using internal::Cat;

void Silent(const char*) {}

// libsvm's print hook is a process-wide global: set it once.
void SilenceLibsvm() {
  static std::once_flag once;
  std::call_once(once, [] { svm_set_print_string_function(&Silent); });
}

// Squared distance of two sparse vectors given by accessors returning
// their i-th InputEntry (indices ascending).
template <typename A, typename B>
double MergedSquaredDistance(const A& a, size_t na, const B& b, size_t nb) {
  double sum = 0;
  size_t i = 0, j = 0;
  while (i < na || j < nb) {
    double d;
    if (j == nb || (i < na && a(i).index < b(j).index)) {
      d = a(i++).value;
    } else if (i == na || b(j).index < a(i).index) {
      d = b(j++).value;
    } else {
      d = a(i).value - b(j).value;
      ++i;
      ++j;
    }
    sum += d * d;
  }
  return sum;
}

// Squared distance between `x` and support vector `sv` of `svm`.
double SvDistance(const proto::OneClassSvm& svm, int sv, const InputVector& x) {
  const uint32_t begin = svm.sv_start(sv);
  return MergedSquaredDistance(
      [&](size_t i) { return x[i]; }, x.size(),
      [&](size_t j) {
        return InputEntry{svm.index(begin + j), svm.value(begin + j)};
      },
      svm.sv_start(sv + 1) - begin);
}

}  // namespace

double SquaredDistance(const InputVector& a, const InputVector& b) {
  return MergedSquaredDistance([&](size_t i) { return a[i]; }, a.size(),
                               [&](size_t j) { return b[j]; }, b.size());
}

absl::StatusOr<OcsvmSolution> SolveOneClass(const std::vector<double>& kernel,
                                            int l, double nu, double eps) {
  if (l < 2) {
    return absl::InvalidArgumentError(
        Cat("one-class SVM: need at least 2 training vectors, got ", l));
  }
  if (!(nu > 0 && nu <= 1)) {
    return absl::InvalidArgumentError(
        Cat("one-class SVM: nu must be in (0, 1], got ", std::to_string(nu)));
  }
  if (kernel.size() != static_cast<size_t>(l) * l) {
    return absl::InvalidArgumentError("one-class SVM: kernel is not l x l");
  }
  SilenceLibsvm();
  // PRECOMPUTED: node 0 holds the 1-based serial number, nodes 1..l the
  // kernel row, then the terminator.
  const size_t row = static_cast<size_t>(l) + 2;
  std::vector<svm_node> nodes(row * l);
  std::vector<svm_node*> rows(l);
  std::vector<double> y(l, 1.0);
  for (int i = 0; i < l; ++i) {
    svm_node* r = &nodes[row * i];
    r[0] = {0, static_cast<double>(i + 1)};
    for (int j = 0; j < l; ++j) r[j + 1] = {j + 1, kernel[size_t(i) * l + j]};
    r[l + 1] = {-1, 0};
    rows[i] = r;
  }
  svm_problem problem{};
  problem.l = l;
  problem.y = y.data();
  problem.x = rows.data();
  svm_parameter param{};
  param.svm_type = ONE_CLASS;
  param.kernel_type = PRECOMPUTED;
  param.nu = nu;
  param.eps = eps;
  param.cache_size = 64;
  param.shrinking = 1;
  param.probability = 0;  // libsvm's probability mode draws from rand()
  if (const char* err = svm_check_parameter(&problem, &param)) {
    return absl::InvalidArgumentError(Cat("libsvm: ", err));
  }
  svm_model* model = svm_train(&problem, &param);
  if (model == nullptr) return absl::InternalError("libsvm: svm_train failed");
  OcsvmSolution out;
  const int n = svm_get_nr_sv(model);
  std::vector<int> idx(n);
  svm_get_sv_indices(model, idx.data());
  std::vector<std::pair<int, double>> sv;
  for (int k = 0; k < n; ++k) sv.emplace_back(idx[k] - 1, model->sv_coef[0][k]);
  std::sort(sv.begin(), sv.end());
  for (auto& [i, c] : sv) {
    out.support.push_back(i);
    out.coef.push_back(c);
  }
  out.rho = model->rho[0];
  svm_free_and_destroy_model(&model);
  return out;
}

proto::OneClassSvm MakeOneClassSvm(const std::vector<InputVector>& x,
                                   const OcsvmSolution& solution, double nu,
                                   double gamma) {
  proto::OneClassSvm svm;
  svm.set_nu(nu);
  svm.set_gamma(gamma);
  svm.set_rho(solution.rho);
  svm.add_sv_start(0);
  for (size_t k = 0; k < solution.support.size(); ++k) {
    svm.add_coef(solution.coef[k]);
    for (const InputEntry& e : x[solution.support[k]]) {
      svm.add_index(e.index);
      svm.add_value(e.value);
    }
    svm.add_sv_start(static_cast<uint32_t>(svm.index_size()));
  }
  return svm;
}

absl::StatusOr<proto::OneClassSvm> TrainOneClassSvm(
    const std::vector<InputVector>& x, const OcsvmParams& params) {
  if (!(params.gamma > 0) || !std::isfinite(params.gamma)) {
    return absl::InvalidArgumentError(
        Cat("one-class SVM: gamma must be > 0, got ",
            std::to_string(params.gamma)));
  }
  const int l = static_cast<int>(x.size());
  std::vector<double> kernel(size_t(l) * l, 1.0);
  for (int i = 0; i < l; ++i) {
    for (int j = i + 1; j < l; ++j) {
      const double k = std::exp(-params.gamma * SquaredDistance(x[i], x[j]));
      kernel[size_t(i) * l + j] = kernel[size_t(j) * l + i] = k;
    }
  }
  absl::StatusOr<OcsvmSolution> solution =
      SolveOneClass(kernel, l, params.nu, params.eps);
  if (!solution.ok()) return solution.status();
  return MakeOneClassSvm(x, *solution, params.nu, params.gamma);
}

double DecisionValue(const proto::OneClassSvm& svm, const InputVector& x) {
  double sum = 0;
  for (int k = 0; k < svm.coef_size(); ++k) {
    sum += svm.coef(k) * std::exp(-svm.gamma() * SvDistance(svm, k, x));
  }
  return sum - svm.rho();
}

double AnomalyScoreFromDistances(const std::vector<double>& coef,
                                 const std::vector<double>& sq_distances,
                                 double gamma, double rho) {
  // log sum_i exp(log coef_i - gamma d_i), shifted by the largest term.
  double top = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < coef.size(); ++i) {
    if (coef[i] > 0) {
      top = std::max(top, std::log(coef[i]) - gamma * sq_distances[i]);
    }
  }
  if (!std::isfinite(top)) return 0;
  double sum = 0;
  for (size_t i = 0; i < coef.size(); ++i) {
    if (coef[i] > 0) {
      sum += std::exp(std::log(coef[i]) - gamma * sq_distances[i] - top);
    }
  }
  return std::log(std::max(rho, 1e-300)) - (top + std::log(sum));
}

double AnomalyScore(const proto::OneClassSvm& svm, const InputVector& x) {
  std::vector<double> coef(svm.coef().begin(), svm.coef().end());
  std::vector<double> d(coef.size());
  for (size_t k = 0; k < d.size(); ++k) {
    d[k] = SvDistance(svm, static_cast<int>(k), x);
  }
  return AnomalyScoreFromDistances(coef, d, svm.gamma(), svm.rho());
}

std::vector<InputEntry> ExplainScore(const proto::OneClassSvm& svm,
                                     const InputVector& x) {
  const int n = svm.coef_size();
  std::vector<InputEntry> out;
  if (n == 0) return out;
  // log w_k = log coef_k - gamma d_k, normalised with the largest.
  std::vector<double> logw(n);
  double top = -std::numeric_limits<double>::infinity();
  for (int k = 0; k < n; ++k) {
    logw[k] = std::log(std::max(svm.coef(k), 1e-300)) -
              svm.gamma() * SvDistance(svm, k, x);
    top = std::max(top, logw[k]);
  }
  double total = 0;
  std::vector<double> w(n);
  for (int k = 0; k < n; ++k) total += (w[k] = std::exp(logw[k] - top));
  // Accumulate sum_k w_k (x_i - sv_k,i)^2 per index, merging x with each
  // support vector; indices collected in a sorted vector.
  std::vector<InputEntry> acc;
  auto add = [&](uint32_t index, double v) { acc.push_back({index, v}); };
  for (int k = 0; k < n; ++k) {
    const double wk = w[k] / total;
    if (wk < 1e-6) continue;
    const uint32_t end = svm.sv_start(k + 1);
    size_t i = 0;
    uint32_t j = svm.sv_start(k);
    while (i < x.size() || j < end) {
      if (j == end || (i < x.size() && x[i].index < svm.index(j))) {
        add(x[i].index, wk * x[i].value * x[i].value);
        ++i;
      } else if (i == x.size() || svm.index(j) < x[i].index) {
        add(svm.index(j), wk * svm.value(j) * svm.value(j));
        ++j;
      } else {
        const double d = x[i].value - svm.value(j);
        add(x[i].index, wk * d * d);
        ++i;
        ++j;
      }
    }
  }
  std::stable_sort(acc.begin(), acc.end(),
                   [](const InputEntry& a, const InputEntry& b) {
                     return a.index < b.index;
                   });
  for (const InputEntry& e : acc) {
    if (!out.empty() && out.back().index == e.index) {
      out.back().value += e.value;
    } else {
      out.push_back(e);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const InputEntry& a, const InputEntry& b) {
                     return a.value > b.value;
                   });
  return out;
}

}  // namespace dynahug::features

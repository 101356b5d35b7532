// One-class SVM with an RBF kernel: training through libsvm
// (<libsvm/svm.h>, Debian libsvm-dev), evaluation and explanation here.
//
// Training calls svm_train with ONE_CLASS / RBF, no shrinking-dependent
// randomness and no probability estimates (libsvm's probability mode draws
// from rand()); libsvm's solver is then a deterministic function of its
// input order, which the callers fix. libsvm's stdout chatter is silenced.
// The model is copied out of libsvm into proto::OneClassSvm, and the
// decision function is evaluated here (same formula as svm_predict_values;
// the unit test compares them), so scanning needs no libsvm structures.
//
// Thread safety: TrainOneClassSvm serialises its libsvm calls with a mutex
// (libsvm's print hook is a global); the other functions are pure.
#ifndef DYNAHUG_FEATURES_OCSVM_H_
#define DYNAHUG_FEATURES_OCSVM_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/model_bundle.pb.h"

namespace dynahug::features {

// One coordinate of the SVM's input space.
struct InputEntry {
  uint32_t index = 0;
  double value = 0;
};
// A sparse input vector: entries sorted by index, indices unique, values
// finite.
using InputVector = std::vector<InputEntry>;

double SquaredDistance(const InputVector& a, const InputVector& b);

struct OcsvmParams {
  double nu = 0.05;    // in (0, 1]
  double gamma = 0.1;  // > 0
  // libsvm's stopping tolerance.
  double eps = 1e-4;
};

// The solution of a one-class problem on a precomputed kernel: the support
// vectors as indices into the training set (ascending), their
// coefficients, and rho.
struct OcsvmSolution {
  std::vector<int> support;
  std::vector<double> coef;
  double rho = 0;
};

// Solves the one-class problem for the l x l kernel matrix `kernel`
// (row-major, symmetric) with libsvm (kernel_type PRECOMPUTED). Lets callers
// that try many (nu, gamma) pairs on one training set compute distances
// once. Errors: l < 2, bad nu, libsvm's svm_check_parameter message.
absl::StatusOr<OcsvmSolution> SolveOneClass(const std::vector<double>& kernel,
                                            int l, double nu,
                                            double eps = 1e-4);

// The model of `solution` over training vectors `x` with `gamma`.
proto::OneClassSvm MakeOneClassSvm(const std::vector<InputVector>& x,
                                   const OcsvmSolution& solution, double nu,
                                   double gamma);

// Trains on `x` (at least 2 vectors). Errors: bad parameters (named), or
// libsvm's svm_check_parameter message.
absl::StatusOr<proto::OneClassSvm> TrainOneClassSvm(
    const std::vector<InputVector>& x, const OcsvmParams& params);

// libsvm's decision value (positive inside the support).
double DecisionValue(const proto::OneClassSvm& svm, const InputVector& x);

// Anomaly score of `x`: log(rho) - log(sum_i coef_i K(sv_i, x)), computed
// in log space. It is a strictly decreasing function of libsvm's decision
// value (so it keeps the OCSVM's decision: > 0 exactly when the decision
// is < 0), but it does not saturate: the decision value of every point far
// from all support vectors is -rho, so novel files would all tie, while
// this score keeps growing with the (soft-minimum, gamma-weighted) squared
// distance to the support vectors. Thresholds are compared with it.
double AnomalyScore(const proto::OneClassSvm& svm, const InputVector& x);

// The same score from the squared distances of x to each support vector
// (`sq_distances[i]` to support vector i, same order as `coef`).
double AnomalyScoreFromDistances(const std::vector<double>& coef,
                                 const std::vector<double>& sq_distances,
                                 double gamma, double rho);

// Per-coordinate explanation of AnomalyScore(x): for each index i where x
// or a support vector is non-zero, the kernel-weighted squared difference
// sum_j w_j (x_i - sv_j,i)^2 with w_j proportional to coef_j K(sv_j, x)
// (normalised to sum 1; computed in log space so far points still get
// weights). Coordinates that move x away from the support vectors that
// matter most get the largest values. Sorted by decreasing contribution.
std::vector<InputEntry> ExplainScore(const proto::OneClassSvm& svm,
                                     const InputVector& x);

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_OCSVM_H_

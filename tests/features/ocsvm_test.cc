// One-class SVM (features/ocsvm.h): our decision function against libsvm's
// svm_predict_values, the log-kernel anomaly score, and explanations.
#include "features/ocsvm.h"

#include <libsvm/svm.h>

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace dynahug::features {
namespace {

// Points on a small 2-d cloud plus a sparse third coordinate.
std::vector<InputVector> Cloud() {
  std::vector<InputVector> x;
  for (int i = 0; i < 30; ++i) {
    const double a = 0.1 * (i % 7), b = 0.05 * (i % 5);
    InputVector v = {{1, 1 + a}, {2, 2 - b}};
    if (i % 3 == 0) v.push_back({7, 0.3});
    x.push_back(v);
  }
  return x;
}

std::vector<svm_node> Nodes(const InputVector& v) {
  std::vector<svm_node> out;
  for (const InputEntry& e : v) {
    out.push_back({static_cast<int>(e.index), e.value});
  }
  out.push_back({-1, 0});
  return out;
}

TEST(OcsvmTest, DecisionMatchesLibsvmsOwnRbfModel) {
  const std::vector<InputVector> x = Cloud();
  const double nu = 0.2, gamma = 0.7;
  absl::StatusOr<proto::OneClassSvm> ours =
      TrainOneClassSvm(x, {.nu = nu, .gamma = gamma, .eps = 1e-6});
  ASSERT_TRUE(ours.ok()) << ours.status();

  // The same problem solved by libsvm with its own RBF kernel.
  std::vector<std::vector<svm_node>> nodes;
  for (const InputVector& v : x) nodes.push_back(Nodes(v));
  std::vector<svm_node*> rows;
  for (auto& n : nodes) rows.push_back(n.data());
  std::vector<double> y(x.size(), 1);
  svm_problem prob{static_cast<int>(x.size()), y.data(), rows.data()};
  svm_parameter param{};
  param.svm_type = ONE_CLASS;
  param.kernel_type = RBF;
  param.gamma = gamma;
  param.nu = nu;
  param.eps = 1e-6;
  param.cache_size = 10;
  param.shrinking = 1;
  svm_model* model = svm_train(&prob, &param);
  ASSERT_NE(model, nullptr);
  for (const InputVector& probe :
       {x[0], x[5], InputVector{{1, 3}, {2, 0}}, InputVector{{9, 4}}}) {
    double libsvm = 0;
    std::vector<svm_node> n = Nodes(probe);
    svm_predict_values(model, n.data(), &libsvm);
    EXPECT_NEAR(DecisionValue(*ours, probe), libsvm, 1e-6);
  }
  svm_free_and_destroy_model(&model);
}

TEST(OcsvmTest, AnomalyScoreKeepsTheDecisionAndRanksFarPoints) {
  const std::vector<InputVector> x = Cloud();
  absl::StatusOr<proto::OneClassSvm> svm =
      TrainOneClassSvm(x, {.nu = 0.1, .gamma = 0.5});
  ASSERT_TRUE(svm.ok());
  for (const InputVector& v : x) {
    EXPECT_EQ(AnomalyScore(*svm, v) > 0, DecisionValue(*svm, v) < 0);
  }
  // Far points: the decision value saturates at -rho, the score does not.
  const InputVector far = {{1, 40}}, farther = {{1, 80}};
  EXPECT_NEAR(DecisionValue(*svm, far), DecisionValue(*svm, farther), 1e-12);
  EXPECT_GT(AnomalyScore(*svm, farther), AnomalyScore(*svm, far) + 100);
}

TEST(OcsvmTest, ExplanationNamesTheCoordinateThatMovedThePoint) {
  absl::StatusOr<proto::OneClassSvm> svm =
      TrainOneClassSvm(Cloud(), {.nu = 0.1, .gamma = 0.5});
  ASSERT_TRUE(svm.ok());
  const InputVector odd = {{1, 1.2}, {2, 2}, {42, 3}};
  const std::vector<InputEntry> why = ExplainScore(*svm, odd);
  ASSERT_FALSE(why.empty());
  EXPECT_EQ(why[0].index, 42u);
  for (size_t i = 1; i < why.size(); ++i) {
    EXPECT_LE(why[i].value, why[i - 1].value);
  }
}

TEST(OcsvmTest, TrainingIsDeterministic) {
  absl::StatusOr<proto::OneClassSvm> a =
      TrainOneClassSvm(Cloud(), {.nu = 0.2, .gamma = 0.3});
  absl::StatusOr<proto::OneClassSvm> b =
      TrainOneClassSvm(Cloud(), {.nu = 0.2, .gamma = 0.3});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
}

TEST(OcsvmTest, BadParametersAreErrorsNamingThem) {
  EXPECT_EQ(TrainOneClassSvm(Cloud(), {.nu = 0, .gamma = 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainOneClassSvm(Cloud(), {.nu = 0.1, .gamma = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      TrainOneClassSvm({Cloud()[0]}, {.nu = 0.1, .gamma = 1}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveOneClass({1, 0, 0}, 2, 0.5).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dynahug::features

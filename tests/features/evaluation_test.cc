// Evaluation metrics (features/evaluation.h).
#include "features/evaluation.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dynahug::features {
namespace {

using ::testing::HasSubstr;

EvalRecord Record(bool malicious, proto::Verdict::Label label, double score,
                  double ocsvm, const std::string& technique = "",
                  const std::string& cluster = "c") {
  EvalRecord r;
  r.malicious = malicious;
  r.technique = technique;
  r.cluster = cluster;
  r.verdict.set_label(label);
  r.verdict.set_score(score);
  r.verdict.set_ocsvm_score(ocsvm);
  r.verdict.set_threshold(0);
  r.verdict.set_cluster("routed-" + cluster);
  return r;
}

TEST(EvaluationTest, RocAucCountsTiesHalf) {
  EXPECT_DOUBLE_EQ(RocAuc({1, 2, 3, 4}, {false, false, true, true}), 1);
  EXPECT_DOUBLE_EQ(RocAuc({4, 3, 2, 1}, {false, false, true, true}), 0);
  EXPECT_DOUBLE_EQ(RocAuc({1, 1}, {false, true}), 0.5);
  // pos {2, 3}, neg {1, 3}: (2,1) 1, (2,3) 0, (3,1) 1, (3,3) 0.5 of 4.
  EXPECT_DOUBLE_EQ(RocAuc({2, 3, 1, 3}, {true, true, false, false}), 0.625);
  EXPECT_TRUE(std::isnan(RocAuc({1, 2}, {true, true})));
}

TEST(EvaluationTest, FinalAndOcsvmAloneAreCountedSeparately) {
  using L = proto::Verdict;
  const std::vector<EvalRecord> records = {
      // Caught by a capability only (OCSVM below threshold).
      Record(true, L::MALICIOUS, 1, -0.5, "os-system"),
      // Caught by both.
      Record(true, L::MALICIOUS, 2, 2, "exec-plain"),
      // Missed.
      Record(true, L::BENIGN, -1, -1, "exec-plain"),
      // Benign, clean.
      Record(false, L::BENIGN, -2, -2),
      Record(false, L::BENIGN, -1.5, -1.5),
      // Benign, OCSVM false positive.
      Record(false, L::MALICIOUS, 0.5, 0.5),
      // Benign, inconclusive: flagged, and an error.
      Record(false, L::ERROR, 0, -3),
  };
  const EvalReport r = Evaluate(records);
  EXPECT_EQ(r.overall.tp, 2u);
  EXPECT_EQ(r.overall.fn, 1u);
  EXPECT_EQ(r.overall.fp, 2u);
  EXPECT_EQ(r.overall.tn, 2u);
  EXPECT_EQ(r.overall.errors, 1u);
  EXPECT_DOUBLE_EQ(r.overall.recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.overall.fpr, 0.5);
  EXPECT_DOUBLE_EQ(r.overall.precision, 0.5);
  EXPECT_DOUBLE_EQ(r.overall.f1, 2.0 * 2 / (2 * 2 + 2 + 1));
  EXPECT_EQ(r.ocsvm_alone.tp, 1u);
  EXPECT_EQ(r.ocsvm_alone.fp, 2u);  // the false positive and the error
  ASSERT_EQ(r.per_technique.size(), 2u);
  EXPECT_DOUBLE_EQ(r.per_technique.at("exec-plain").recall, 0.5);
  EXPECT_EQ(r.per_technique.at("exec-plain").negatives, 4u);
  EXPECT_EQ(r.per_cluster.at("c").positives, 3u);
  EXPECT_EQ(r.per_routed_cluster.count("routed-c"), 1u);
  const std::string text = FormatEvalReport(r);
  EXPECT_THAT(text,
              HasSubstr("| OCSVM + capabilities | 7 | 66.67% | 50.00% |"));
  EXPECT_THAT(text, HasSubstr("Per technique"));
}

TEST(EvaluationTest, StandardAblationsDeriveFromTheBase) {
  TrainOptions base;
  base.calibration.target_fpr = 0.01;
  const std::vector<Ablation> a = StandardAblations(base);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0].name, "full");
  EXPECT_EQ(a[1].options.families, FamilySet::SyscallOnly());
  EXPECT_EQ(a[2].options.families, FamilySet::StaticOnly());
  EXPECT_FALSE(a[3].options.cluster);
  for (const Ablation& x : a) {
    EXPECT_DOUBLE_EQ(x.options.calibration.target_fpr, 0.01) << x.name;
  }
}

}  // namespace
}  // namespace dynahug::features

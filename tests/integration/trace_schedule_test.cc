// `dynahug trace` content does not depend on what its worker traced before
// (issue 9): by default every worker zygote imports the allowlisted
// libraries first (TraceWorkerOptions::prewarm, as for scan, train and
// eval), so a .npy file traced alone and traced after a torch file give the
// same events. The control: with --no-prewarm they differ (the torch file's
// imports change the .npy load's events), so the comparison can fail.
// The zygote also pre-imports the submodules a file's globals name
// (runtime/trace/preimport_policy.h): a scikit-learn pickle traced after
// other scikit-learn pickles (whose submodules are then already imported)
// gives the same events as traced alone.
// Inputs are written (never loaded) by plain Python.
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"
#include "tests/security_test_util.h"

namespace dynahug::integration {
namespace {

// Event kinds and names of a trace (what a zygote's import history changes).
std::multiset<std::string> Shape(const proto::Trace& t) {
  std::multiset<std::string> shape;
  for (const proto::Event& e : t.events()) {
    if (e.kind() == proto::Event::LOG) continue;  // carries load_ms
    shape.insert(proto::Event::Kind_Name(e.kind()) + " " + e.name());
  }
  return shape;
}

// The last trace of `dynahug trace --format json --jobs 1 [extra] files...`.
proto::Trace LastTrace(std::vector<std::string> extra,
                       const std::vector<std::string>& files) {
  extra.insert(extra.begin(), {"--jobs", "1"});
  absl::StatusOr<TraceRun> run = TraceFiles(DYNAHUG_BIN, extra, files);
  EXPECT_TRUE(run.ok()) << run.status();
  if (!run.ok()) return {};
  EXPECT_EQ(run->exit_code, 0) << run->err;
  return run->traces.back();
}

TEST(TraceScheduleTest, TraceDoesNotDependOnWhatTheWorkerTracedBefore) {
  if (geteuid() != 0) {
    DYNAHUG_SECURITY_SKIP("needs root (namespaces, seccomp supervision)");
  }
  const std::string dir =
      absl::StrCat(DYNAHUG_TEST_DATA_DIR, "/trace-schedule-", getpid());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(std::filesystem::create_directories(dir));
  const std::string pt = dir + "/model.pt", npy = dir + "/array.npy";
  absl::StatusOr<CommandResult> made = RunCommand(
      {"/usr/bin/python3", "-c",
       "import sys, numpy, torch\n"
       "torch.save({'w': torch.zeros(3)}, sys.argv[1])\n"
       "numpy.save(sys.argv[2], numpy.array([{'a': 1}], dtype=object),\n"
       "           allow_pickle=True)\n",
       pt, npy});
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_EQ(made->exit_code, 0) << made->err;

  const proto::Trace alone = LastTrace({}, {npy});
  const proto::Trace after_torch = LastTrace({}, {pt, npy});
  EXPECT_EQ(alone.loaded_type(), "numpy.ndarray");
  EXPECT_EQ(Shape(alone), Shape(after_torch));
  EXPECT_EQ(alone.loaded_digest(), after_torch.loaded_digest());
  // Control: lazily warmed workers differ.
  const proto::Trace lazy_alone = LastTrace({"--no-prewarm"}, {npy});
  const proto::Trace lazy_after_torch = LastTrace({"--no-prewarm"}, {pt, npy});
  EXPECT_NE(Shape(lazy_alone), Shape(lazy_after_torch));
  std::filesystem::remove_all(dir);
}

TEST(TraceScheduleTest, SubmodulesPreimportedForEarlierFilesChangeNothing) {
  if (geteuid() != 0) {
    DYNAHUG_SECURITY_SKIP("needs root (namespaces, seccomp supervision)");
  }
  const std::string dir =
      absl::StrCat(DYNAHUG_TEST_DATA_DIR, "/trace-schedule-sk-", getpid());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(std::filesystem::create_directories(dir));
  const std::string pipe = dir + "/pipeline.pkl", forest = dir + "/forest.pkl",
                    logreg = dir + "/logreg.pkl";
  absl::StatusOr<CommandResult> made = RunCommand(
      {"/usr/bin/python3", "-c",
       "import sys, pickle, numpy\n"
       "from sklearn.pipeline import make_pipeline\n"
       "from sklearn.preprocessing import StandardScaler\n"
       "from sklearn.svm import SVC\n"
       "from sklearn.ensemble import RandomForestClassifier\n"
       "from sklearn.linear_model import LogisticRegression\n"
       "x = numpy.random.default_rng(0).normal(size=(40, 3))\n"
       "y = (x[:, 0] > 0).astype(int)\n"
       "for path, m in ((sys.argv[1], make_pipeline(StandardScaler(), SVC())),\n"
       "                (sys.argv[2], RandomForestClassifier(n_estimators=3)),\n"
       "                (sys.argv[3], LogisticRegression())):\n"
       "    pickle.dump(m.fit(x, y), open(path, 'wb'))\n",
       pipe, forest, logreg});
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_EQ(made->exit_code, 0) << made->err;

  const proto::Trace alone = LastTrace({}, {logreg});
  const proto::Trace after = LastTrace({}, {pipe, forest, logreg});
  EXPECT_EQ(alone.loaded_type(),
            "sklearn.linear_model._logistic.LogisticRegression");
  EXPECT_EQ(Shape(alone), Shape(after));
  EXPECT_EQ(alone.loaded_digest(), after.loaded_digest());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dynahug::integration

// Tests of runtime/trace/preimport_policy (which submodules the zygote may
// import ahead of a fork) and of TraceRunner::Warm applying it in a real
// interpreter: a file cannot make the zygote import anything outside it.
#include "runtime/trace/preimport_policy.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/trace/trace_runner.h"

namespace dynahug::runtime {
namespace {

namespace fs = std::filesystem;

// A protocol-2 pickle of one GLOBAL per module ("<module> x", popped).
AnalyzedFile FileNaming(const std::vector<std::string>& modules) {
  std::string pickle = "\x80\x02";
  for (const std::string& m : modules) pickle += "c" + m + "\nx\n0";
  pickle += "N.";
  absl::StatusOr<AnalyzedFile> file = AnalyzeBytes(
      {reinterpret_cast<const uint8_t*>(pickle.data()), pickle.size()}, "t");
  EXPECT_TRUE(file.ok()) << file.status();
  return std::move(*file);
}

TEST(PreimportPolicyTest, ModuleNames) {
  for (const char* ok : {"sklearn.linear_model._logistic",
                         "numpy.core.multiarray", "a", "_priv.x9"}) {
    EXPECT_TRUE(IsVettedModuleName(ok)) << ok;
  }
  for (const char* bad :
       {"",
        "sklearn.tests.test_base",
        "sklearn.utils._testing",
        "sklearn.Test",
        "scipy.stats._hypotests",
        "pkg.benchmarks.x",
        "pkg.__main__",
        "pkg.__init__",
        "pkg.conftest",
        "numpy.distutils.setup",
        "sklearn.experimental.enable_halving_search_cv",
        "pkg.examples",
        "a..b",
        ".a",
        "a.",
        "a.b-c",
        "a.b c",
        "1abc",
        "a/b",
        "a.b\nc",
        "sklearn.\xc5\x9d",
        "a.b.c.d.e.f.g.h.i",
        "a."
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}) {
    EXPECT_FALSE(IsVettedModuleName(bad)) << bad;
  }
}

class PreimportTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("preimport_tree_" + std::to_string(getpid()));
    fs::remove_all(root_);
    const fs::path pkg = root_ / "pkg";
    for (const char* dir : {"pkg/sub", "pkg/nopkg", "pkg/tests", "outside"}) {
      fs::create_directories(root_ / dir);
    }
    for (const char* file :
         {"pkg/__init__.py", "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/b.py",
          "pkg/ext.cpython-311-x86_64-linux-gnu.so", "pkg/plain.so",
          "pkg/nopkg/c.py", "pkg/tests/__init__.py", "pkg/tests/t.py",
          "outside/evil.py", "pkg/weird.x.y.so"}) {
      std::ofstream(root_ / file) << "\n";
    }
    fs::create_symlink(root_ / "outside/evil.py", pkg / "link.py");
    fs::create_directory(pkg / "dir_only");  // no __init__.py, no .py
    dir_ = pkg.string();
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_;
  std::string dir_;
};

TEST_F(PreimportTreeTest, OnlyModulesOnDiskUnderThePackage) {
  for (const char* ok :
       {"pkg.a", "pkg.sub", "pkg.sub.b", "pkg.ext", "pkg.plain"}) {
    EXPECT_TRUE(ModuleExistsUnder(dir_, ok)) << ok;
  }
  for (const char* bad : {"pkg", "pkg.missing", "pkg.nopkg.c", "pkg.nopkg",
                          "pkg.tests.t", "pkg.link", "pkg.dir_only",
                          "pkg.weird", "pkg.sub.missing", "pkg.a.b"}) {
    EXPECT_FALSE(ModuleExistsUnder(dir_, bad)) << bad;
  }
  EXPECT_FALSE(ModuleExistsUnder(root_ / "nonexistent" / "pkg", "pkg.a"));
}

TEST_F(PreimportTreeTest, SubmodulesNamedByTheFileParentsFirst) {
  const AnalyzedFile file =
      FileNaming({"pkg.sub.b", "os", "pkg.a", "pkg.tests.t", "pkg.missing",
                  "other.a", "pkg.link", "pkg.sub.b", "pkg"});
  const std::vector<std::string> got =
      SubmodulesToPreimport(file, {{"pkg", dir_}});
  EXPECT_EQ(got, (std::vector<std::string>{"pkg.sub", "pkg.sub.b", "pkg.a"}));
  // Without the package's directory (not allowlisted/imported): nothing.
  EXPECT_TRUE(SubmodulesToPreimport(file, {}).empty());
}

TEST_F(PreimportTreeTest, AtMostAFixedNumberPerFile) {
  std::vector<std::string> modules;
  for (size_t i = 0; i < kMaxPreimportPerFile + 10; ++i) {
    const std::string name = "m" + std::to_string(i);
    std::ofstream(fs::path(dir_) / (name + ".py")) << "\n";
    modules.push_back("pkg." + name);
  }
  EXPECT_EQ(SubmodulesToPreimport(FileNaming(modules), {{"pkg", dir_}}).size(),
            kMaxPreimportPerFile);
}

// The zygote, for real: Warm imports what the policy allows for the file's
// globals, and nothing else the file names.
TEST(PreimportZygoteTest, AFileCannotImportOutsideThePolicy) {
  TraceRunnerOptions options;
  options.preimport_allowlist = {"sklearn"};
  absl::StatusOr<TraceRunner> runner = TraceRunner::Create(options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const std::vector<std::string> outside = {
      "sklearn.tests.test_base",
      "sklearn.utils._testing",
      "sklearn.experimental.enable_halving_search_cv",
      "xml.dom.minidom",
      "pandas",
      "sklearn.datasets.tests",
      "http.server"};
  auto in_sys_modules = [&](const std::string& m) {
    absl::StatusOr<std::string> r = runner->interpreter().Eval(
        "__import__('sys').modules.get('" + m + "') is not None");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r == "True";
  };
  for (const std::string& m : outside) {
    ASSERT_FALSE(in_sys_modules(m)) << m << " imported before the test";
  }
  ASSERT_FALSE(in_sys_modules("sklearn.svm._classes"));
  std::vector<std::string> named = outside;
  named.push_back("sklearn.svm._classes");
  TraceOptions trace_options;
  trace_options.load.loader = "pickle.load";
  ASSERT_TRUE(runner->Warm(FileNaming(named), trace_options).ok());
  EXPECT_TRUE(in_sys_modules("sklearn"));
  EXPECT_TRUE(in_sys_modules("sklearn.svm._classes"));
  EXPECT_TRUE(runner->imported().count("sklearn.svm._classes"));
  for (const std::string& m : outside) {
    EXPECT_FALSE(in_sys_modules(m)) << m << " was imported in the zygote";
    EXPECT_FALSE(runner->imported().count(m)) << m;
  }
}

}  // namespace
}  // namespace dynahug::runtime

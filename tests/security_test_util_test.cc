#include "tests/security_test_util.h"

#include <cstdlib>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace dynahug::test_util {
namespace {

using ::testing::HasSubstr;
using ::testing::TestPartResult;
using ::testing::TestPartResultArray;

TEST(IsCiValueTest, TrueAndOneMarkACiRunWhateverTheCase) {
  EXPECT_TRUE(IsCiValue("true"));
  EXPECT_TRUE(IsCiValue("TRUE"));
  EXPECT_TRUE(IsCiValue("True"));
  EXPECT_TRUE(IsCiValue("1"));
}

TEST(IsCiValueTest, UnsetEmptyAndOtherValuesDoNot) {
  EXPECT_FALSE(IsCiValue(nullptr));
  EXPECT_FALSE(IsCiValue(""));
  EXPECT_FALSE(IsCiValue("false"));
  EXPECT_FALSE(IsCiValue("0"));
  EXPECT_FALSE(IsCiValue("yes"));
  EXPECT_FALSE(IsCiValue("truex"));
  EXPECT_FALSE(IsCiValue("tru"));
}

// Sets $CI (or unsets it for nullopt) for one scope, restoring the old value.
class ScopedCi {
 public:
  explicit ScopedCi(std::optional<std::string> value) {
    if (const char* old = std::getenv("CI")) old_ = old;
    if (value) {
      setenv("CI", value->c_str(), 1);
    } else {
      unsetenv("CI");
    }
  }
  ~ScopedCi() {
    if (old_) {
      setenv("CI", old_->c_str(), 1);
    } else {
      unsetenv("CI");
    }
  }

 private:
  std::optional<std::string> old_;
};

// Runs the macro the way a test does, followed by a statement it must skip.
void SkipBecauseNoPidfd(bool* reached_end) {
  *reached_end = false;
  DYNAHUG_SECURITY_SKIP("needs pidfd_open");
  *reached_end = true;
}

// The results the macro reports, intercepted so they do not affect this test.
void RunSkip(TestPartResultArray* results, bool* reached_end) {
  ::testing::ScopedFakeTestPartResultReporter reporter(
      ::testing::ScopedFakeTestPartResultReporter::
          INTERCEPT_ONLY_CURRENT_THREAD,
      results);
  SkipBecauseNoPidfd(reached_end);
}

TEST(SecuritySkipTest, OutsideCiIsASkipNamingThePrecondition) {
  ScopedCi ci(std::nullopt);
  bool reached_end = true;
  TestPartResultArray results;
  RunSkip(&results, &reached_end);
  ASSERT_EQ(results.size(), 1);
  EXPECT_EQ(results.GetTestPartResult(0).type(), TestPartResult::kSkip);
  EXPECT_THAT(results.GetTestPartResult(0).message(),
              HasSubstr("needs pidfd_open"));
  EXPECT_FALSE(reached_end);
}

TEST(SecuritySkipTest, WithCiFalseIsStillASkip) {
  ScopedCi ci("false");
  bool reached_end = true;
  TestPartResultArray results;
  RunSkip(&results, &reached_end);
  ASSERT_EQ(results.size(), 1);
  EXPECT_EQ(results.GetTestPartResult(0).type(), TestPartResult::kSkip);
}

TEST(SecuritySkipTest, InCiIsAFatalFailureNamingThePrecondition) {
  for (const char* value : {"true", "1", "TRUE"}) {
    SCOPED_TRACE(value);
    ScopedCi ci(value);
    bool reached_end = true;
    TestPartResultArray results;
    RunSkip(&results, &reached_end);
    ASSERT_EQ(results.size(), 1);
    EXPECT_EQ(results.GetTestPartResult(0).type(),
              TestPartResult::kFatalFailure);
    EXPECT_THAT(results.GetTestPartResult(0).message(),
                HasSubstr("needs pidfd_open"));
    EXPECT_THAT(results.GetTestPartResult(0).message(), HasSubstr("CI"));
    EXPECT_FALSE(reached_end);
  }
}

}  // namespace
}  // namespace dynahug::test_util

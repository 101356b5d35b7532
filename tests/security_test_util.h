// Skipping a security test without hiding it in CI.
//
// A security test that cannot run here (not root, no pidfd, no seccomp user
// notification, no Landlock, a port it needs is taken) skips with
// DYNAHUG_SECURITY_SKIP(reason). On a developer machine that is a GTEST_SKIP;
// when the environment variable CI is "true" or "1" (case-insensitive, as set
// by .ci/run and common CI services) it is a fatal FAIL, so a CI run can never
// pass a sandbox guarantee it did not check.
//
// Usage, in a TEST body, a fixture's SetUp or any function returning void:
//   if (!SandboxAvailable()) {
//     DYNAHUG_SECURITY_SKIP("needs root, seccomp user notification and pidfd");
//   }
// `reason` names the missing precondition; it may be anything that streams
// into a gtest message (a string literal, std::string, absl::Status...).
// Like GTEST_SKIP and FAIL, the macro returns from the current function.
#ifndef DYNAHUG_TESTS_SECURITY_TEST_UTIL_H_
#define DYNAHUG_TESTS_SECURITY_TEST_UTIL_H_

#include <cstdlib>
#include <string_view>

#include "gtest/gtest.h"

namespace dynahug::test_util {

// True when `ci_value` (the value of $CI, or nullptr when unset) marks a CI
// run: "true" or "1", case-insensitive. Pure; see SecuritySkipIsFailure.
inline bool IsCiValue(const char* ci_value) {
  if (ci_value == nullptr) return false;
  std::string_view v(ci_value);
  if (v == "1") return true;
  constexpr std::string_view kTrue = "true";
  if (v.size() != kTrue.size()) return false;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kTrue[i]) return false;
  }
  return true;
}

// True when a skipped security test must fail instead: $CI marks a CI run.
// Reads the environment on every call (not thread-safe against setenv).
inline bool SecuritySkipIsFailure() { return IsCiValue(std::getenv("CI")); }

}  // namespace dynahug::test_util

#define DYNAHUG_SECURITY_SKIP(reason)                                         \
  do {                                                                        \
    if (::dynahug::test_util::SecuritySkipIsFailure()) {                      \
      FAIL() << "security test cannot run in CI (CI is set, so this is a "    \
                "failure, not a skip): missing precondition: "                \
             << reason;                                                       \
    }                                                                         \
    GTEST_SKIP() << "security test skipped: missing precondition: " << reason \
                 << " (with CI=true this fails)";                             \
  } while (0)

#endif  // DYNAHUG_TESTS_SECURITY_TEST_UTIL_H_

// Sleepy-Pickle-style tampering with library classes and functions (issue 9):
// pickles that rebind a method of an allowlisted library's class or swap a
// library function's code, to a harmless function of the same library, are
// traced by the real `dynahug trace` together with benign torch files that
// the test saves itself (torch.save of a module and of a state dict; nothing
// is loaded outside the sandbox). Each payload must leave an INTEGRITY
// finding naming the class or function and the attribute, judged
// "namespace-tamper" by the capability rules (features/capabilities.h);
// the benign files must leave none.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "features/capabilities.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"
#include "tests/security_test_util.h"

namespace dynahug::integration {
namespace {

// Protocol-0 pieces: a global, and a call of builtins.getattr/setattr.
std::string Global(const std::string& module, const std::string& name) {
  return absl::StrCat("c", module, "\n", name, "\n");
}
std::string GetAttr(const std::string& object, const std::string& attr) {
  return absl::StrCat(Global("builtins", "getattr"), "(", object, "V", attr,
                      "\ntR");
}
std::string SetAttrPickle(const std::string& object, const std::string& attr,
                          const std::string& value) {
  return absl::StrCat(Global("builtins", "setattr"), "(", object, "V", attr,
                      "\n", value, "tR.");
}

struct Payload {
  const char* file;
  std::string pickle;
  const char* finding;
  const char* subject_key;  // "class" or "function"
  const char* subject;
  const char* attr;
};

std::vector<Payload> Payloads() {
  const std::string linear = Global("torch.nn.modules.linear", "Linear");
  const std::string identity = Global("torch.nn.modules.linear", "Identity");
  const std::string validation = "sklearn.utils.validation";
  return {
      // torch.nn.Linear.forward = torch.nn.Identity.forward
      {"linear_forward.pkl",
       SetAttrPickle(linear, "forward", GetAttr(identity, "forward")),
       "class.attr.rebound", "class", "torch.nn.modules.linear.Linear",
       "forward"},
      // BaseEstimator.set_params = BaseEstimator.get_params (sklearn)
      {"sklearn_set_params.pkl",
       SetAttrPickle(Global("sklearn.base", "BaseEstimator"), "set_params",
                     GetAttr(Global("sklearn.base", "BaseEstimator"),
                             "get_params")),
       "class.attr.rebound", "class", "sklearn.base.BaseEstimator",
       "set_params"},
      // check_array.__code__ = check_is_fitted.__code__ (sklearn)
      {"sklearn_code.pkl",
       SetAttrPickle(Global(validation, "check_array"), "__code__",
                     GetAttr(Global(validation, "check_is_fitted"),
                             "__code__")),
       "function.attr.rebound", "function",
       "sklearn.utils.validation.check_array", "__code__"},
  };
}

bool IsLibraryFinding(const proto::Event& e) {
  return e.kind() == proto::Event::INTEGRITY &&
         (e.name().starts_with("class.") || e.name().starts_with("function."));
}

TEST(LibraryTamperTest, RebindingsAreNamedFindingsAndBenignModelsHaveNone) {
  if (geteuid() != 0) {
    DYNAHUG_SECURITY_SKIP("needs root (namespaces, seccomp supervision)");
  }
  const std::string dir = absl::StrCat(DYNAHUG_TEST_DATA_DIR,
                                       "/library-tamper-", getpid());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(std::filesystem::create_directories(dir));
  const std::vector<Payload> payloads = Payloads();
  std::vector<std::string> files;
  for (const Payload& p : payloads) {
    const std::string path = dir + "/" + p.file;
    std::ofstream(path, std::ios::binary) << p.pickle;
    files.push_back(path);
  }
  // Benign torch files, written (never loaded) by plain Python.
  const std::string module_pt = dir + "/benign_module.pt";
  const std::string state_pt = dir + "/benign_state.pt";
  absl::StatusOr<CommandResult> made = RunCommand(
      {"/usr/bin/python3", "-c",
       "import sys, torch\n"
       "torch.manual_seed(0)\n"
       "m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(),\n"
       "                        torch.nn.Linear(3, 1))\n"
       "torch.save(m, sys.argv[1])\n"
       "torch.save(m.state_dict(), sys.argv[2])\n",
       module_pt, state_pt});
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_EQ(made->exit_code, 0) << made->err;
  files.push_back(module_pt);
  files.push_back(state_pt);

  absl::StatusOr<TraceRun> run =
      TraceFiles(DYNAHUG_BIN, {"--jobs", "1"}, files);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  const std::vector<proto::Trace>& traces = run->traces;
  ASSERT_EQ(traces.size(), payloads.size() + 2);

  for (size_t i = 0; i < payloads.size(); ++i) {
    const Payload& p = payloads[i];
    const proto::Trace& t = traces[i];
    SCOPED_TRACE(p.file);
    EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << DescribeEvents(t);
    int finding = -1;
    for (int j = 0; j < t.events_size(); ++j) {
      const proto::Event& e = t.events(j);
      if (e.kind() == proto::Event::INTEGRITY && e.name() == p.finding &&
          ArgValue(e, p.subject_key) == p.subject &&
          ArgValue(e, "attr") == p.attr) {
        finding = j;
      }
    }
    ASSERT_GE(finding, 0) << "no " << p.finding << " " << p.subject << "."
                          << p.attr << "\n"
                          << DescribeEvents(t, 200);
    EXPECT_FALSE(ArgValue(t.events(finding), "new").empty());
    // The finding itself (not only the setattr call) proves tampering.
    const std::vector<int> tamper = features::FindCapabilityEvents(
        t, features::Capability::kNamespaceTamper);
    EXPECT_NE(std::find(tamper.begin(), tamper.end(), finding), tamper.end())
        << "the finding is not judged namespace-tamper";
  }
  for (size_t i = payloads.size(); i < traces.size(); ++i) {
    const proto::Trace& t = traces[i];
    SCOPED_TRACE(t.file().path());
    EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << DescribeEvents(t);
    EXPECT_NE(t.loaded_type(), "");
    for (const proto::Event& e : t.events()) {
      EXPECT_FALSE(IsLibraryFinding(e)) << DescribeEvent(e);
    }
    EXPECT_TRUE(features::FindCapabilityEvents(
                    t, features::Capability::kNamespaceTamper)
                    .empty())
        << DescribeEvents(t);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dynahug::integration

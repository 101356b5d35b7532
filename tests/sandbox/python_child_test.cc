// Composition test: the sandbox around an embedded CPython, the way the
// zygote will use it. The parent builds malicious pickles (pickling runs no
// payload), and only sandboxed children unpickle them. Each payload is a
// harmless probe (run /bin/true, connect to 127.0.0.1:9, write under
// /tmp/dynahug_pwned/); the test checks it was denied and recorded and that
// nothing happened on the host.
#include <Python.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sandbox/child_launcher.h"
#include "tests/security_test_util.h"

namespace dynahug::sandbox {
namespace {

class PythonEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { Py_Initialize(); }
};
const auto* const kPython =
    ::testing::AddGlobalTestEnvironment(new PythonEnvironment);

struct PayloadCase {
  const char* label;
  // Python source defining `obj`; the test pickles it in the parent into
  // `_payload` (pickling does not run __reduce__'s callable).
  const char* definition;
  ChildStatus status;
  // Syscall that must have been denied at least once ("" for none).
  const char* denied_syscall;
};

class PythonPayloadTest : public ::testing::TestWithParam<PayloadCase> {
 protected:
  void SetUp() override {
    const SandboxSupport s = ProbeSandboxSupport();
    if (!s.root || !s.user_notification || !s.pidfd) {
      DYNAHUG_SECURITY_SKIP(
          "the sandbox needs root, seccomp user notification and pidfd");
    }
  }
};

TEST_P(PythonPayloadTest, DeniedRecordedAndHarmless) {
  const PayloadCase& c = GetParam();
  mkdir("/tmp/dynahug_pwned", 0777);
  const std::string marker =
      absl::StrCat("/tmp/dynahug_pwned/python_child_test_", getpid());
  unlink(marker.c_str());
  const std::string prepare = absl::StrCat(
      "import os, pickle, socket, subprocess\n"
      "MARKER = '", marker, "'\n", c.definition,
      "\n_payload = pickle.dumps(obj)\n");
  ASSERT_EQ(PyRun_SimpleString(prepare.c_str()), 0) << c.label;

  Policy policy;
  PyOS_BeforeFork();
  absl::StatusOr<ChildResult> r = RunSandboxed(policy, [](ChildContext&) {
    PyOS_AfterFork_Child();
    return PyRun_SimpleString("pickle.loads(_payload)") == 0 ? 0 : 1;
  });
  PyOS_AfterFork_Parent();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, c.status) << c.label << ": " << r->reason;
  uint64_t denied_total = 0;
  uint64_t denied_named = 0;
  for (const SyscallCount& s : r->syscalls) {
    denied_total += s.denied;
    if (s.name == c.denied_syscall) denied_named += s.denied;
  }
  if (std::string(c.denied_syscall).empty()) {
    EXPECT_EQ(denied_total, 0u) << c.label;
  } else {
    EXPECT_GE(denied_named, 1u) << c.label << ": " << c.denied_syscall;
  }
  struct stat st;
  EXPECT_NE(stat(marker.c_str(), &st), 0) << "sandbox escape: " << marker;
}

// Payloads that need no module other than the stdlib.
constexpr char kOsSystem[] =
    "class P:\n"
    "  def __reduce__(self):\n"
    "    return (os.system, ('/bin/true > ' + MARKER,))\n"
    "obj = P()";
constexpr char kSubprocess[] =
    "class P:\n"
    "  def __reduce__(self):\n"
    "    return (subprocess.run, (['/bin/true'],))\n"
    "obj = P()";
constexpr char kConnect[] =
    "class P:\n"
    "  def __reduce__(self):\n"
    "    return (socket.create_connection, (('127.0.0.1', 9),))\n"
    "obj = P()";
constexpr char kWrite[] =
    "class P:\n"
    "  def __reduce__(self):\n"
    "    return (open, (MARKER, 'w'))\n"
    "obj = P()";

const PayloadCase kPayloads[] = {
    {"benign", "obj = {'weight': [1.0, 2.0], 'n': 3}", ChildStatus::kOk, ""},
    // system() cannot spawn the shell; the load itself goes on.
    {"os_system", kOsSystem, ChildStatus::kOk, "clone"},
    {"subprocess", kSubprocess, ChildStatus::kLoadFailed, "clone"},
    {"socket_connect", kConnect, ChildStatus::kLoadFailed, "socket"},
    // Landlock denies the open with EACCES: no syscall is denied by seccomp.
    {"write_outside_scratch", kWrite, ChildStatus::kLoadFailed, ""},
};

INSTANTIATE_TEST_SUITE_P(
    Payloads, PythonPayloadTest, ::testing::ValuesIn(kPayloads),
    [](const ::testing::TestParamInfo<PayloadCase>& info) {
      return std::string(info.param.label);
    });

}  // namespace
}  // namespace dynahug::sandbox

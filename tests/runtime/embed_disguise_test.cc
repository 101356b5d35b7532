// Sandbox detection from Python (issue 7, item 8): what a payload sees of
// the interpreter during a load must match an ordinary `python3` process on
// the cheap checks (flags, site, profile/trace functions, argv), while the
// loader's observers keep recording.
//
// Differential: one probe runs inside a load (a benign pickle that calls
// exec on the probe and reports through a private audit event) and in a
// plain `/usr/bin/python3 -c` process; its lines must be equal.
#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "hooks/event_sink.h"
#include "runtime/embed/loader.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::runtime {
namespace {

using dynahug::testing::RunCommand;
using dynahug::testing::SharedInterpreter;
using proto::Event;

// One "name=value" line per check. Written without backslashes or quotes of
// the shell's kind so it embeds in a pickle and in `python3 -c '...'`.
constexpr char kProbe[] =
    "import sys, threading, builtins\n"
    "lines = ['isolated=%d' % sys.flags.isolated,\n"
    "         'ignore_environment=%d' % sys.flags.ignore_environment,\n"
    "         'no_user_site=%d' % sys.flags.no_user_site,\n"
    "         'no_site=%d' % sys.flags.no_site,\n"
    "         'site=%s' % ('site' in sys.modules),\n"
    "         'getprofile=%r' % (sys.getprofile(),),\n"
    "         'gettrace=%r' % (sys.gettrace(),),\n"
    "         'threading.getprofile=%r' % (threading.getprofile(),),\n"
    "         'threading.gettrace=%r' % (threading.gettrace(),),\n"
    "         'exit=%s' % hasattr(builtins, 'exit'),\n"
    "         'help=%s' % hasattr(builtins, 'help')]\n";

std::string ExecPickle(const std::string& source) {
  std::string escaped;
  for (char c : source)
    escaped += c == '\n' ? std::string("\\u000a") : std::string(1, c);
  return "cbuiltins\nexec\n(V" + escaped + "\ntR.";
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out = absl::StrSplit(s, '\n', absl::SkipEmpty());
  return out;
}

// Probe lines inside a load (pickle.load of a payload in this process's
// interpreter, created with the default, disguised options), and whether
// the profiler recorded the payload's calls meanwhile.
std::vector<std::string> ProbeInsideLoad(bool* profiled) {
  // As in a zygote that imported torch: threading is loaded before the load.
  EXPECT_TRUE(SharedInterpreter().Exec("import threading").ok());
  char tmpl[] = "/tmp/dynahug-disguise-XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/probe.pkl";
  {
    std::ofstream f(path, std::ios::binary);
    f << ExecPickle(std::string(kProbe) +
                    "sys.audit('dynahug.test.probe', chr(10).join(lines))\n"
                    "import posixpath\nposixpath.join('a', 'b')\n");
  }
  absl::StatusOr<Loader> loader = Loader::Create(SharedInterpreter());
  EXPECT_TRUE(loader.ok()) << loader.status();
  hooks::MemoryEventSink sink;
  LoadOptions options;
  options.loader = "pickle.load";
  options.audit_limits.max_value_bytes = 4096;
  absl::StatusOr<LoadResult> r = loader->Load(path, options, sink);
  EXPECT_TRUE(r.ok()) << r.status();
  RunCommand(std::string("rm -rf '") + tmpl + "'", nullptr);
  std::string lines;
  *profiled = false;
  for (const Event& e : sink.events()) {
    if (e.kind() == Event::AUDIT && e.name() == "dynahug.test.probe" &&
        e.args_size() > 0) {
      lines = e.args(0).value();
    }
    *profiled |= e.kind() == Event::PYTHON_CALL && e.name() == "posixpath.join";
  }
  // The audit hook renders a str argument as "str:<value>" or as is.
  if (lines.rfind("str:", 0) == 0) lines = lines.substr(4);
  return Split(lines);
}

std::vector<std::string> ProbeInPlainPython() {
  std::string out;
  const int rc = RunCommand(std::string(DYNAHUG_PYTHON " -c \"") + kProbe +
                                "print(chr(10).join(lines))\"",
                            &out);
  EXPECT_EQ(rc, 0) << out;
  return Split(out);
}

TEST(EmbedDisguiseTest, PayloadSeesWhatPlainPython3Shows) {
  bool profiled = false;
  std::vector<std::string> inside = ProbeInsideLoad(&profiled);
  std::vector<std::string> plain = ProbeInPlainPython();
  ASSERT_EQ(plain.size(), 11u);
  EXPECT_EQ(inside, plain);
  // ...while the C profiler still recorded the payload's calls.
  EXPECT_TRUE(profiled);
}

TEST(EmbedDisguiseTest, ArgvNamesNoToolAndIsolationStillHolds) {
  SharedInterpreter();
  absl::StatusOr<std::string> argv =
      SharedInterpreter().Eval("repr(__import__('sys').argv)");
  ASSERT_TRUE(argv.ok());
  EXPECT_EQ(*argv, "['']");
  // The disguise is sys.flags only: no user site directory was added and
  // site.main() did not run (sys.path is exactly the configured list).
  absl::StatusOr<std::string> path =
      SharedInterpreter().Eval("repr(__import__('sys').path)");
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(*path,
            "['/usr/lib/python3.11', '/usr/lib/python3.11/lib-dynload', "
            "'/usr/lib/python3/dist-packages']");
  absl::StatusOr<std::string> user =
      SharedInterpreter().Eval("__import__('site').ENABLE_USER_SITE");
  ASSERT_TRUE(user.ok());
  EXPECT_NE(*user, "True");
}

}  // namespace
}  // namespace dynahug::runtime

// End-to-end tests of `dynahug disasm`: the real binary on generated good and
// bad inputs. Bad input must end in a clear error naming the file (and the
// member and offset where there is one) and exit code 2, never a crash.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dynahug {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `command` through the shell, capturing stdout and stderr in files
// unique to this process (tests run in parallel under ctest -j).
CommandResult RunShell(const std::string& command) {
  char dir_template[] = "/tmp/dynahug_cli_test.XXXXXX";
  const char* made = mkdtemp(dir_template);
  if (made == nullptr) return {};
  const fs::path dir = made;
  const fs::path out_path = dir / "stdout.txt";
  const fs::path err_path = dir / "stderr.txt";
  const std::string full = command + " >" + out_path.string() + " 2>" +
                           err_path.string();
  const int status = std::system(full.c_str());
  CommandResult result;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  fs::remove_all(dir);
  return result;
}

// Inputs come from the CTest fixture `cli_inputs` (gen_cli_inputs.py).
class DisasmCliTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(Dir() / "good_state_dict.pt"))
        << "fixture cli_inputs did not run: " << Dir();
  }

  static fs::path Dir() { return fs::path(DYNAHUG_TEST_DATA_DIR) / "cli"; }
  static std::string Input(const std::string& name) {
    return (Dir() / name).string();
  }
  static CommandResult Disasm(const std::string& args) {
    return RunShell(std::string(DYNAHUG_BIN) + " disasm " + args);
  }
};

TEST_F(DisasmCliTest, ListsTorchZipPickleAndGlobals) {
  const CommandResult r = Disasm(Input("good_state_dict.pt"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("torch-zip"));
  EXPECT_THAT(r.out, HasSubstr("archive/data.pkl"));
  EXPECT_THAT(r.out, HasSubstr("collections OrderedDict"));
  EXPECT_THAT(r.out, HasSubstr("torch._utils _rebuild_tensor_v2"));
  EXPECT_THAT(r.out, HasSubstr("STOP"));
  EXPECT_EQ(r.err, "");
}

TEST_F(DisasmCliTest, EveryProtocolDecodes) {
  for (int proto = 0; proto <= 5; ++proto) {
    const std::string name = "good_p" + std::to_string(proto) + ".pkl";
    const CommandResult r = Disasm(Input(name));
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("raw-pickle")) << name;
    EXPECT_THAT(r.out, HasSubstr("complete")) << name;
    EXPECT_THAT(r.out, Not(HasSubstr("INCOMPLETE"))) << name;
  }
}

TEST_F(DisasmCliTest, JsonOutputIsValidAndMatchesPickletools) {
  const std::string input = Input("good_p4.pkl");
  const CommandResult r = Disasm(input + " --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  char json_template[] = "/tmp/dynahug_cli_json.XXXXXX";
  const int fd = mkstemp(json_template);
  ASSERT_GE(fd, 0);
  close(fd);
  const fs::path json_path = json_template;
  std::ofstream(json_path) << r.out;
  // Python parses the JSON and compares the opcode listing with
  // pickletools.genops on the same file.
  const std::string check = std::string(DYNAHUG_PYTHON) + " -c '"
      "import json, pickletools, sys\n"
      "doc = json.load(open(sys.argv[1]))\n"
      "ops = doc[\"files\"][0][\"root\"][\"pickles\"][0][\"ops\"]\n"
      "ref = list(pickletools.genops(open(sys.argv[2], \"rb\").read()))\n"
      "assert len(ops) == len(ref), (len(ops), len(ref))\n"
      "for o, (op, arg, pos) in zip(ops, ref):\n"
      "    assert o[\"offset\"] == pos and o[\"opcode\"] == op.name, (o, op.name, pos)\n"
      "' " + json_path.string() + " " + input;
  EXPECT_EQ(std::system(check.c_str()), 0) << r.out.substr(0, 2000);
  fs::remove(json_path);
}

TEST_F(DisasmCliTest, DeepButValidNestingDecodes) {
  const CommandResult r = Disasm(Input("deep_lists.pkl"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("max stack depth 100000,"));
}

struct BadInputCase {
  std::string file;
  std::vector<std::string> expected_in_error;  // besides the file path
};

void PrintTo(const BadInputCase& c, std::ostream* os) { *os << c.file; }

class DisasmBadInputTest : public DisasmCliTest,
                           public testing::WithParamInterface<BadInputCase> {};

TEST_P(DisasmBadInputTest, ExitsTwoWithClearError) {
  const BadInputCase& c = GetParam();
  const std::string path = Input(c.file);
  for (const std::string format : {"text", "json"}) {
    const CommandResult r = Disasm(path + " --format " + format);
    EXPECT_EQ(r.signal, 0) << c.file << " crashed";
    EXPECT_EQ(r.exit_code, 2) << c.file << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(path)) << c.file;
    for (const std::string& part : c.expected_in_error) {
      EXPECT_THAT(r.err, HasSubstr(part)) << c.file;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DisasmBadInputTest,
    testing::Values(
        BadInputCase{"truncated.pkl", {"offset"}},
        BadInputCase{"truncated_zip.pt", {}},
        BadInputCase{"random.bin", {}},
        BadInputCase{"absurd_length.pkl", {"BINUNICODE8", "offset 2"}},
        BadInputCase{"unknown.png", {"unknown"}},
        BadInputCase{"empty.bin", {}},
        BadInputCase{"zip_bomb.zip", {"bomb/inner", "bomb:"}},
        BadInputCase{"deep_nesting.zip", {"level", "nesting deeper than 8"}},
        BadInputCase{"zip_with_truncated_member.zip",
                     {"model/data.pkl", "offset"}},
        BadInputCase{"does_not_exist.pkl", {}}),
    [](const testing::TestParamInfo<BadInputCase>& info) {
      std::string name = info.param.file;
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

TEST_F(DisasmCliTest, ErrorInOneFileDoesNotStopTheOthers) {
  const CommandResult r =
      Disasm(Input("truncated.pkl") + " " + Input("good_p2.pkl"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr(Input("good_p2.pkl")));
}

TEST_F(DisasmCliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Disasm("").exit_code, 2);
  EXPECT_EQ(Disasm("--format xml " + Input("good_p2.pkl")).exit_code, 2);
  EXPECT_EQ(Disasm("--bogus " + Input("good_p2.pkl")).exit_code, 2);
  EXPECT_EQ(Disasm(Input("good_p2.pkl") + " --max-depth").exit_code, 2);
  EXPECT_EQ(RunShell(std::string(DYNAHUG_BIN) + " frobnicate").exit_code, 2);
  const CommandResult help = RunShell(std::string(DYNAHUG_BIN) + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("disasm"));
}

}  // namespace
}  // namespace dynahug

// End-to-end tests of `dynahug disasm`: the real binary on generated good and
// bad inputs. Bad input must end in a clear error naming the file (and the
// member and offset where there is one) and exit code 2, never a crash.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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
  const std::string full =
      command + " >" + out_path.string() + " 2>" + err_path.string();
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

// One run of the binary with its resource use.
struct MeasuredRun {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  long max_rss_kb = 0;  // peak resident set of the child, KiB
  uint64_t out_bytes = 0;
  std::string err;
};

// Runs DYNAHUG_BIN with `args`, stdout to `out_path`, and measures the
// child's peak RSS with wait4(). Guard rails so that an unbounded binary
// fails the test instead of exhausting the machine: 2 GiB of address space
// and 256 MiB of output at most.
MeasuredRun RunMeasured(const std::vector<std::string>& args,
                        const fs::path& out_path) {
  const fs::path err_path = out_path.string() + ".err";
  std::vector<std::string> argv_strings = {DYNAHUG_BIN};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int out_fd =
        open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int err_fd =
        open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out_fd < 0 || err_fd < 0 || dup2(out_fd, 1) < 0 ||
        dup2(err_fd, 2) < 0) {
      _exit(127);
    }
    const rlimit as_limit{2UL << 30, 2UL << 30};
    const rlimit fsize_limit{256UL << 20, 256UL << 20};
    if (setrlimit(RLIMIT_AS, &as_limit) != 0 ||
        setrlimit(RLIMIT_FSIZE, &fsize_limit) != 0) {
      _exit(127);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  MeasuredRun result;
  if (pid < 0) return result;
  int status = 0;
  rusage usage{};
  if (wait4(pid, &status, 0, &usage) != pid) return result;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  result.max_rss_kb = usage.ru_maxrss;
  std::error_code ec;
  result.out_bytes = fs::file_size(out_path, ec);
  result.err = ReadFile(err_path);
  fs::remove(err_path, ec);
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
  const std::string check =
      std::string(DYNAHUG_PYTHON) +
      " -c '"
      "import json, pickletools, sys\n"
      "doc = json.load(open(sys.argv[1]))\n"
      "ops = doc[\"files\"][0][\"root\"][\"pickles\"][0][\"ops\"]\n"
      "ref = list(pickletools.genops(open(sys.argv[2], \"rb\").read()))\n"
      "assert len(ops) == len(ref), (len(ops), len(ref))\n"
      "for o, (op, arg, pos) in zip(ops, ref):\n"
      "    assert o[\"offset\"] == pos and o[\"opcode\"] == op.name, (o, "
      "op.name, pos)\n"
      "' " +
      json_path.string() + " " + input;
  EXPECT_EQ(std::system(check.c_str()), 0) << r.out.substr(0, 2000);
  fs::remove(json_path);
}

TEST_F(DisasmCliTest, DeepButValidNestingDecodes) {
  const CommandResult r = Disasm(Input("deep_lists.pkl"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("max stack depth 100000,"));
}

TEST_F(DisasmCliTest,
       HugeStreamIsListedUpToMaxOpcodesInBoundedOutputAndMemory) {
  // 10 MiB of EMPTY_LIST: unbounded, this was 1.1 GB of JSON at 3 GB RSS.
  char dir_template[] = "/tmp/dynahug_cli_huge.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const fs::path dir = dir_template;
  const fs::path input = dir / "empty_lists.pkl";
  const size_t n = 10 << 20;
  {
    std::ofstream f(input, std::ios::binary);
    f << "\x80\x04" << std::string(n, ']') << ".";
  }
  const uint64_t opcodes = n + 2;  // PROTO, n EMPTY_LIST, STOP
  const std::string omitted = std::to_string(opcodes - 100000);
  const struct {
    std::string format;
    uint64_t max_output_bytes;
    std::vector<std::string> expected;
  } cases[] = {
      {"text",
       8 << 20,
       {"protocol 4, " + std::to_string(opcodes) + " opcodes, ",
        "  ... " + omitted + " of " + std::to_string(opcodes) +
            " opcodes not listed (only the first 100000 are: --max-opcodes)\n",
        "max stack depth " + std::to_string(n) + ","}},
      {"json",
       16 << 20,
       {"\"opcode_count\": " + std::to_string(opcodes) + ",",
        "\"ops_omitted\": " + omitted + ",",
        "\"ops_note\": \"" + omitted + " of " + std::to_string(opcodes) +
            " opcodes not listed",
        "\"max_stack_depth\": " + std::to_string(n) + ","}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.format);
    const fs::path out_path = dir / ("out." + c.format);
    const MeasuredRun r =
        RunMeasured({"disasm", input.string(), "--format", c.format}, out_path);
    EXPECT_EQ(r.signal, 0);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_LT(r.out_bytes, c.max_output_bytes);
    EXPECT_LT(r.max_rss_kb, 300 * 1024);
    if (r.out_bytes < c.max_output_bytes) {
      const std::string out = ReadFile(out_path);
      for (const std::string& part : c.expected) {
        EXPECT_THAT(out, HasSubstr(part));
      }
    }
  }
  fs::remove_all(dir);
}

TEST_F(DisasmCliTest, MaxOpcodesShortensOnlyTheListing) {
  const std::string input = Input("good_state_dict.pt");
  const CommandResult all = Disasm(input + " --max-opcodes 0");
  const CommandResult one = Disasm(input + " --max-opcodes 1");
  ASSERT_EQ(all.exit_code, 0) << all.err;
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(all.out, Not(HasSubstr("not listed")));
  EXPECT_THAT(one.out, HasSubstr("opcodes not listed (only the first 1 are"));
  EXPECT_THAT(one.out, Not(HasSubstr("BINPUT")));
  // Globals, stats and everything after the listing are unchanged.
  const size_t all_globals = all.out.find("  globals (");
  const size_t one_globals = one.out.find("  globals (");
  ASSERT_NE(all_globals, std::string::npos);
  ASSERT_NE(one_globals, std::string::npos);
  EXPECT_EQ(one.out.substr(one_globals), all.out.substr(all_globals));
  EXPECT_THAT(one.out, HasSubstr("torch._utils _rebuild_tensor_v2"));

  // The same in JSON, checked stream by stream.
  char dir_template[] = "/tmp/dynahug_cli_json.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const fs::path dir = dir_template;
  const CommandResult all_json =
      Disasm(input + " --format json --max-opcodes 0");
  const CommandResult one_json =
      Disasm(input + " --format json --max-opcodes 1");
  ASSERT_EQ(one_json.exit_code, 0) << one_json.err;
  std::ofstream(dir / "all.json") << all_json.out;
  std::ofstream(dir / "one.json") << one_json.out;
  const std::string check =
      std::string(DYNAHUG_PYTHON) +
      " -c '"
      "import json, sys\n"
      "def streams(m):\n"
      "    for s in m[\"pickles\"]: yield s\n"
      "    for c in m[\"children\"]: yield from streams(c)\n"
      "a = "
      "list(streams(json.load(open(sys.argv[1]))[\"files\"][0][\"root\"]))\n"
      "b = "
      "list(streams(json.load(open(sys.argv[2]))[\"files\"][0][\"root\"]))\n"
      "assert a and len(a) == len(b)\n"
      "for x, y in zip(a, b):\n"
      "    assert \"ops_omitted\" not in x\n"
      "    assert y[\"ops\"] == x[\"ops\"][:1], y[\"ops\"]\n"
      "    assert y.pop(\"ops_omitted\") == x[\"opcode_count\"] - 1\n"
      "    assert \"not listed\" in y.pop(\"ops_note\")\n"
      "    x.pop(\"ops\"); y.pop(\"ops\")\n"
      "    assert x == y, (x, y)\n"
      "' " +
      (dir / "all.json").string() + " " + (dir / "one.json").string();
  EXPECT_EQ(std::system(check.c_str()), 0) << one_json.out.substr(0, 2000);
  fs::remove_all(dir);
}

TEST_F(DisasmCliTest, StreamsUnderTheOpcodeLimitAreListedWhole) {
  // deep_lists.pkl has 200001 opcodes: over the default limit of 100000.
  const CommandResult capped = Disasm(Input("deep_lists.pkl"));
  ASSERT_EQ(capped.exit_code, 0) << capped.err;
  EXPECT_THAT(capped.out, HasSubstr("100001 of 200001 opcodes not listed"));
  EXPECT_THAT(capped.out, Not(HasSubstr("STOP")));
  const CommandResult whole =
      Disasm(Input("deep_lists.pkl") + " --max-opcodes 200001");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_THAT(whole.out, Not(HasSubstr("not listed")));
  EXPECT_THAT(whole.out, HasSubstr("  200001: .    STOP"));
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
        BadInputCase{"truncated_zip.pt", {}}, BadInputCase{"random.bin", {}},
        BadInputCase{"absurd_length.pkl", {"BINUNICODE8", "offset 2"}},
        BadInputCase{"unknown.png", {"unknown"}}, BadInputCase{"empty.bin", {}},
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
  EXPECT_EQ(Disasm(Input("good_p2.pkl") + " --max-opcodes").exit_code, 2);
  EXPECT_EQ(Disasm(Input("good_p2.pkl") + " --max-opcodes -1").exit_code, 2);
  EXPECT_EQ(Disasm(Input("good_p2.pkl") + " --max-opcodes x").exit_code, 2);
  EXPECT_EQ(RunShell(std::string(DYNAHUG_BIN) + " frobnicate").exit_code, 2);
  const CommandResult help = RunShell(std::string(DYNAHUG_BIN) + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("disasm"));
}

}  // namespace
}  // namespace dynahug

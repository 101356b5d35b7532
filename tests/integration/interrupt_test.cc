// Interrupting `dynahug trace` mid-run leaves nothing behind: the real
// binary traces files whose loads sleep (a pickle that calls time.sleep) with
// --jobs 2; once both worker zygotes run a sandboxed load, the test sends
// SIGINT, SIGTERM, SIGINT to the whole process group (Ctrl-C at a terminal)
// or SIGKILL, and asserts that
//   - dynahug ends promptly (well before the loads would) and as the signal
//     asks: exit 130 / 143 with a message after SIGINT / SIGTERM, killed
//     after SIGKILL;
//   - no process descended from it survives: the test is a child subreaper,
//     so every descendant orphaned on the way (zygotes, sandboxed children)
//     is re-parented to it and stays visible in its process tree;
//   - no /tmp/dynahug-* entry (a child's scratch directory) is left: the
//     test runs in its own mount namespace with a fresh tmpfs on /tmp, so
//     every entry there was made by this run.
//
// Needs root (namespaces, the sandbox): DYNAHUG_SECURITY_SKIP otherwise.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/security_test_util.h"

namespace dynahug::integration {
namespace {

using ::testing::HasSubstr;

// Each load sleeps this long; the run is interrupted long before.
constexpr int kSleepSeconds = 600;
constexpr int kFiles = 4;
// Ceilings against hangs (not timing claims): for the zygotes to start
// their first loads, for dynahug to exit after the signal, and for its
// descendants to disappear after that.
constexpr auto kStartCeiling = std::chrono::seconds(180);
constexpr auto kExitCeiling = std::chrono::seconds(60);
constexpr auto kReapCeiling = std::chrono::seconds(30);

struct Proc {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  char state = '?';
  uint64_t start_ticks = 0;  // field 22 of /proc/PID/stat
  std::string comm;
};

std::optional<Proc> ReadProc(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos) {
    return std::nullopt;
  }
  Proc p;
  p.pid = pid;
  p.comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 2));
  // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  // utime stime cutime cstime priority nice num_threads itrealvalue
  // starttime
  std::string skip;
  rest >> p.state >> p.ppid >> p.pgid;
  for (int i = 0; i < 16; ++i) rest >> skip;
  rest >> p.start_ticks;
  return p;
}

std::map<pid_t, Proc> ReadProcesses() {
  std::map<pid_t, Proc> procs;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return procs;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    if (auto p = ReadProc(static_cast<pid_t>(pid))) procs[p->pid] = *p;
  }
  closedir(dir);
  return procs;
}

// Processes whose parent chain leads to `root` (root excluded).
std::vector<Proc> Descendants(const std::map<pid_t, Proc>& procs, pid_t root) {
  std::vector<Proc> out;
  for (const auto& [pid, p] : procs) {
    pid_t up = p.ppid;
    for (int depth = 0; up > 1 && depth < 64; ++depth) {
      if (up == root) {
        out.push_back(p);
        break;
      }
      auto it = procs.find(up);
      if (it == procs.end()) break;
      up = it->second.ppid;
    }
  }
  return out;
}

std::string Describe(const std::vector<Proc>& procs) {
  std::vector<std::string> parts;
  for (const Proc& p : procs) {
    parts.push_back(absl::StrCat(p.pid, " (", p.comm, ", state ",
                                 std::string(1, p.state), ", parent ", p.ppid,
                                 ")"));
  }
  return absl::StrJoin(parts, "; ");
}

std::vector<std::string> ScratchEntries() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/tmp", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("dynahug-", 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

// Reaps every child of this process that has ended (orphans adopted as the
// subreaper). Call only when dynahug itself was reaped already.
void ReapAdopted() {
  for (;;) {
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        info.si_pid == 0) {
      return;
    }
    waitpid(info.si_pid, nullptr, 0);
  }
}

class InterruptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      DYNAHUG_SECURITY_SKIP("needs root (mount namespace, the sandbox)");
    }
    // A private /tmp: whatever dynahug leaves there is this run's.
    ASSERT_EQ(unshare(CLONE_NEWNS), 0) << strerror(errno);
    ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0)
        << strerror(errno);
    ASSERT_EQ(mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                    "size=256m,mode=1777"),
              0)
        << strerror(errno);
    tmp_mounted_ = true;
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    // Inputs outside /tmp (the sandbox may hide the host's /tmp).
    dir_ = absl::StrCat(DYNAHUG_TEST_DATA_DIR, "/interrupt/", getpid());
    std::filesystem::create_directories(dir_);
    for (int i = 0; i < kFiles; ++i) {
      const std::string path = absl::StrCat(dir_, "/slow_", i, ".pkl");
      // Protocol 0: time.sleep(kSleepSeconds). Harmless, and slow.
      std::ofstream(path, std::ios::binary)
          << "ctime\nsleep\n(I" << kSleepSeconds << "\ntR.";
      files_.push_back(path);
    }
  }

  void TearDown() override {
    // Whatever a failed test left: kill it, reap it.
    for (const Proc& p : Descendants(ReadProcesses(), getpid())) {
      kill(p.pid, SIGKILL);
    }
    if (dynahug_ > 0) waitpid(dynahug_, nullptr, 0);
    ReapAdopted();
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    if (tmp_mounted_) umount2("/tmp", MNT_DETACH);
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // Starts `dynahug trace --jobs 2` on the sleeping files in its own process
  // group, stdout and stderr to files.
  void Start() {
    std::vector<std::string> args = {
        DYNAHUG_BIN, "trace",     "--jobs",
        "2",         "--timeout", std::to_string(kSleepSeconds + 300)};
    args.insert(args.end(), files_.begin(), files_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    dynahug_ = fork();
    ASSERT_GE(dynahug_, 0);
    if (dynahug_ == 0) {
      setpgid(0, 0);
      const int null_fd = open("/dev/null", O_RDONLY);
      const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (null_fd < 0 || out_fd < 0 || err_fd < 0) _exit(126);
      dup2(null_fd, 0);
      dup2(out_fd, 1);
      dup2(err_fd, 2);
      execv(argv[0], argv.data());
      _exit(127);
    }
    setpgid(dynahug_, dynahug_);  // either side may win; both ask the same
  }

  // Waits until both zygotes run a sandboxed load (each has a child);
  // returns every descendant seen then.
  std::vector<Proc> AwaitLoadsRunning() {
    const auto deadline = std::chrono::steady_clock::now() + kStartCeiling;
    std::vector<Proc> seen;
    while (std::chrono::steady_clock::now() < deadline) {
      siginfo_t info{};
      if (waitid(P_PID, dynahug_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == dynahug_) {
        ADD_FAILURE() << "dynahug exited before it was interrupted; stderr: "
                      << Slurp(dir_ + "/stderr");
        return {};
      }
      const auto procs = ReadProcesses();
      seen = Descendants(procs, dynahug_);
      int zygotes = 0, loading = 0;
      for (const Proc& p : seen) {
        if (p.ppid != dynahug_) continue;
        ++zygotes;
        for (const Proc& q : seen) loading += q.ppid == p.pid ? 1 : 0;
      }
      if (zygotes == 2 && loading >= 2) return seen;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "the two zygotes never both ran a load; saw: "
                  << Describe(seen);
    return {};
  }

  // Waits for dynahug to end; its wait status, or nullopt after the
  // ceiling. Sets exit_ms_ (signal to exit).
  std::optional<int> AwaitExit(std::chrono::steady_clock::time_point sent) {
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, dynahug_, 0));
    if (pidfd < 0) return std::nullopt;
    pollfd p{pidfd, POLLIN, 0};
    const int ready =
        poll(&p, 1,
             static_cast<int>(std::chrono::milliseconds(kExitCeiling).count()));
    close(pidfd);
    if (ready != 1) return std::nullopt;
    int status = 0;
    if (waitpid(dynahug_, &status, 0) != dynahug_) return std::nullopt;
    dynahug_ = -1;
    exit_ms_ = std::chrono::duration<double, std::milli>(
                   std::chrono::steady_clock::now() - sent)
                   .count();
    return status;
  }

  // Descendants of this test still alive after dynahug ended (orphans that
  // ended are reaped on the way), once none are left or at the ceiling.
  std::vector<Proc> Survivors() {
    const auto deadline = std::chrono::steady_clock::now() + kReapCeiling;
    std::vector<Proc> alive;
    for (;;) {
      ReapAdopted();
      alive.clear();
      for (const Proc& p : Descendants(ReadProcesses(), getpid())) {
        if (p.state != 'Z') alive.push_back(p);
      }
      if (alive.empty() || std::chrono::steady_clock::now() > deadline) {
        return alive;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // Every process seen during the run that still exists (same pid and start
  // time).
  static std::vector<Proc> StillThere(const std::vector<Proc>& seen) {
    std::vector<Proc> out;
    for (const Proc& p : seen) {
      auto now = ReadProc(p.pid);
      if (now && now->start_ticks == p.start_ticks && now->state != 'Z') {
        out.push_back(*now);
      }
    }
    return out;
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // The whole scenario: start, wait for the loads, send `sig` (to the
  // process group when `group`), then check what is left.
  void InterruptAndCheck(int sig, bool group, int expected_exit) {
    Start();
    ASSERT_GT(dynahug_, 0);
    const std::vector<Proc> seen = AwaitLoadsRunning();
    ASSERT_FALSE(seen.empty());
    const auto sent = std::chrono::steady_clock::now();
    ASSERT_EQ(group ? kill(-dynahug_, sig) : kill(dynahug_, sig), 0);
    const std::optional<int> status = AwaitExit(sent);
    ASSERT_TRUE(status.has_value())
        << "dynahug did not exit within " << kExitCeiling.count()
        << " s of signal " << sig;
    std::cout << "signal " << sig << (group ? " to the group" : "")
              << ": dynahug exited " << exit_ms_ << " ms after it\n";
    const std::string err = Slurp(dir_ + "/stderr");
    // The leftover checks below run whatever the exit status was.
    if (expected_exit >= 0) {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == expected_exit)
          << "expected exit " << expected_exit << ", wait status " << *status
          << "; stderr: " << err;
      EXPECT_THAT(err, HasSubstr(absl::StrCat("interrupted by SIG",
                                              sigabbrev_np(sig))));
      EXPECT_THAT(err,
                  HasSubstr(absl::StrCat("0 of ", kFiles, " files traced")));
      EXPECT_EQ(Slurp(dir_ + "/stdout"), "");
    } else {
      EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == sig)
          << "wait status " << *status;
    }
    const std::vector<Proc> survivors = Survivors();
    EXPECT_TRUE(survivors.empty())
        << "processes left behind: " << Describe(survivors);
    const std::vector<Proc> still = StillThere(seen);
    EXPECT_TRUE(still.empty())
        << "processes of the run still alive: " << Describe(still);
    const std::vector<std::string> scratch = ScratchEntries();
    EXPECT_TRUE(scratch.empty())
        << "scratch left in /tmp: " << absl::StrJoin(scratch, ", ");
  }

  std::string dir_;
  std::vector<std::string> files_;
  pid_t dynahug_ = -1;
  double exit_ms_ = 0;
  bool tmp_mounted_ = false;
};

TEST_F(InterruptTest, SigintKillsEveryChildRemovesScratchAndExits130) {
  InterruptAndCheck(SIGINT, /*group=*/false, 130);
}

TEST_F(InterruptTest, SigtermKillsEveryChildRemovesScratchAndExits143) {
  InterruptAndCheck(SIGTERM, /*group=*/false, 143);
}

TEST_F(InterruptTest, CtrlCToTheProcessGroupLeavesNothingAndExits130) {
  // The zygotes get the SIGINT too and die of it: none may be replaced.
  InterruptAndCheck(SIGINT, /*group=*/true, 130);
}

TEST_F(InterruptTest, SigkillOfDynahugStillKillsZygotesAndTheirChildren) {
  InterruptAndCheck(SIGKILL, /*group=*/false, /*expected_exit=*/-1);
}

}  // namespace
}  // namespace dynahug::integration

#include "sandbox/seccomp_policy.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <algorithm>
#include <string>

#include "gtest/gtest.h"

namespace dynahug::sandbox {
namespace {

constexpr pid_t kChild = 4242;
constexpr int kChannel = 3;
const ChildView kView{kChild, kChannel};

SyscallRequest Call(int nr, std::array<uint64_t, 6> args = {}) {
  SyscallRequest r;
  r.nr = nr;
  r.args = args;
  return r;
}

struct DecisionCase {
  const char* label;
  SyscallRequest request;
  bool allow;
  int error;
  bool denied;
};

class DecideSyscallTest : public ::testing::TestWithParam<DecisionCase> {};

TEST_P(DecideSyscallTest, Decides) {
  const DecisionCase& c = GetParam();
  const SyscallDecision d = DecideSyscall(c.request, kView);
  EXPECT_EQ(d.allow, c.allow) << c.label;
  EXPECT_EQ(d.error, c.error) << c.label;
  EXPECT_EQ(d.denied, c.denied) << c.label;
}

constexpr uint64_t kThreadFlags = CLONE_VM | CLONE_FS | CLONE_FILES |
                                  CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                                  CLONE_SETTLS;
const uint64_t kSelf = static_cast<uint64_t>(kChild);
const uint64_t kSelfGroup =
    static_cast<uint64_t>(-static_cast<int64_t>(kChild));

INSTANTIATE_TEST_SUITE_P(
    Table, DecideSyscallTest,
    ::testing::Values(
        DecisionCase{"openat allowed", Call(SYS_openat), true, 0, false},
        DecisionCase{"unix datagram socket denied",
                     Call(SYS_socket, {AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC}),
                     false, EPERM, true},
        DecisionCase{"unix datagram socketpair denied",
                     Call(SYS_socketpair, {AF_UNIX, SOCK_DGRAM}), false, EPERM,
                     true},
        DecisionCase{"unix stream socketpair allowed",
                     Call(SYS_socketpair, {AF_UNIX, SOCK_STREAM}), true, 0,
                     false},
        DecisionCase{"sendmsg denied (address not inspectable)",
                     Call(SYS_sendmsg, {7}), false, EPERM, true},
        DecisionCase{"sendmmsg on another socket denied",
                     Call(SYS_sendmmsg, {7}), false, EPERM, true},
        DecisionCase{"sendmmsg on the channel allowed",
                     Call(SYS_sendmmsg, {kChannel}), true, 0, false},
        DecisionCase{"shmget denied", Call(SYS_shmget), false, EPERM, true},
        DecisionCase{"shmat denied", Call(SYS_shmat), false, EPERM, true},
        DecisionCase{"msgsnd denied", Call(SYS_msgsnd), false, EPERM, true},
        DecisionCase{"semop denied", Call(SYS_semop), false, EPERM, true},
        DecisionCase{"mq_open denied", Call(SYS_mq_open), false, EPERM, true},
        DecisionCase{"write elsewhere allowed", Call(SYS_write, {1}), true, 0,
                     false},
        DecisionCase{"close elsewhere allowed", Call(SYS_close, {4}), true, 0,
                     false},
        DecisionCase{"fork denied", Call(SYS_fork), false, EPERM, true},
        DecisionCase{"vfork denied", Call(SYS_vfork), false, EPERM, true},
        DecisionCase{"execve denied", Call(SYS_execve), false, EPERM, true},
        DecisionCase{"execveat denied", Call(SYS_execveat), false, EPERM, true},
        DecisionCase{"thread clone allowed", Call(SYS_clone, {kThreadFlags}),
                     true, 0, false},
        DecisionCase{"process clone denied", Call(SYS_clone, {SIGCHLD}), false,
                     EPERM, true},
        DecisionCase{"clone3 steered to clone", Call(SYS_clone3), false, ENOSYS,
                     false},
        DecisionCase{"AF_UNIX socket allowed", Call(SYS_socket, {AF_UNIX}),
                     true, 0, false},
        DecisionCase{"AF_INET socket denied", Call(SYS_socket, {AF_INET}),
                     false, EPERM, true},
        DecisionCase{"AF_INET6 socket denied", Call(SYS_socket, {AF_INET6}),
                     false, EPERM, true},
        DecisionCase{"AF_NETLINK socket denied", Call(SYS_socket, {AF_NETLINK}),
                     false, EPERM, true},
        DecisionCase{"AF_UNIX socketpair allowed",
                     Call(SYS_socketpair, {AF_UNIX}), true, 0, false},
        DecisionCase{"AF_INET socketpair denied",
                     Call(SYS_socketpair, {AF_INET}), false, EPERM, true},
        DecisionCase{"connect denied", Call(SYS_connect), false, EPERM, true},
        DecisionCase{"bind denied", Call(SYS_bind), false, EPERM, true},
        DecisionCase{"sendto connected allowed",
                     Call(SYS_sendto, {5, 0x1000, 10, 0, 0, 0}), true, 0,
                     false},
        DecisionCase{"sendto with address denied",
                     Call(SYS_sendto, {5, 0x1000, 10, 0, 0x2000, 16}), false,
                     EPERM, true},
        DecisionCase{"ptrace denied", Call(SYS_ptrace), false, EPERM, true},
        DecisionCase{"process_vm_readv denied", Call(SYS_process_vm_readv),
                     false, EPERM, true},
        DecisionCase{"mount denied", Call(SYS_mount), false, EPERM, true},
        DecisionCase{"umount2 denied", Call(SYS_umount2), false, EPERM, true},
        DecisionCase{"pivot_root denied", Call(SYS_pivot_root), false, EPERM,
                     true},
        DecisionCase{"chroot denied", Call(SYS_chroot), false, EPERM, true},
        DecisionCase{"init_module denied", Call(SYS_init_module), false, EPERM,
                     true},
        DecisionCase{"finit_module denied", Call(SYS_finit_module), false,
                     EPERM, true},
        DecisionCase{"bpf denied", Call(SYS_bpf), false, EPERM, true},
        DecisionCase{"perf_event_open denied", Call(SYS_perf_event_open), false,
                     EPERM, true},
        DecisionCase{"keyctl denied", Call(SYS_keyctl), false, EPERM, true},
        DecisionCase{"unshare denied", Call(SYS_unshare), false, EPERM, true},
        DecisionCase{"setns denied", Call(SYS_setns), false, EPERM, true},
        DecisionCase{"kexec_load denied", Call(SYS_kexec_load), false, EPERM,
                     true},
        DecisionCase{"reboot denied", Call(SYS_reboot), false, EPERM, true},
        DecisionCase{"swapon denied", Call(SYS_swapon), false, EPERM, true},
        DecisionCase{"settimeofday denied", Call(SYS_settimeofday), false,
                     EPERM, true},
        DecisionCase{"clock_settime denied", Call(SYS_clock_settime), false,
                     EPERM, true},
        DecisionCase{"userfaultfd denied", Call(SYS_userfaultfd), false, EPERM,
                     true},
        DecisionCase{"io_uring_setup denied", Call(SYS_io_uring_setup), false,
                     EPERM, true},
        DecisionCase{"personality query allowed",
                     Call(SYS_personality, {0xffffffffu}), true, 0, false},
        DecisionCase{"personality change denied",
                     Call(SYS_personality, {0x0040000}), false, EPERM, true},
        DecisionCase{"kill self allowed", Call(SYS_kill, {kSelf, 9}), true, 0,
                     false},
        DecisionCase{"kill own group allowed", Call(SYS_kill, {kSelfGroup, 9}),
                     true, 0, false},
        DecisionCase{"kill 0 allowed", Call(SYS_kill, {0, 9}), true, 0, false},
        DecisionCase{"kill parent denied", Call(SYS_kill, {1234, 9}), false,
                     EPERM, true},
        DecisionCase{"kill -1 denied",
                     Call(SYS_kill, {static_cast<uint64_t>(-1), 9}), false,
                     EPERM, true},
        DecisionCase{"tgkill self allowed", Call(SYS_tgkill, {kSelf, 4243, 6}),
                     true, 0, false},
        DecisionCase{"tgkill other denied", Call(SYS_tgkill, {1, 1, 6}), false,
                     EPERM, true},
        DecisionCase{"tkill other denied", Call(SYS_tkill, {1, 9}), false,
                     EPERM, true},
        DecisionCase{"prlimit self allowed", Call(SYS_prlimit64, {0}), true, 0,
                     false},
        DecisionCase{"prlimit other denied", Call(SYS_prlimit64, {1}), false,
                     EPERM, true},
        DecisionCase{"pidfd_open denied", Call(SYS_pidfd_open), false, EPERM,
                     true}),
    [](const ::testing::TestParamInfo<DecisionCase>& info) {
      std::string name = info.param.label;
      std::replace_if(
          name.begin(), name.end(),
          [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); },
          '_');
      return name;
    });

TEST(SyscallNameTest, ResolvesKnownAndUnknownNumbers) {
  EXPECT_EQ(SyscallName(SYS_openat), "openat");
  EXPECT_EQ(SyscallName(SYS_execve), "execve");
  EXPECT_EQ(SyscallName(SYS_clone3), "clone3");
  EXPECT_EQ(SyscallName(999), "syscall_999");
}

TEST(BuildSeccompFilterTest, ProducesAProgramForBothModes) {
  for (bool hot : {true, false}) {
    SeccompPolicyOptions options;
    options.allow_hot_syscalls_unrecorded = hot;
    absl::StatusOr<std::vector<sock_filter>> program =
        BuildSeccompFilter(options);
    ASSERT_TRUE(program.ok()) << program.status();
    EXPECT_GT(program->size(), 5u);
    EXPECT_LE(program->size(), static_cast<size_t>(BPF_MAXINSNS));
  }
  // The hot set adds rules: the programs differ in length.
  SeccompPolicyOptions all;
  all.allow_hot_syscalls_unrecorded = false;
  EXPECT_GT(BuildSeccompFilter(SeccompPolicyOptions{})->size(),
            BuildSeccompFilter(all)->size());
}

TEST(HotSyscallsTest, ExcludesEverythingThePolicyDecides) {
  // A hot syscall never reaches DecideSyscall; none of them may be one the
  // policy would deny or inspect.
  for (int nr : HotSyscalls()) {
    EXPECT_TRUE(DecideSyscall(Call(nr), kView).allow) << SyscallName(nr);
    EXPECT_NE(nr, SYS_openat);
    EXPECT_NE(nr, SYS_clone);
  }
}

TEST(SyscallCountTest, ConvertsToProto) {
  const SyscallCount c{"socket", SYS_socket, 3, 2};
  const proto::SyscallCount p = ToProto(c);
  EXPECT_EQ(p.name(), "socket");
  EXPECT_EQ(p.number(), static_cast<uint32_t>(SYS_socket));
  EXPECT_EQ(p.count(), 3u);
  EXPECT_EQ(p.denied(), 2u);
}

struct ChannelCase {
  const char* label;
  SyscallRequest request;
};

TEST(DecideSyscallChannelTest,
     EveryWayToWriteReplaceOrCloseTheChannelIsTamper) {
  const uint64_t ch = kChannel;
  const ChannelCase cases[] = {
      {"write", Call(SYS_write, {ch})},
      {"writev", Call(SYS_writev, {ch})},
      {"pwrite64", Call(SYS_pwrite64, {ch})},
      {"pwritev2", Call(SYS_pwritev2, {ch})},
      {"sendto", Call(SYS_sendto, {ch})},
      {"sendmsg", Call(SYS_sendmsg, {ch})},
      {"close", Call(SYS_close, {ch})},
      {"close_range over it", Call(SYS_close_range, {0, ~0u})},
      {"shutdown", Call(SYS_shutdown, {ch, SHUT_RDWR})},
      {"dup", Call(SYS_dup, {ch})},
      {"dup2 from", Call(SYS_dup2, {ch, 9})},
      {"dup2 onto", Call(SYS_dup2, {9, ch})},
      {"dup3 onto", Call(SYS_dup3, {9, ch, 0})},
      {"fcntl", Call(SYS_fcntl, {ch, 0 /* F_DUPFD */, 10})},
      {"setsockopt", Call(SYS_setsockopt, {ch})},
      {"ioctl", Call(SYS_ioctl, {ch})},
      {"splice into", Call(SYS_splice, {9, 0, ch})},
      {"tee into", Call(SYS_tee, {9, ch})},
      {"vmsplice", Call(SYS_vmsplice, {ch})},
      {"sendfile into", Call(SYS_sendfile, {ch, 9})},
      {"copy_file_range into", Call(SYS_copy_file_range, {9, 0, ch})},
  };
  for (const ChannelCase& c : cases) {
    const SyscallDecision d = DecideSyscall(c.request, kView);
    EXPECT_FALSE(d.allow) << c.label;
    EXPECT_TRUE(d.denied) << c.label;
    EXPECT_TRUE(d.channel_tamper) << c.label;
    EXPECT_EQ(d.error, EPERM) << c.label;
  }
  // Without a channel, the same calls on descriptor 3 are ordinary.
  EXPECT_TRUE(
      DecideSyscall(Call(SYS_close, {ch}), ChildView{kChild, -1}).allow);
  EXPECT_FALSE(
      DecideSyscall(Call(SYS_close_range, {4, ~0u}), kView).channel_tamper);
  EXPECT_FALSE(DecideSyscall(Call(SYS_read, {ch}), kView).channel_tamper);
}

TEST(DecideSyscallChannelTest, SignalsAreJudgedByTheChildsOwnPid) {
  // In its own pid namespace the child is pid 1.
  const ChildView init{1, kChannel};
  EXPECT_TRUE(DecideSyscall(Call(SYS_kill, {1, SIGTERM}), init).allow);
  EXPECT_TRUE(DecideSyscall(Call(SYS_kill, {0, SIGTERM}), init).allow);
  EXPECT_FALSE(DecideSyscall(Call(SYS_kill, {4242, SIGTERM}), init).allow);
}

}  // namespace
}  // namespace dynahug::sandbox

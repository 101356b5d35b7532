// The adversarial review of `dynahug trace` (issue 7), one test per finding:
// payloads written as an attacker would, each a pickle that runs Python
// source through builtins.exec in the sandboxed child, against targets the
// test creates on the host itself (a file with known metadata, a System V
// shared-memory segment and message queue, a datagram socket) under a
// temporary directory that is removed afterwards. Harmless probes only.
//
// Each test asserts both halves: the host did not change, and the trace
// shows the attempt (so the payload cannot escape quietly or blind the
// recording). Every one of them failed on the sandbox before this change.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"
#include "tests/security_test_util.h"

namespace dynahug::integration {
namespace {

class SandboxEscapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      DYNAHUG_SECURITY_SKIP("needs root (namespaces, seccomp supervision)");
    }
    // Not under /tmp or /home: those are private tmpfs mounts in the child,
    // so a host target there would be out of the payload's reach anyway.
    dir_ = absl::StrCat(
        DYNAHUG_TEST_DATA_DIR, "/escape-", getpid(), "-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(std::filesystem::create_directories(dir_));
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Writes the payload, traces it, returns the one trace.
  proto::Trace Trace(const std::string& source) {
    const std::string path = dir_ + "/payload.pkl";
    {
      std::ofstream out(path, std::ios::binary);
      out << ExecPickle(source);
    }
    absl::StatusOr<CommandResult> run = RunCommand(
        {DYNAHUG_BIN, "trace", "--format", "json", "--timeout", "20", path});
    EXPECT_TRUE(run.ok()) << run.status();
    if (!run.ok()) return {};
    EXPECT_EQ(run->exit_code, 0) << run->err;
    absl::StatusOr<std::vector<proto::Trace>> traces =
        ParseTraceDocument(run->out);
    EXPECT_TRUE(traces.ok()) << traces.status() << run->err;
    if (!traces.ok() || traces->size() != 1) return {};
    return (*traces)[0];
  }

  std::string dir_;
};

int CountEvents(const proto::Trace& t, proto::Event::Kind kind,
                std::string_view name) {
  int n = 0;
  for (const proto::Event& e : t.events()) {
    if (e.kind() == kind && e.name() == name) ++n;
  }
  return n;
}

bool HasAudit(const proto::Trace& t, std::string_view name) {
  return CountEvents(t, proto::Event::AUDIT, name) > 0;
}

// 1. The child is uid 0 without capabilities, so it owns root's files:
// chmod (u+s), utimes, xattrs, file flags, truncate on a host file and a
// host directory must all fail.
TEST_F(SandboxEscapeTest, HostFileMetadataCannotChange) {
  const std::string file = dir_ + "/victim";
  {
    std::ofstream out(file);
    out << "original contents";
  }
  ASSERT_EQ(chmod(file.c_str(), 0644), 0);
  const timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
  struct stat before {};
  struct stat dir_before {};
  ASSERT_EQ(stat(file.c_str(), &before), 0);
  ASSERT_EQ(stat(dir_.c_str(), &dir_before), 0);

  const proto::Trace t = Trace(absl::StrCat(R"(
import os, fcntl, array
f = ')",
                                            file, R"('
d = ')",
                                            dir_, R"('
for step in (lambda: os.chmod(f, 0o4755),
             lambda: os.utime(f, (0, 0)),
             lambda: os.setxattr(f, 'user.dynahug', b'1'),
             lambda: os.truncate(f, 0),
             lambda: os.chmod(d, 0o777),
             lambda: fcntl.ioctl(os.open(f, os.O_RDONLY), 0x40086602,
                                 array.array('l', [0x10]))):
    try:
        step()
    except OSError:
        pass
)"));
  struct stat after {};
  struct stat dir_after {};
  ASSERT_EQ(stat(file.c_str(), &after), 0);
  ASSERT_EQ(stat(dir_.c_str(), &dir_after), 0);
  EXPECT_EQ(after.st_mode, before.st_mode) << "chmod escaped";
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec) << "utime escaped";
  EXPECT_EQ(after.st_size, before.st_size) << "truncate escaped";
  EXPECT_EQ(dir_after.st_mode, dir_before.st_mode) << "directory chmod";
  char value[8];
  EXPECT_LT(getxattr(file.c_str(), "user.dynahug", value, sizeof value), 0)
      << "setxattr escaped";
  int flags = 0;
  const int fd = open(file.c_str(), O_RDONLY);
  if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
    EXPECT_EQ(flags & FS_APPEND_FL, 0) << "FS_IOC_SETFLAGS escaped";
  }
  if (fd >= 0) close(fd);
  // The attempts are in the trace.
  EXPECT_TRUE(HasAudit(t, "os.chmod")) << DescribeEvents(t);
  EXPECT_TRUE(HasAudit(t, "os.utime")) << DescribeEvents(t);
  EXPECT_TRUE(HasAudit(t, "os.setxattr")) << DescribeEvents(t);
  EXPECT_TRUE(HasAudit(t, "os.truncate")) << DescribeEvents(t);
}

// 2. System V IPC: the host's segment and queue are unreachable, nothing
// the child creates outlives it, and each attempt is a BLOCKED event.
TEST_F(SandboxEscapeTest, HostSysVIpcIsUnreachable) {
  const key_t shm_key = 0x6479000 + (getpid() & 0xfff);
  const key_t msg_key = shm_key + 0x1000;
  const key_t new_key = shm_key + 0x2000;
  const int shm = shmget(shm_key, 4096, IPC_CREAT | IPC_EXCL | 0666);
  ASSERT_GE(shm, 0) << strerror(errno);
  const int queue = msgget(msg_key, IPC_CREAT | IPC_EXCL | 0666);
  ASSERT_GE(queue, 0) << strerror(errno);
  char* mem = static_cast<char*>(shmat(shm, nullptr, 0));
  ASSERT_NE(mem, reinterpret_cast<char*>(-1));
  memset(mem, 'A', 4096);

  const proto::Trace t = Trace(absl::StrCat(R"(
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
sid = libc.shmget()",
                                            shm_key, R"(, 0, 0)
if sid >= 0:
    p = libc.shmat(sid, None, 0)
    if p not in (None, ctypes.c_void_p(-1).value):
        ctypes.memset(p, 0x5a, 16)
qid = libc.msgget()",
                                            msg_key, R"(, 0)
if qid >= 0:
    msg = ctypes.create_string_buffer(b'\x01\x00\x00\x00\x00\x00\x00\x00pwned')
    libc.msgsnd(qid, msg, 5, 0)
libc.shmget()",
                                            new_key, R"(, 4096, 0o1666)
)"));
  EXPECT_EQ(std::string(mem, 16), std::string(16, 'A')) << "segment written";
  msqid_ds info{};
  ASSERT_EQ(msgctl(queue, IPC_STAT, &info), 0);
  EXPECT_EQ(info.msg_qnum, 0u) << "message queued on the host";
  const int leftover = shmget(new_key, 0, 0);
  EXPECT_LT(leftover, 0) << "a segment created by the child outlived it";
  if (leftover >= 0) shmctl(leftover, IPC_RMID, nullptr);
  shmdt(mem);
  shmctl(shm, IPC_RMID, nullptr);
  msgctl(queue, IPC_RMID, nullptr);
  EXPECT_GE(CountEvents(t, proto::Event::BLOCKED, "shmget"), 2)
      << DescribeEvents(t);
  EXPECT_GE(CountEvents(t, proto::Event::BLOCKED, "msgget"), 1)
      << DescribeEvents(t);
}

// 3. A datagram to a host AF_UNIX socket path (sendto with an address, or
// sendmsg) never arrives.
TEST_F(SandboxEscapeTest, DatagramsToHostUnixSocketsDoNotArrive) {
  const std::string path = dir_ + "/host.sock";
  const int sock =
      socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);

  const proto::Trace t = Trace(absl::StrCat(R"(
import socket
p = ')",
                                            path, R"('
data = open('/etc/hostname', 'rb').read()
for kind in (socket.SOCK_DGRAM,):
    try:
        s = socket.socket(socket.AF_UNIX, kind)
        s.sendto(data, p)
    except OSError:
        pass
try:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.sendto(data, p)
except OSError:
    pass
try:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendmsg([data], [], 0, p)
except OSError:
    pass
)"));
  char buf[4096];
  EXPECT_LT(recv(sock, buf, sizeof buf, MSG_DONTWAIT), 0)
      << "a datagram arrived from the sandbox";
  close(sock);
  EXPECT_GE(CountEvents(t, proto::Event::BLOCKED, "socket") +
                CountEvents(t, proto::Event::BLOCKED, "socketpair"),
            2)
      << DescribeEvents(t);
  EXPECT_GE(CountEvents(t, proto::Event::BLOCKED, "sendmsg"), 1)
      << DescribeEvents(t);
}

// 4. Scratch is bounded and nothing the payload writes reaches the host,
// however deep (paths past PATH_MAX) or large.
TEST_F(SandboxEscapeTest, ScratchIsBoundedAndLeavesNothingOnTheHost) {
  const std::string nonce = absl::StrCat("dynahugprobe", getpid());
  const proto::Trace t = Trace(absl::StrCat(R"(
import os
nonce = ')",
                                            nonce, R"('
for base in (os.path.expanduser('~'), '/tmp'):
    try:
        os.chdir(base)
        for i in range(30):
            name = (nonce + 'x' * 200)[:200]
            os.mkdir(name)
            os.chdir(name)
        chunk = b'\0' * (1 << 20)
        with open(nonce + '.bin', 'wb') as f:
            for _ in range(180):
                f.write(chunk)
    except OSError:
        pass
)"));
  EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << DescribeEvents(t);
  // Nothing with the nonce anywhere the payload could have reached.
  for (const char* root : {"/tmp", "/home", "/root", "/var/tmp"}) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(
             root, std::filesystem::directory_options::skip_permission_denied,
             ec);
         !ec && it != std::filesystem::recursive_directory_iterator();
         it.increment(ec)) {
      if (it.depth() > 3) it.disable_recursion_pending();
      EXPECT_FALSE(absl::StrContains(it->path().filename().string(), nonce))
          << "left on the host: " << it->path();
    }
  }
}

// 5. Sixteen bytes of 0xff written to the event descriptor from a pure
// pickle used to blind every later event while the trace said OK. Now the
// write is denied and flagged, and stage 2 stays visible.
TEST_F(SandboxEscapeTest, GarbageOnTheEventChannelBlindsNothing) {
  const std::string file = dir_ + "/stage2";
  {
    std::ofstream out(file);
    out << "x";
  }
  const proto::Trace t = Trace(absl::StrCat(R"(
import _io, os, pickle
try:
    _io.FileIO(3, 'wb', False).write(b'\xff' * 16)
except OSError:
    pass
try:
    os.write(3, b'\xff' * 16)
except OSError:
    pass
try:
    os.chmod(')",
                                            file, R"(', 0o777)
except OSError:
    pass
pickle.loads = lambda *a, **k: None
)"));
  EXPECT_EQ(t.exit().status(), proto::ChildExit::OK) << DescribeEvents(t);
  EXPECT_EQ(CountEvents(t, proto::Event::INTEGRITY, "sandbox.channel.tamper"),
            1)
      << DescribeEvents(t);
  EXPECT_GE(CountEvents(t, proto::Event::BLOCKED, "write"), 2)
      << DescribeEvents(t);
  // Stage 2, after the garbage, is still recorded...
  EXPECT_TRUE(HasAudit(t, "os.chmod")) << DescribeEvents(t);
  // ... and so is the end of the load (the channel was never cut).
  EXPECT_NE(LoadResultEvent(t), nullptr) << DescribeEvents(t);
  EXPECT_EQ(CountEvents(t, proto::Event::INTEGRITY, "sandbox.channel.corrupt"),
            0);
}

// 6. Events hand-encoded by the payload never enter the trace.
TEST_F(SandboxEscapeTest, ForgedEventsAreRejected) {
  // An INTEGRITY event named "forged", length-prefixed, as the writer would
  // frame it: kind=8 (field 1), name (field 2).
  const proto::Trace t = Trace(R"(
import os, socket
ev = bytes([0x08, 0x08, 0x12, 0x06]) + b'forged'
frame = bytes([len(ev)]) + ev
for send in (lambda: os.write(3, frame),
             lambda: socket.socket(fileno=3).send(frame),
             lambda: os.writev(3, [frame]),
             lambda: os.dup2(os.open('/dev/null', os.O_WRONLY), 3),
             lambda: os.close(3)):
    try:
        send()
    except OSError:
        pass
)");
  for (const proto::Event& e : t.events()) {
    EXPECT_NE(e.name(), "forged") << "a forged event was accepted";
  }
  EXPECT_EQ(CountEvents(t, proto::Event::INTEGRITY, "sandbox.channel.tamper"),
            1)
      << DescribeEvents(t);
  EXPECT_NE(LoadResultEvent(t), nullptr) << DescribeEvents(t);
}

// 8 (environment part). The usual tells of a sandbox are gone, so a payload
// that checks for them acts, and its action is recorded.
TEST_F(SandboxEscapeTest, EnvironmentProbingPayloadActs) {
  const proto::Trace t = Trace(R"(
import os
tells = []
home = os.environ.get('HOME', '')
if 'dynahug' in home or not home.startswith('/home/'):
    tells.append('home')
if 'dynahug' in os.environ.get('TMPDIR', ''):
    tells.append('tmpdir')
if 'dynahug' in os.getcwd():
    tells.append('cwd')
def read(p):
    try:
        return open(p, 'rb').read()
    except OSError:
        return b''
ppid = os.getppid()
if ppid and b'dynahug' in read('/proc/%d/comm' % ppid) + read('/proc/%d/cmdline' % ppid):
    tells.append('parent')
if b'dynahug' in read('/proc/self/comm') + read('/proc/1/comm'):
    tells.append('comm')
if b'payload.pkl' in read('/proc/1/cmdline') + read('/proc/self/cmdline'):
    tells.append('cmdline')
if not tells:
    os.system('/bin/true')
)");
  EXPECT_GE(CountEvents(t, proto::Event::BLOCKED, "clone") +
                CountEvents(t, proto::Event::BLOCKED, "fork") +
                CountEvents(t, proto::Event::BLOCKED, "vfork") +
                CountEvents(t, proto::Event::BLOCKED, "execve"),
            1)
      << "the payload saw a tell and stayed quiet:\n"
      << DescribeEvents(t);
  EXPECT_TRUE(HasAudit(t, "os.system")) << DescribeEvents(t);
}

}  // namespace
}  // namespace dynahug::integration

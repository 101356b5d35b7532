// NATIVE events from the audit hook, in process with the shared interpreter:
// ctypes calls into libc, a call into an anonymous RWX page that holds only
// `ret`, memory wrappers, the load-phase gate, the per-load budget and the
// switch. (The cost of one ctypes event: bench/embed_bench.cc.)
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/audit_hook.h"
#include "hooks/base/sha256.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::hooks {
namespace {

using dynahug::testing::SharedInterpreter;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::map<std::string, std::string> ArgsOf(const proto::Event& e) {
  std::map<std::string, std::string> m;
  for (const auto& a : e.args()) m[a.key()] = a.value();
  return m;
}

std::vector<proto::Event> Native(const MemoryEventSink& sink) {
  std::vector<proto::Event> out;
  for (const proto::Event& e : sink.events()) {
    if (e.kind() == proto::Event::NATIVE) out.push_back(e);
  }
  return out;
}

const proto::Event* Find(const std::vector<proto::Event>& events,
                         const std::string& name) {
  for (const proto::Event& e : events) {
    if (e.name() == name) return &e;
  }
  return nullptr;
}

// The interpreter, with ctypes and mmap imported into __main__ (Exec runs
// in a copy of its namespace).
runtime::Interpreter& Py() {
  runtime::Interpreter& py = SharedInterpreter();
  absl::Status s = py.Exec(
      "import __main__, ctypes, _ctypes, mmap\n"
      "__main__.ctypes = ctypes\n__main__._ctypes = _ctypes\n"
      "__main__.mmap = mmap\n"
      "__main__.getpid_addr = ctypes.cast(ctypes.CDLL(None).getpid,"
      " ctypes.c_void_p).value\n");
  EXPECT_TRUE(s.ok()) << s;
  return py;
}

// Runs `code` with the hook recording into `sink` (the load phase).
void RunRecorded(const std::string& code, MemoryEventSink* sink,
                 AuditLimits limits = {}, std::optional<uint64_t> offset = {}) {
  runtime::Interpreter& py = Py();
  AuditHook& hook = AuditHook::Instance();
  PathContext ctx;
  ctx.scratch_dir = "/tmp/dh-native-scratch";
  hook.Start(sink, ctx, limits);
  hook.SetPickleOffset(offset);
  hook.SetRecording(true);
  absl::Status s = py.Exec(code);
  hook.SetRecording(false);
  hook.Stop();
  ASSERT_TRUE(s.ok()) << s;
}

bool Interposed(const proto::Event& e) {
  return ArgsOf(e)["via"] == "CFuncPtr.__call__";
}

void ExpectNativeStack(const proto::Event& e) {
  ASSERT_GT(e.stack_size(), 0) << e.name();
  EXPECT_LE(e.stack_size(), NativeLimits{}.max_frames);
  bool ctypes_module = false;
  for (const proto::Frame& f : e.stack()) {
    EXPECT_TRUE(f.native());
    EXPECT_NE(f.pc(), 0u);
    // The audit dispatch and this hook are not part of the stack.
    EXPECT_THAT(f.function(), Not(HasSubstr("AuditHook")));
    EXPECT_THAT(f.function(), Not(StartsWith("PySys_Audit")));
    // Host paths do not leak: whole paths only for system/python objects.
    if (!f.file().empty() && f.file()[0] == '/') {
      EXPECT_TRUE(f.file().starts_with("/usr/") || f.file().starts_with("/lib"))
          << f.file();
    }
    if (f.file().find("_ctypes") != std::string::npos) ctypes_module = true;
  }
  // Raised by _ctypes, or (interposed calls) seen before _ctypes runs.
  if (e.name() != "mmap.__new__" && !Interposed(e)) {
    EXPECT_TRUE(ctypes_module) << e.name();
  }
  if (Interposed(e)) {
    EXPECT_FALSE(ctypes_module);
    EXPECT_THAT(e.stack(0).file(), HasSubstr("libpython3"));
  }
}

TEST(ObserverNativeInspectorTest, InterposesForeignFunctionCalls) {
  runtime::Interpreter& py = Py();
  AuditHook& hook = AuditHook::Instance();
  EXPECT_TRUE(hook.InterposeCtypesCalls());
  EXPECT_TRUE(hook.ctypes_interposed());
  EXPECT_TRUE(hook.InterposeCtypesCalls());  // idempotent
  // Calls still work, results and errors pass through unchanged.
  absl::StatusOr<std::string> pid =
      py.Eval("ctypes.CDLL(None).getpid() == __import__('os').getpid()");
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, "True");
  absl::StatusOr<std::string> err = py.Eval(
      "(lambda f: (f.__setattr__('argtypes', [ctypes.c_int]), f('x')))("
      "ctypes.CDLL(None).abs)");
  ASSERT_FALSE(err.ok());
  EXPECT_THAT(std::string(err.status().message()), HasSubstr("ArgumentError"));
}

TEST(ObserverNativeInspectorTest, CtypesCallIntoLibc) {
  MemoryEventSink sink;
  RunRecorded("libc = ctypes.CDLL(None)\nlibc.getpid()\n", &sink, {}, 9);
  std::vector<proto::Event> native = Native(sink);
  const proto::Event* dlopen = Find(native, "ctypes.dlopen");
  const proto::Event* dlsym = Find(native, "ctypes.dlsym");
  const proto::Event* call = Find(native, "ctypes.call_function");
  ASSERT_NE(dlopen, nullptr);
  ASSERT_NE(dlsym, nullptr);
  ASSERT_NE(call, nullptr);
  for (const proto::Event* e : {dlopen, dlsym, call}) {
    ExpectNativeStack(*e);
    EXPECT_EQ(e->pickle_offset(), 9u);
  }
  EXPECT_EQ(ArgsOf(*dlsym)["symbol"], "getpid");
  std::map<std::string, std::string> args = ArgsOf(*call);
  EXPECT_THAT(args["function"], StartsWith("0x"));
  EXPECT_EQ(args["argc"], "0");
  EXPECT_EQ(args["via"], "CFuncPtr.__call__");
  EXPECT_EQ(args["target"], "file-exec");
  EXPECT_EQ(args["target_prot"], "r-xp");
  EXPECT_THAT(args["target_object"], HasSubstr("libc.so"));
  EXPECT_THAT(args["target_symbol"], HasSubstr("getpid"));  // or __getpid
  EXPECT_EQ(args.count("code_disasm"), 0u);  // read-only code of a file
  // Every NATIVE event but an interposed call follows its AUDIT event with
  // the same arguments.
  for (size_t i = 1; i < sink.events().size(); ++i) {
    const proto::Event& e = sink.events()[i];
    if (e.kind() != proto::Event::NATIVE || Interposed(e)) continue;
    const proto::Event& prev = sink.events()[i - 1];
    EXPECT_EQ(prev.kind(), proto::Event::AUDIT);
    EXPECT_EQ(prev.name(), e.name());
    ASSERT_LE(prev.args_size(), e.args_size());
    for (int j = 0; j < prev.args_size(); ++j) {
      EXPECT_EQ(prev.args(j).key(), e.args(j).key());
      EXPECT_EQ(prev.args(j).value(), e.args(j).value());
    }
  }
  fprintf(stderr, "example NATIVE event:\n%s\n", call->DebugString().c_str());
}

// _ctypes.call_function raises the real audit event: AUDIT, then NATIVE.
TEST(ObserverNativeInspectorTest, AuditedCallFunction) {
  MemoryEventSink sink;
  RunRecorded("_ctypes.call_function(getpid_addr, ())", &sink);
  const std::vector<proto::Event>& all = sink.events();
  size_t i = 0;
  while (i < all.size() && all[i].name() != "ctypes.call_function") ++i;
  ASSERT_LT(i + 1, all.size());
  EXPECT_EQ(all[i].kind(), proto::Event::AUDIT);
  const proto::Event& native = all[i + 1];
  EXPECT_EQ(native.kind(), proto::Event::NATIVE);
  EXPECT_EQ(native.name(), "ctypes.call_function");
  std::map<std::string, std::string> args = ArgsOf(native);
  EXPECT_EQ(args.count("via"), 0u);
  EXPECT_EQ(args["target"], "file-exec");
  EXPECT_THAT(args["target_symbol"], HasSubstr("getpid"));  // or __getpid
  EXPECT_EQ(args["function"], ArgsOf(all[i])["function"]);
  ExpectNativeStack(native);
}

// Benign: the page holds a single `ret`, which is all that runs.
constexpr char kCallAnonymousRet[] =
    "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE |"
    " mmap.PROT_EXEC)\n"
    "m.write(b'\\xc3')\n"
    "buf = (ctypes.c_char * 4096).from_buffer(m)\n"
    "ctypes.CFUNCTYPE(None)(ctypes.addressof(buf))()\n"
    "del buf\n"
    "m.close()\n";

TEST(ObserverNativeInspectorTest, CallIntoAnonymousExecutableMemory) {
  MemoryEventSink sink;
  RunRecorded(kCallAnonymousRet, &sink);
  std::vector<proto::Event> native = Native(sink);
  const proto::Event* mapped = Find(native, "mmap.__new__");
  ASSERT_NE(mapped, nullptr);
  ExpectNativeStack(*mapped);
  const proto::Event* wrap = Find(native, "ctypes.cdata/buffer");
  ASSERT_NE(wrap, nullptr);
  EXPECT_EQ(ArgsOf(*wrap)["target"], "anonymous-exec");
  EXPECT_EQ(ArgsOf(*wrap).count("code_disasm"), 0u);  // not a call

  const proto::Event* call = nullptr;
  for (const proto::Event& e : native) {
    if (e.name() == "ctypes.call_function" &&
        ArgsOf(e)["target"] != "file-exec") {
      call = &e;
    }
  }
  ASSERT_NE(call, nullptr);
  ExpectNativeStack(*call);
  std::map<std::string, std::string> args = ArgsOf(*call);
  EXPECT_EQ(args["target"], "anonymous-exec");
  EXPECT_EQ(args["target_prot"], "rwxs");  // mmap's default: MAP_SHARED
  EXPECT_EQ(args.count("target_object"), 0u);
  EXPECT_THAT(args["code_disasm"], StartsWith(args["function"] + ": ret"));
  EXPECT_THAT(args["code_hex"], StartsWith("c300"));
  EXPECT_EQ(args["code_size"], "64");
  std::string bytes(64, '\0');
  bytes[0] = '\xc3';
  EXPECT_EQ(args["code_sha256"], Sha256Prefix(bytes));
  // 16 instructions at most.
  EXPECT_LE(
      std::count(args["code_disasm"].begin(), args["code_disasm"].end(), ';'),
      15);
  fprintf(stderr, "example NATIVE event:\n%s\n", call->DebugString().c_str());
}

TEST(ObserverNativeInspectorTest, MemoryWrappersAreClassified) {
  MemoryEventSink sink;
  RunRecorded(
      "x = ctypes.c_int(5)\n"
      "y = ctypes.c_int.from_address(ctypes.addressof(x))\n"
      "s = ctypes.string_at(ctypes.addressof(x), 4)\n",
      &sink);
  std::vector<proto::Event> native = Native(sink);
  for (const char* name : {"ctypes.cdata", "ctypes.string_at"}) {
    const proto::Event* e = Find(native, name);
    ASSERT_NE(e, nullptr) << name;
    std::map<std::string, std::string> args = ArgsOf(*e);
    EXPECT_TRUE(args["target"] == "heap" || args["target"] == "anonymous")
        << name << " " << args["target"];
    EXPECT_EQ(args["target_prot"], "rw-p");
    EXPECT_EQ(args.count("code_disasm"), 0u);
    ExpectNativeStack(*e);
  }
}

TEST(ObserverNativeInspectorTest, NothingOutsideTheLoadPhase) {
  runtime::Interpreter& py = Py();
  AuditHook& hook = AuditHook::Instance();
  MemoryEventSink sink;
  PathContext ctx;
  hook.Start(&sink, ctx);  // started, not recording
  ASSERT_TRUE(py.Exec("ctypes.CDLL(None).getpid()").ok());
  hook.SetRecording(true);
  hook.SetRecording(false);
  ASSERT_TRUE(py.Exec("ctypes.CDLL(None).getpid()").ok());
  hook.Stop();
  ASSERT_TRUE(py.Exec("ctypes.CDLL(None).getpid()").ok());
  EXPECT_TRUE(sink.events().empty());
  EXPECT_EQ(hook.native_events(), 0u);
}

TEST(ObserverNativeInspectorTest, SwitchedOffKeepsOnlyAuditEvents) {
  MemoryEventSink sink;
  AuditLimits limits;
  limits.native.enabled = false;
  RunRecorded(
      "ctypes.CDLL(None).getpid()\n_ctypes.call_function(getpid_addr, ())",
      &sink, limits);
  EXPECT_TRUE(Native(sink).empty());
  bool audit_call = false;
  for (const proto::Event& e : sink.events()) {
    audit_call |= e.name() == "ctypes.call_function";
  }
  EXPECT_TRUE(audit_call);
}

TEST(ObserverNativeInspectorTest, BudgetPerLoad) {
  AuditLimits limits;
  limits.native.max_events = 3;
  limits.native.max_frames = 4;
  MemoryEventSink sink;
  RunRecorded(
      "libc = ctypes.CDLL(None)\n"
      "for _ in range(10): _ctypes.call_function(getpid_addr, ())\n",
      &sink, limits);
  std::vector<proto::Event> native = Native(sink);
  ASSERT_EQ(native.size(), 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(native[i].stack_size(), 4);
  EXPECT_EQ(native[3].name(), "dynahug.native_budget_exhausted");
  EXPECT_EQ(ArgsOf(native[3])["max_events"], "3");
  EXPECT_EQ(AuditHook::Instance().native_events(), 4u);
  // AUDIT events go on regardless.
  int audit_calls = 0;
  for (const proto::Event& e : sink.events()) {
    if (e.kind() == proto::Event::AUDIT && e.name() == "ctypes.call_function") {
      ++audit_calls;
    }
  }
  EXPECT_EQ(audit_calls, 10);
  // The budget is per load: Start() resets it.
  MemoryEventSink next;
  RunRecorded("ctypes.CDLL(None).getpid()", &next, limits);
  EXPECT_EQ(Native(next).size(), 3u);
}

TEST(ObserverNativeInspectorTest, ArgumentValuesAreBounded) {
  AuditLimits limits;
  limits.native.max_value_bytes = 24;
  limits.native.max_args = 5;
  MemoryEventSink sink;
  RunRecorded(kCallAnonymousRet, &sink, limits);
  bool seen = false;
  for (const proto::Event& e : Native(sink)) {
    EXPECT_LE(e.args_size(), 5) << e.name();
    for (const auto& a : e.args()) EXPECT_LE(a.value().size(), 24u + 3);
    for (const auto& f : e.stack()) EXPECT_LE(f.function().size(), 24u + 3);
    seen |= e.name() == "ctypes.call_function" &&
            ArgsOf(e)["target"] == "anonymous-exec";
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace dynahug::hooks

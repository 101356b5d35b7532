// Capabilities: what a load was observed trying to do at run time, with
// evidence a person can act on ("process: os.system called by REDUCE at
// offset 93 in archive/data.pkl; clone blocked").
//
// A rule is about a kind of behaviour, never about a file or a technique,
// and it only accepts events the payload caused, not library noise (a
// library that probes IPv6 when it is imported, the temporary directory
// torch creates to unpack a legacy tar). Attribution (PayloadCausedEvents):
//
//   - PICKLE_CALL of a call opcode (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST,
//     BUILD) with an offset: the pickle chose the callee, so the call is the
//     payload's. persistent_load (PERSID/BINPERSID) calls the library's
//     function and is not a payload call.
//   - AUDIT and NATIVE events: caused by the payload when they happened
//     while one of those calls ran: the latest opcode record before them
//     (GLOBAL, PICKLE_CALL or OPCODE, which the unpickler emits before it
//     runs the opcode) is such a call, at the event's pickle_offset. Events
//     without an offset ran outside the unpickler (the library before or
//     after it); events at the offset of a GLOBAL ran while find_class
//     imported a module (module initialisation code, not the payload).
//     Members are not compared: audit events name the loaded target
//     ("weights.pth"), unpickler events the stream inside it
//     ("archive/data.pkl"); the order of events ties them together. Calls
//     past the loader's per-callee recording cap (256) have no PICKLE_CALL,
//     so what they do is not attributed.
//   - BLOCKED events come from the parent's seccomp supervisor and carry no
//     offset; the child is stopped in the syscall until it is answered, so a
//     denial is attributed like the nearest preceding child event that can
//     carry an offset (AUDIT, NATIVE, GLOBAL, PICKLE_CALL, IMPORT, OPCODE;
//     never PYTHON_CALL, INTEGRITY or LOG).
//   - Events of the shutdown phase (between LOG "shutdown.begin" and
//     "shutdown.end": atexit handlers, threads, timers and signal handlers
//     the loads left behind, run before the child exits) carry no offset.
//     Those that AUDIT/NATIVE attribution would take are attributed to the
//     latest payload-caused registration of deferred work made during the
//     load (the "deferred" rule's PICKLE_CALL or AUDIT, e.g. REDUCE
//     atexit.register(os.system, ...)): what runs later is what the payload
//     registered. Without such a registration they are the libraries'.
//   - INTEGRITY findings are computed after the load and carry no offset.
//     They are judged by what they say: a module added to sys.modules by an
//     import, or a spec-less submodule of a package imported during the load
//     (pyexpat registers pyexpat.errors), is not tampering, nor is
//     `class.attr.wrapped` (a library wrapping its own method with a
//     function of its own, hooks/integrity_diff.h); `integrity.truncated`
//     only counts findings that were not emitted. Library class and function
//     findings (class.attr.*, class.bases.changed, function.attr.rebound)
//     are tampering.
//
// The rules were checked against the benign corpus (no firing; see
// features/README.md) and every effect of the malicious corpus
// (tests/integration/malicious_corpus_test.cc, whose evidence rules are
// these).
//
// Thread safety: pure functions of their arguments.
#ifndef DYNAHUG_FEATURES_CAPABILITIES_H_
#define DYNAHUG_FEATURES_CAPABILITIES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/dynahug.pb.h"

namespace dynahug::features {

// The numeric values are not stored anywhere; bundles and verdicts use the
// names (CapabilityName).
enum class Capability : uint8_t {
  // "process": a process was about to be created or replaced (payload-caused
  // BLOCKED clone/fork/vfork/execve, AUDIT os.system, os.exec, os.posix_spawn,
  // os.spawn, os.fork, os.forkpty, subprocess.Popen, pty.spawn).
  kProcess = 0,
  // "network": a socket or connection was requested (payload-caused BLOCKED
  // socket/connect/sendto/bind, AUDIT socket.__new__, socket.connect, ...).
  kNetwork = 1,
  // "write-outside-scratch": a payload-caused write-mode open, or a mkdir,
  // rename, remove, link, chmod, copy... of a path outside the child's
  // scratch directory.
  kWriteOutsideScratch = 2,
  // "exec-source": code the pickle supplied was compiled or executed
  // (payload-caused AUDIT exec, compile or marshal.loads that is not import
  // machinery, features/internal/trace_tokens.h ProvenanceTracker), or a
  // pickle call of exec/eval/compile/marshal.loads/FunctionType-like
  // builders with a code-like argument.
  kExecSource = 3,
  // "native-anon-exec": native code ran from, or memory was made, writable
  // and executable (NATIVE events whose target is anonymous executable
  // memory or has rwx protection).
  kNativeAnonExec = 4,
  // "namespace-tamper": modules, builtins, the loader or the event channel
  // were changed: an INTEGRITY finding that is not an import (sys.modules
  // changes, patched module attributes, library classes and functions,
  // loader.*, sandbox.channel.*), a payload
  // BUILD on a module or type, a mutator call (setattr, operator.i*), or an
  // environment change (os.putenv).
  kNamespaceTamper = 5,
  // "stub-code-call": a stub standing in for an uninstalled module was
  // called with a code-like string argument (features/internal/
  // trace_tokens.h ClassifyString "str.code").
  kStubCodeCall = 6,
  // "deferred": something was registered to run later (atexit, signal
  // handler, timer, trace/profile hook, thread): INTEGRITY
  // atexit.registered/threads.started or a payload call that registers.
  kDeferred = 7,
  // "dynamic-import": the pickle asked for a module by name at load time
  // (__import__, importlib.import_module, pkgutil.resolve_name, ...).
  kDynamicImport = 8,
  // "nested-load": the pickle called a deserialiser on bytes it carries
  // (pickle.loads, numpy.load, torch.load, ...).
  kNestedLoad = 9,
};
inline constexpr int kCapabilityCount = 10;

// Every capability, in enum order.
const std::vector<Capability>& AllCapabilities();

// Stable name used in verdicts and bundles ("process", "network",
// "write-outside-scratch", "exec-source", "native-anon-exec",
// "namespace-tamper", "stub-code-call", "deferred", "dynamic-import",
// "nested-load").
std::string_view CapabilityName(Capability c);

// Inverse of CapabilityName; nullopt for an unknown name.
std::optional<Capability> ParseCapability(std::string_view name);

// One sentence saying what the rule of `c` accepts, for messages.
std::string_view CapabilityRuleText(Capability c);

// For each event of `trace` (same indices as trace.events()): whether the
// payload caused it, by the attribution in the file comment. INTEGRITY
// findings are never attributed (the rules judge them by content).
std::vector<bool> PayloadCausedEvents(const proto::Trace& trace);

// Indices into trace.events() of the events that prove `c`, in trace
// order; empty when there are none.
std::vector<int> FindCapabilityEvents(const proto::Trace& trace, Capability c);

// One observed capability and its proof.
struct CapabilityFinding {
  Capability capability = Capability::kProcess;
  // Indices into trace.events(), trace order, never empty.
  std::vector<int> events;
  // One line for people, naming what happened, the pickle opcode, offset and
  // member that caused it and what the sandbox blocked, e.g.
  // "os.system called by REDUCE at offset 93 in archive/data.pkl: audit
  // os.system executable=/bin/true; clone blocked". At most ~300 bytes.
  std::string evidence;
};

// Every capability `trace` shows, in enum order (at most one finding per
// capability).
std::vector<CapabilityFinding> FindCapabilities(const proto::Trace& trace);

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_CAPABILITIES_H_

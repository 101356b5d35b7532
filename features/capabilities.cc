#include "features/capabilities.h"

#include <algorithm>
#include <array>
#include <set>
#include <string>

#include "features/internal/str.h"
#include "features/internal/trace_tokens.h"

namespace dynahug::features {
namespace {

using internal::ArgValue;
using internal::Cat;
using Names = std::set<std::string, std::less<>>;

bool In(const Names& names, std::string_view name) {
  return names.find(name) != names.end();
}

bool HasArg(const proto::Event& e, std::string_view key) {
  return std::any_of(e.args().begin(), e.args().end(),
                     [&](const proto::Argument& a) { return a.key() == key; });
}

bool IsAudit(const proto::Event& e, const Names& names) {
  return e.kind() == proto::Event::AUDIT && In(names, e.name());
}

bool IsBlocked(const proto::Event& e, const Names& names) {
  return e.kind() == proto::Event::BLOCKED && e.blocked() &&
         In(names, e.name());
}

bool IsPickleCall(const proto::Event& e, const Names& names) {
  return e.kind() == proto::Event::PICKLE_CALL && In(names, e.name());
}

// A PICKLE_CALL the pickle itself made: a call opcode with its offset.
bool IsPayloadCall(const proto::Event& e) {
  static const Names kCallOps = {"REDUCE", "NEWOBJ", "NEWOBJ_EX",
                                 "OBJ",    "INST",   "BUILD"};
  return e.kind() == proto::Event::PICKLE_CALL && e.has_pickle_offset() &&
         In(kCallOps, ArgValue(e, "op"));
}

// An event the loader's unpickler emits for the opcode it is executing
// (before running it, stamped with the opcode's offset).
bool IsOpcodeRecord(const proto::Event& e) {
  return e.has_pickle_offset() && (e.kind() == proto::Event::GLOBAL ||
                                   e.kind() == proto::Event::PICKLE_CALL ||
                                   e.kind() == proto::Event::OPCODE);
}

// LOG events that open and close the child's shutdown phase
// (runtime/embed/loader.h, Loader::RunShutdown).
constexpr std::string_view kShutdownBegin = "shutdown.begin";
constexpr std::string_view kShutdownEnd = "shutdown.end";

// Kinds the child stamps with the offset of the opcode that was executing.
bool CanCarryOffset(const proto::Event& e) {
  switch (e.kind()) {
    case proto::Event::AUDIT:
    case proto::Event::NATIVE:
    case proto::Event::GLOBAL:
    case proto::Event::PICKLE_CALL:
    case proto::Event::IMPORT:
    case proto::Event::OPCODE:
      return true;
    default:
      return false;
  }
}

bool DeferredEvent(const proto::Event& e);

// For each event: the payload call it is attributed to (the call itself for
// a payload PICKLE_CALL), or -1.
std::vector<int> AttributedCalls(const proto::Trace& trace) {
  std::vector<int> call(trace.events_size(), -1);
  int running = -1;       // latest opcode record
  int last_carrier = -1;  // latest event that can carry an offset
  int deferred = -1;      // latest payload call that registered deferred work
  bool shutdown = false;  // inside the shutdown phase
  for (int i = 0; i < trace.events_size(); ++i) {
    const proto::Event& e = trace.events(i);
    switch (e.kind()) {
      case proto::Event::PICKLE_CALL:
        if (IsPayloadCall(e)) call[i] = i;
        break;
      case proto::Event::AUDIT:
      case proto::Event::NATIVE:
        if (e.has_pickle_offset() && running >= 0 &&
            IsPayloadCall(trace.events(running)) &&
            trace.events(running).pickle_offset() == e.pickle_offset()) {
          call[i] = running;
        } else if (shutdown && !e.has_pickle_offset()) {
          call[i] = deferred;
        }
        break;
      case proto::Event::LOG:
        if (e.name() == kShutdownBegin) {
          shutdown = true;
          running = -1;
        } else if (e.name() == kShutdownEnd) {
          shutdown = false;
        }
        break;
      case proto::Event::BLOCKED:
        if (last_carrier >= 0) call[i] = call[last_carrier];
        break;
      default:
        break;
    }
    if (!shutdown && call[i] >= 0 && DeferredEvent(e)) deferred = call[i];
    if (IsOpcodeRecord(e)) running = i;
    if (CanCarryOffset(e)) last_carrier = i;
  }
  return call;
}

// --- per-kind predicates on one payload-caused event ------------------------

bool ProcessEvent(const proto::Event& e) {
  static const Names kSyscalls = {"clone", "fork", "vfork", "execve",
                                  "execveat"};
  static const Names kAudit = {
      "os.system",        "os.exec",   "os.posix_spawn",
      "os.spawn",         "os.fork",   "os.forkpty",
      "subprocess.Popen", "pty.spawn", "os.startfile"};
  return IsBlocked(e, kSyscalls) || IsAudit(e, kAudit);
}

bool NetworkEvent(const proto::Event& e) {
  static const Names kSyscalls = {"socket", "connect", "sendto", "bind"};
  static const Names kAudit = {"socket.__new__", "socket.connect",
                               "socket.sendto", "http.client.connect",
                               "smtplib.connect"};
  return IsBlocked(e, kSyscalls) || IsAudit(e, kAudit);
}

// The path class the audit hook assigned to an event's path argument
// ("path" for open, the first positional argument for os.* calls).
std::string_view PathClass(const proto::Event& e) {
  if (HasArg(e, "path")) return ArgValue(e, "path");
  return ArgValue(e, "0");
}

bool WriteOutsideScratchEvent(const proto::Event& e) {
  static const Names kMutators = {
      "os.mkdir", "os.rename",       "os.remove",       "os.rmdir",
      "os.link",  "os.symlink",      "os.truncate",     "os.chmod",
      "os.chown", "shutil.copyfile", "shutil.copytree", "shutil.move"};
  if (e.kind() != proto::Event::AUDIT) return false;
  const std::string_view where = PathClass(e);
  if (where.empty() || where == "scratch") return false;
  if (e.name() == "open") {
    return ArgValue(e, "mode").find_first_of("wax+") != std::string::npos;
  }
  return In(kMutators, e.name());
}

// A BUILD that writes into a module or type (not a function: dill and
// cloudpickle BUILD the functions they create), a call whose purpose is to
// mutate an existing object, or an environment change.
bool TamperEvent(const proto::Event& e) {
  static const Names kMutatorCalls = {
      "builtins.setattr", "builtins.delattr",  "operator.setitem",
      "operator.delitem", "operator.iadd",     "operator.isub",
      "operator.imul",    "operator.itruediv", "operator.ior",
      "operator.iand",    "operator.ixor"};
  static const Names kAudit = {"os.putenv", "os.unsetenv"};
  if (e.kind() == proto::Event::PICKLE_CALL && ArgValue(e, "op") == "BUILD") {
    return e.name().starts_with("builtins.module.") ||
           e.name().starts_with("builtins.type.");
  }
  return IsPickleCall(e, kMutatorCalls) || IsAudit(e, kAudit);
}

bool DeferredEvent(const proto::Event& e) {
  static const Names kCalls = {
      "atexit.register",      "signal.signal",         "signal.setitimer",
      "signal.alarm",         "sys.setprofile",        "sys.settrace",
      "threading.setprofile", "threading.settrace",    "threading.Thread",
      "threading.Timer",      "threading.Thread.start"};
  static const Names kAudit = {"sys.setprofile", "sys.settrace"};
  return IsPickleCall(e, kCalls) || IsAudit(e, kAudit);
}

bool DynamicImportEvent(const proto::Event& e) {
  static const Names kCalls = {"builtins.__import__", "importlib.import_module",
                               "importlib.__import__", "pkgutil.resolve_name",
                               "runpy.run_module"};
  return IsPickleCall(e, kCalls);
}

bool NestedLoadEvent(const proto::Event& e) {
  static const Names kCalls = {
      "pickle.loads", "pickle.load",      "_pickle.loads", "_pickle.load",
      "numpy.load",   "torch.load",       "joblib.load",   "dill.loads",
      "dill.load",    "cloudpickle.loads"};
  return IsPickleCall(e, kCalls);
}

// Whether any argument of a PICKLE_CALL is a code-like string.
bool HasCodeArgument(const proto::Event& e) {
  return std::any_of(e.args().begin(), e.args().end(),
                     [](const proto::Argument& a) {
                       return a.key() != "op" && a.key() != "stub" &&
                              internal::ArgType(a.value()) == "str.code";
                     });
}

bool StubCodeCallEvent(const proto::Event& e) {
  return e.kind() == proto::Event::PICKLE_CALL &&
         ArgValue(e, "stub") == "true" && HasCodeArgument(e);
}

// Native code from writable or anonymous executable memory: a target that
// is executable but not a file's code, or writable and executable.
bool NativeAnonExecEvent(const proto::Event& e) {
  if (e.kind() != proto::Event::NATIVE) return false;
  const std::string_view target = ArgValue(e, "target");
  const std::string_view prot = ArgValue(e, "target_prot");
  const bool foreign_exec = target.ends_with("-exec") && target != "file-exec";
  const bool wx = prot.size() >= 3 && prot[1] == 'w' && prot[2] == 'x';
  return foreign_exec || wx;
}

// --- INTEGRITY findings (no offset: judged by content) ----------------------

Names ImportedModules(const proto::Trace& trace) {
  Names out;
  for (const proto::Event& e : trace.events()) {
    if (e.kind() == proto::Event::AUDIT && e.name() == "import") {
      out.insert(std::string(ArgValue(e, "module")));
    } else if (e.kind() == proto::Event::INTEGRITY &&
               e.name() == "sys.modules.added" &&
               ArgValue(e, "origin") == "import") {
      out.insert(std::string(ArgValue(e, "module")));
    }
  }
  return out;
}

bool IsDeferredFinding(const proto::Event& e) {
  return e.name() == "atexit.registered" || e.name() == "threads.started";
}

// Whether `module` is a submodule-like name ("pkg.child") of a package
// imported during the load.
bool ChildOfImported(std::string_view module, const Names& imported) {
  const size_t dot = module.rfind('.');
  return dot != std::string_view::npos && In(imported, module.substr(0, dot));
}

// Any namespace finding except the deferred ones, the truncation note, and
// side effects of imports during the load: modules an import put into
// sys.modules (with a spec; a spec-less submodule of a package imported
// during the load, e.g. the pyexpat.errors a C extension registers; a
// non-module entry under such a package, e.g. the typing.io class typing
// registers), and threading's profile/trace hooks, which a fresh import of
// threading creates (None where the loader saw no module).
bool IsTamperFinding(const proto::Event& e, const Names& imported) {
  if (IsDeferredFinding(e) || e.name() == "integrity.truncated" ||
      e.name() == "class.attr.wrapped") {
    return false;
  }
  if (e.name() == "loader.hook.disabled") {
    const std::string_view hook = ArgValue(e, "hook");
    return !(hook.starts_with("threading.") && In(imported, "threading"));
  }
  if (e.name() != "sys.modules.added") return true;
  const std::string_view origin = ArgValue(e, "origin");
  if (origin == "import") return false;
  if (origin == "no-spec" || origin.starts_with("non-module:")) {
    return !ChildOfImported(ArgValue(e, "module"), imported);
  }
  return true;
}

// What a rule looks at.
enum class Scope {
  kPayload,     // payload-caused events only
  kCodeSource,  // payload-caused and not import machinery (ProvenanceTracker)
  kAny,         // every event (native memory classes need no attribution)
};

struct Rule {
  Capability capability;
  std::string_view name;
  std::string_view text;
  Scope scope;
  bool (*event)(const proto::Event&);
  // On INTEGRITY findings, or null when the rule ignores them.
  bool (*finding)(const proto::Event&, const Names& imported);
};

bool ExecSourceEvent(const proto::Event& e) {
  static const Names kAudit = {"exec", "compile", "marshal.loads"};
  return IsAudit(e, kAudit);
}

const std::array<Rule, kCapabilityCount>& Rules() {
  static const std::array<Rule, kCapabilityCount> rules = {{
      {Capability::kProcess, "process",
       "payload-caused BLOCKED clone/fork/vfork/execve or AUDIT os.system/"
       "os.exec/os.posix_spawn/os.spawn/os.fork/os.forkpty/subprocess.Popen/"
       "pty.spawn",
       Scope::kPayload, ProcessEvent, nullptr},
      {Capability::kNetwork, "network",
       "payload-caused BLOCKED socket/connect/sendto/bind or AUDIT "
       "socket.__new__/socket.connect/...",
       Scope::kPayload, NetworkEvent, nullptr},
      {Capability::kWriteOutsideScratch, "write-outside-scratch",
       "payload-caused AUDIT write-mode open or os.mkdir/rename/remove/... on "
       "a path outside scratch",
       Scope::kPayload, WriteOutsideScratchEvent, nullptr},
      {Capability::kExecSource, "exec-source",
       "payload-caused AUDIT exec/compile/marshal.loads that is not import "
       "machinery",
       Scope::kCodeSource, ExecSourceEvent, nullptr},
      {Capability::kNativeAnonExec, "native-anon-exec",
       "NATIVE event on executable memory that is not a file's code, or on "
       "writable+executable memory",
       Scope::kAny, NativeAnonExecEvent, nullptr},
      {Capability::kNamespaceTamper, "namespace-tamper",
       "INTEGRITY namespace finding (not an import), or a payload BUILD on a "
       "module/type, mutator call (setattr, operator.i*) or os.putenv",
       Scope::kPayload, TamperEvent,
       [](const proto::Event& e, const Names& imported) {
         return IsTamperFinding(e, imported);
       }},
      {Capability::kStubCodeCall, "stub-code-call",
       "payload PICKLE_CALL of a stub (uninstalled module) with a code-like "
       "string argument",
       Scope::kPayload, StubCodeCallEvent, nullptr},
      {Capability::kDeferred, "deferred",
       "INTEGRITY atexit.registered/threads.started or a payload "
       "registration of atexit/signal/timer/trace hook/thread",
       Scope::kPayload, DeferredEvent,
       [](const proto::Event& e, const Names&) {
         return IsDeferredFinding(e);
       }},
      {Capability::kDynamicImport, "dynamic-import",
       "PICKLE_CALL of __import__/import_module/resolve_name", Scope::kPayload,
       DynamicImportEvent, nullptr},
      {Capability::kNestedLoad, "nested-load",
       "PICKLE_CALL of pickle.loads/numpy.load/torch.load/...", Scope::kPayload,
       NestedLoadEvent, nullptr},
  }};
  return rules;
}

const Rule& RuleOf(Capability c) { return Rules()[static_cast<size_t>(c)]; }

// Provenance of every event (ProvenanceTracker), for Scope::kCodeSource.
std::vector<bool> PickleProvenance(const proto::Trace& trace) {
  std::vector<bool> out(trace.events_size(), false);
  internal::ProvenanceTracker tracker;
  for (int i = 0; i < trace.events_size(); ++i) {
    out[i] = tracker.Observe(trace.events(i)) == internal::Provenance::kPickle;
  }
  return out;
}

// Shared inputs of the rules for one trace.
struct TraceFacts {
  explicit TraceFacts(const proto::Trace& trace)
      : calls(AttributedCalls(trace)),
        pickle(PickleProvenance(trace)),
        imported(ImportedModules(trace)) {}
  std::vector<int> calls;
  std::vector<bool> pickle;
  Names imported;
};

std::vector<int> Evaluate(const proto::Trace& trace, const Rule& rule,
                          const TraceFacts& facts) {
  std::vector<int> out;
  for (int i = 0; i < trace.events_size(); ++i) {
    const proto::Event& e = trace.events(i);
    bool hit = false;
    if (e.kind() == proto::Event::INTEGRITY) {
      hit = rule.finding != nullptr && rule.finding(e, facts.imported);
    } else if (rule.event(e)) {
      switch (rule.scope) {
        case Scope::kPayload:
          hit = facts.calls[i] >= 0;
          break;
        case Scope::kCodeSource:
          hit = facts.calls[i] >= 0 && facts.pickle[i];
          break;
        case Scope::kAny:
          hit = true;
          break;
      }
    }
    if (hit) out.push_back(i);
  }
  return out;
}

// --- evidence text ----------------------------------------------------------

constexpr size_t kMaxEvidenceBytes = 300;
constexpr size_t kMaxArgBytes = 40;

// Arguments worth showing a person (no hashes, raw registers, code bytes).
bool ShowArg(std::string_view key) {
  static const Names kHidden = {"sha256",      "code_hex", "code_sha256",
                                "code_disasm", "function", "size",
                                "code_size",   "errno"};
  return !In(kHidden, key) && !key.starts_with("arg");
}

std::string Cut(std::string_view s, size_t n) {
  if (s.size() <= n) return std::string(s);
  return Cat(s.substr(0, n), "...");
}

// "os.system executable=/bin/true" (name and up to three shown arguments).
std::string DescribeEvent(const proto::Event& e) {
  std::string out = e.name();
  int shown = 0;
  for (const proto::Argument& a : e.args()) {
    if (!ShowArg(a.key()) || shown == 3) continue;
    out += Cat(" ", a.key(), "=", Cut(a.value(), kMaxArgBytes));
    ++shown;
  }
  return out;
}

std::string_view KindLabel(const proto::Event& e) {
  switch (e.kind()) {
    case proto::Event::PICKLE_CALL:
      return "call";
    case proto::Event::AUDIT:
      return "audit";
    case proto::Event::NATIVE:
      return "native";
    case proto::Event::INTEGRITY:
      return "integrity";
    default:
      return "event";
  }
}

// "os.system called by REDUCE at offset 28 in archive/data.pkl".
std::string DescribeCall(const proto::Event& call) {
  std::string out = Cat(call.name(), " called by ",
                        ArgValue(call, "op").empty() ? std::string_view("?")
                                                     : ArgValue(call, "op"),
                        " at offset ", call.pickle_offset());
  if (!call.member().empty()) out += Cat(" in ", call.member());
  return out;
}

std::string Evidence(const proto::Trace& trace, const std::vector<int>& hits,
                     const TraceFacts& facts) {
  const proto::Event& first = trace.events(hits.front());
  std::string head;
  const int call = facts.calls[hits.front()];
  if (call >= 0) {
    head = DescribeCall(trace.events(call));
  } else if (first.kind() == proto::Event::INTEGRITY) {
    head = "after the load";
  } else if (first.has_pickle_offset()) {
    head = Cat("at offset ", first.pickle_offset());
  } else {
    head = "outside the unpickler";
  }
  std::vector<std::string> what;
  Names blocked;
  for (int i : hits) {
    const proto::Event& e = trace.events(i);
    if (e.kind() == proto::Event::BLOCKED) {
      blocked.insert(e.name());
    } else if (i != call || what.empty()) {
      std::string d = Cat(KindLabel(e), " ", DescribeEvent(e));
      if (std::find(what.begin(), what.end(), d) == what.end()) {
        what.push_back(std::move(d));
      }
    }
  }
  std::string out = head;
  if (!what.empty()) {
    out += Cat(": ", what.front());
    for (size_t i = 1; i < what.size() && out.size() < kMaxEvidenceBytes; ++i)
      out += Cat("; ", what[i]);
  }
  if (!blocked.empty()) {
    out += Cat(what.empty() ? ": " : "; ", internal::Join(blocked, "/"),
               " blocked");
  }
  if (hits.size() > 1) out += Cat(" (", hits.size(), " events)");
  return Cut(out, kMaxEvidenceBytes);
}

}  // namespace

const std::vector<Capability>& AllCapabilities() {
  static const auto* all = [] {
    auto* out = new std::vector<Capability>;
    for (const Rule& r : Rules()) out->push_back(r.capability);
    return out;
  }();
  return *all;
}

std::string_view CapabilityName(Capability c) { return RuleOf(c).name; }

std::optional<Capability> ParseCapability(std::string_view name) {
  for (const Rule& r : Rules()) {
    if (r.name == name) return r.capability;
  }
  return std::nullopt;
}

std::string_view CapabilityRuleText(Capability c) { return RuleOf(c).text; }

std::vector<bool> PayloadCausedEvents(const proto::Trace& trace) {
  const std::vector<int> calls = AttributedCalls(trace);
  std::vector<bool> out(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) out[i] = calls[i] >= 0;
  return out;
}

std::vector<int> FindCapabilityEvents(const proto::Trace& trace, Capability c) {
  return Evaluate(trace, RuleOf(c), TraceFacts(trace));
}

std::vector<CapabilityFinding> FindCapabilities(const proto::Trace& trace) {
  const TraceFacts facts(trace);
  std::vector<CapabilityFinding> out;
  for (const Rule& r : Rules()) {
    std::vector<int> hits = Evaluate(trace, r, facts);
    if (hits.empty()) continue;
    CapabilityFinding f;
    f.capability = r.capability;
    f.evidence = Evidence(trace, hits, facts);
    f.events = std::move(hits);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace dynahug::features

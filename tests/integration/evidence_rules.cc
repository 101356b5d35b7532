#include "tests/integration/evidence_rules.h"

#include <algorithm>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

using Names = std::set<std::string, std::less<>>;

bool In(const Names& names, std::string_view name) {
  return names.find(name) != names.end();
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

// --- per-kind predicates on one event (attribution is checked by caller) ---

// exec: a process was about to be created or replaced.
bool ExecEvent(const proto::Event& e) {
  static const Names kSyscalls = {"clone", "fork", "vfork", "execve",
                                  "execveat"};
  static const Names kAudit = {
      "os.system",        "os.exec",   "os.posix_spawn",
      "os.spawn",         "os.fork",   "os.forkpty",
      "subprocess.Popen", "pty.spawn", "os.startfile"};
  return IsBlocked(e, kSyscalls) || IsAudit(e, kAudit);
}

// connect: a network socket or connection was requested.
bool ConnectEvent(const proto::Event& e) {
  static const Names kSyscalls = {"socket", "connect", "sendto", "bind"};
  static const Names kAudit = {"socket.__new__", "socket.connect",
                               "socket.sendto", "http.client.connect",
                               "smtplib.connect"};
  return IsBlocked(e, kSyscalls) || IsAudit(e, kAudit);
}

// The path class the audit hook assigned to an event's path argument
// ("path" for open, the first positional argument for os.* calls).
std::string PathClass(const proto::Event& e) {
  if (HasArg(e, "path")) return ArgValue(e, "path");
  return ArgValue(e, "0");
}

// file-write: something was to be created or modified outside the child's
// scratch directory (a write-mode open, or a namespace change: mkdir,
// rename, remove, link, copy).
bool FileWriteEvent(const proto::Event& e) {
  static const Names kMutators = {
      "os.mkdir", "os.rename",       "os.remove",       "os.rmdir",
      "os.link",  "os.symlink",      "os.truncate",     "os.chmod",
      "os.chown", "shutil.copyfile", "shutil.copytree", "shutil.move"};
  if (e.kind() != proto::Event::AUDIT) return false;
  const std::string where = PathClass(e);
  if (where.empty() || where == "scratch") return false;
  if (e.name() == "open") {
    return ArgValue(e, "mode").find_first_of("wax+") != std::string::npos;
  }
  return In(kMutators, e.name());
}

// tamper (calls): a BUILD that writes into a module or type (not a
// function: dill and cloudpickle BUILD the functions they create), a call
// whose purpose is to mutate an existing object, or an environment change.
bool TamperEvent(const proto::Event& e) {
  static const Names kMutatorCalls = {
      "builtins.setattr", "builtins.delattr",  "operator.setitem",
      "operator.delitem", "operator.iadd",     "operator.isub",
      "operator.imul",    "operator.itruediv", "operator.ior",
      "operator.iand",    "operator.ixor"};
  static const Names kAudit = {"os.putenv", "os.unsetenv"};
  if (e.kind() == proto::Event::PICKLE_CALL && ArgValue(e, "op") == "BUILD") {
    return absl::StartsWith(e.name(), "builtins.module.") ||
           absl::StartsWith(e.name(), "builtins.type.");
  }
  return IsPickleCall(e, kMutatorCalls) || IsAudit(e, kAudit);
}

// delayed (calls): something was registered to run later (exit handler,
// signal handler or timer, trace/profile hook, thread).
bool DelayedEvent(const proto::Event& e) {
  static const Names kCalls = {
      "atexit.register",      "signal.signal",         "signal.setitimer",
      "signal.alarm",         "sys.setprofile",        "sys.settrace",
      "threading.setprofile", "threading.settrace",    "threading.Thread",
      "threading.Timer",      "threading.Thread.start"};
  static const Names kAudit = {"sys.setprofile", "sys.settrace"};
  return IsPickleCall(e, kCalls) || IsAudit(e, kAudit);
}

// import: the pickle asked for a module by name at load time.
bool ImportEvent(const proto::Event& e) {
  static const Names kCalls = {"builtins.__import__", "importlib.import_module",
                               "importlib.__import__", "pkgutil.resolve_name",
                               "runpy.run_module"};
  return IsPickleCall(e, kCalls);
}

// nested-load: the pickle called a deserialiser on bytes it carries.
bool NestedLoadEvent(const proto::Event& e) {
  static const Names kCalls = {
      "pickle.loads", "pickle.load",      "_pickle.loads", "_pickle.load",
      "numpy.load",   "torch.load",       "joblib.load",   "dill.loads",
      "dill.load",    "cloudpickle.loads"};
  return IsPickleCall(e, kCalls);
}

// --- INTEGRITY findings (no offset: judged by content) ----------------------

// Modules imported during the load (audit `import`, or a sys.modules entry
// that came with a spec).
Names ImportedModules(const proto::Trace& trace) {
  Names out;
  for (const proto::Event& e : trace.events()) {
    if (e.kind() == proto::Event::AUDIT && e.name() == "import") {
      out.insert(ArgValue(e, "module"));
    } else if (e.kind() == proto::Event::INTEGRITY &&
               e.name() == "sys.modules.added" &&
               ArgValue(e, "origin") == "import") {
      out.insert(ArgValue(e, "module"));
    }
  }
  return out;
}

bool IsDelayedFinding(const proto::Event& e) {
  return e.name() == "atexit.registered" || e.name() == "threads.started";
}

// tamper (findings): any namespace finding except the delayed ones, the
// truncation note, and modules an import put into sys.modules: one with a
// spec, or a spec-less submodule of a package imported during the load (a C
// extension registering its submodules, e.g. pyexpat.errors).
bool IsTamperFinding(const proto::Event& e, const Names& imported) {
  if (IsDelayedFinding(e) || e.name() == "integrity.truncated") return false;
  if (e.name() != "sys.modules.added") return true;
  const std::string origin = ArgValue(e, "origin");
  if (origin == "import") return false;
  if (origin == "no-spec") {
    const std::string module = ArgValue(e, "module");
    const size_t dot = module.rfind('.');
    return dot == std::string::npos || !In(imported, module.substr(0, dot));
  }
  return true;
}

struct Rule {
  const char* effect;
  const char* text;
  bool (*event)(const proto::Event&);  // on payload-caused events
  // On INTEGRITY findings, or null when the rule ignores them.
  bool (*finding)(const proto::Event&, const Names& imported);
};

const std::vector<Rule>& Rules() {
  static const auto* rules = new std::vector<Rule>{
      {"exec",
       "payload-caused BLOCKED clone/fork/vfork/execve or AUDIT os.system/"
       "os.exec/os.posix_spawn/os.spawn/os.fork/os.forkpty/subprocess.Popen/"
       "pty.spawn",
       ExecEvent, nullptr},
      {"connect",
       "payload-caused BLOCKED socket/connect/sendto/bind or AUDIT "
       "socket.__new__/socket.connect/...",
       ConnectEvent, nullptr},
      {"file-write",
       "payload-caused AUDIT write-mode open or os.mkdir/rename/remove/... on "
       "a path outside scratch",
       FileWriteEvent, nullptr},
      {"tamper",
       "INTEGRITY namespace finding (not an import), or a payload BUILD on a "
       "module/type, mutator call (setattr, operator.i*) or os.putenv",
       TamperEvent,
       [](const proto::Event& e, const Names& imported) {
         return IsTamperFinding(e, imported);
       }},
      {"delayed",
       "INTEGRITY atexit.registered/threads.started or a payload "
       "registration of atexit/signal/timer/trace hook/thread",
       DelayedEvent,
       [](const proto::Event& e, const Names&) { return IsDelayedFinding(e); }},
      {"import", "PICKLE_CALL of __import__/import_module/resolve_name",
       ImportEvent, nullptr},
      {"nested-load", "PICKLE_CALL of pickle.loads/numpy.load/torch.load/...",
       NestedLoadEvent, nullptr},
  };
  return *rules;
}

const Rule* FindRule(std::string_view effect) {
  for (const Rule& r : Rules()) {
    if (effect == r.effect) return &r;
  }
  return nullptr;
}

}  // namespace

const std::vector<std::string>& EvidenceEffects() {
  static const auto* effects = [] {
    auto* out = new std::vector<std::string>;
    for (const Rule& r : Rules()) out->push_back(r.effect);
    return out;
  }();
  return *effects;
}

bool HasEvidenceRule(std::string_view effect) {
  return FindRule(effect) != nullptr;
}

std::string_view EvidenceRuleText(std::string_view effect) {
  const Rule* r = FindRule(effect);
  return r != nullptr ? r->text : "";
}

std::vector<bool> PayloadCausedEvents(const proto::Trace& trace) {
  std::vector<bool> caused(trace.events_size(), false);
  // The latest event the loader's unpickler emitted for an opcode (GLOBAL,
  // PICKLE_CALL, OPCODE): the opcode running when later events happened.
  const proto::Event* running = nullptr;
  int last_carrier = -1;  // index of the latest event that can carry one
  for (int i = 0; i < trace.events_size(); ++i) {
    const proto::Event& e = trace.events(i);
    switch (e.kind()) {
      case proto::Event::PICKLE_CALL:
        caused[i] = IsPayloadCall(e);
        break;
      case proto::Event::AUDIT:
      case proto::Event::NATIVE:
        caused[i] = e.has_pickle_offset() && running != nullptr &&
                    IsPayloadCall(*running) &&
                    running->pickle_offset() == e.pickle_offset();
        break;
      case proto::Event::BLOCKED:
        caused[i] = last_carrier >= 0 && caused[last_carrier];
        break;
      default:
        break;
    }
    if (IsOpcodeRecord(e)) running = &e;
    if (CanCarryOffset(e)) last_carrier = i;
  }
  return caused;
}

std::vector<int> FindEvidence(const proto::Trace& trace,
                              std::string_view effect) {
  std::vector<int> out;
  const Rule* rule = FindRule(effect);
  if (rule == nullptr) return out;
  const std::vector<bool> caused = PayloadCausedEvents(trace);
  const Names imported =
      rule->finding != nullptr ? ImportedModules(trace) : Names{};
  for (int i = 0; i < trace.events_size(); ++i) {
    const proto::Event& e = trace.events(i);
    const bool hit =
        e.kind() == proto::Event::INTEGRITY
            ? rule->finding != nullptr && rule->finding(e, imported)
            : caused[i] && rule->event(e);
    if (hit) out.push_back(i);
  }
  return out;
}

}  // namespace dynahug::integration

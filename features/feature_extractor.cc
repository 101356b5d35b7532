#include "features/feature_extractor.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "features/internal/str.h"
#include "features/internal/trace_tokens.h"

namespace dynahug::features {
namespace {

using internal::ArgType;
using internal::ArgValue;
using internal::Cat;
using internal::CountBucket;
using internal::HierarchyTokens;
using internal::Join;
using internal::NormalizeArgValue;
using internal::NormalizeText;
using internal::Provenance;
using internal::ProvenanceName;
using internal::ProvenanceTracker;

// Accumulates token masses per family, then scales them into a vector.
class Accumulator {
 public:
  explicit Accumulator(const ExtractOptions& options) : options_(options) {}

  bool wants(Family f) const { return options_.families.Contains(f); }

  // One occurrence class of a count token: mass += n * weight.
  void Count(Family f, std::string token, double n, double weight = 1) {
    if (!wants(f) || n <= 0) return;
    Slot& s = slots_[static_cast<size_t>(f)][std::move(token)];
    s.mass += n * weight;
  }
  // A presence token: value = max(weight seen).
  void Present(Family f, std::string token, double weight = 1) {
    if (!wants(f)) return;
    Slot& s = slots_[static_cast<size_t>(f)][std::move(token)];
    s.presence = true;
    s.mass = std::max(s.mass, weight);
  }
  // Every level of a dotted name, as count tokens.
  void CountHierarchy(Family f, std::string_view prefix,
                      std::string_view dotted, double n) {
    if (!wants(f)) return;
    for (auto& t : HierarchyTokens(prefix, dotted, decay())) {
      Count(f, std::move(t.token), n, t.weight);
    }
  }
  // Every level of a dotted name, as presence tokens.
  void PresentHierarchy(Family f, std::string_view prefix,
                        std::string_view dotted) {
    if (!wants(f)) return;
    for (auto& t : HierarchyTokens(prefix, dotted, decay())) {
      Present(f, std::move(t.token), t.weight);
    }
  }

  SparseVector Finish() {
    std::vector<Feature> out;
    for (int f = 0; f < kFamilyCount; ++f) {
      for (auto& [token, slot] : slots_[f]) {
        Feature feature;
        feature.index = FeatureIndex(static_cast<Family>(f), token);
        feature.value = slot.presence ? slot.mass : std::log1p(slot.mass);
        if (options_.keep_names) feature.tokens.push_back(token);
        out.push_back(std::move(feature));
      }
    }
    return SparseVector(std::move(out));
  }

 private:
  struct Slot {
    double mass = 0;
    bool presence = false;
  };
  double decay() const {
    return std::clamp(options_.hierarchy_decay, 1e-6, 1.0);
  }

  const ExtractOptions& options_;
  std::array<absl::flat_hash_map<std::string, Slot>, kFamilyCount> slots_;
};

double Occurrences(const proto::Event& e) {
  return static_cast<double>(std::max<uint64_t>(e.count(), 1));
}

// --- syscall ----------------------------------------------------------------

// Syscalls whose count measures the tracer, not the load: the native-stack
// unwinder (libunwind) validates frame addresses with mincore, as often as
// the stacks it walks happen to need (13 or 20 for the same file in two runs,
// with ASLR). Their presence stays a feature; their count does not.
bool CountIsTracerNoise(std::string_view name) { return name == "mincore"; }

void SyscallFeatures(const proto::Trace& trace, Accumulator& acc) {
  for (const proto::SyscallCount& s : trace.syscalls()) {
    if (s.count() == 0) continue;
    acc.Present(Family::kSyscall, Cat("present:", s.name()));
    if (CountIsTracerNoise(s.name())) continue;
    acc.Count(Family::kSyscall, Cat("count:", s.name()),
              static_cast<double>(s.count()));
  }
}

// --- static -----------------------------------------------------------------

// Offsets covered by dynamic events, per member (GLOBAL, PICKLE_CALL and
// OPCODE events carry the member of their stream).
using ExecutedOffsets = absl::flat_hash_map<std::string, std::vector<uint64_t>>;

ExecutedOffsets CollectExecutedOffsets(const proto::Trace& trace) {
  ExecutedOffsets out;
  for (const proto::Event& e : trace.events()) {
    if (!e.has_pickle_offset()) continue;
    if (e.kind() != proto::Event::GLOBAL &&
        e.kind() != proto::Event::PICKLE_CALL &&
        e.kind() != proto::Event::OPCODE) {
      continue;
    }
    out[e.member()].push_back(e.pickle_offset());
  }
  return out;
}

bool StreamExecuted(const proto::PickleSummary& p,
                    const ExecutedOffsets& executed) {
  const auto& path = p.location().member_path();
  std::string member = path.empty() ? "" : path[path.size() - 1];
  auto it = executed.find(member);
  if (it == executed.end()) return false;
  const uint64_t begin = p.location().offset();
  const uint64_t end = begin + std::max<uint64_t>(p.length(), 1);
  return std::any_of(it->second.begin(), it->second.end(),
                     [&](uint64_t o) { return o >= begin && o < end; });
}

struct StaticTotals {
  uint64_t streams = 0;
  uint64_t opcodes = 0;
  uint64_t bytes = 0;
  uint64_t memo = 0;
  uint64_t calls = 0;
  uint32_t max_depth = 0;
};

void StreamFeatures(const proto::PickleSummary& p, bool nested,
                    bool has_dynamic, const ExecutedOffsets& executed,
                    StaticTotals& totals, Accumulator& acc) {
  constexpr Family kF = Family::kStatic;
  ++totals.streams;
  totals.opcodes += p.opcode_count();
  totals.bytes += p.length();
  totals.memo += p.memo_size();
  totals.calls += p.call_count();
  totals.max_depth = std::max(totals.max_depth, p.max_stack_depth());
  if (nested) acc.Count(kF, "streams.nested", 1);
  acc.Count(kF, Cat("protocol:", p.protocol()), 1);
  for (const auto& [op, n] : p.opcode_histogram()) {
    acc.Count(kF, Cat("opcode:", op), static_cast<double>(n));
  }
  if (!p.complete()) {
    acc.Count(kF, "incomplete", 1);
    if (!p.error().empty()) {
      acc.Count(kF, Cat("error:", NormalizeText(p.error())), 1);
    }
  }
  // A stream that references globals or makes calls shows events when it
  // runs; one that shows none was never executed by the load.
  const bool unexecuted = has_dynamic &&
                          (p.globals_size() > 0 || p.call_count() > 0) &&
                          !StreamExecuted(p, executed);
  if (unexecuted) acc.Count(kF, "unexecuted", 1);
  for (const proto::GlobalRef& g : p.globals()) {
    const std::string name = Cat(g.module(), ".", g.name());
    acc.CountHierarchy(kF, "global:", name, 1);
    if (unexecuted) acc.CountHierarchy(kF, "unexecuted.global:", name, 1);
    acc.Count(kF, Cat("global.opcode:", g.opcode()), 1);
    acc.Count(kF, Cat("global.source:", g.source()), 1);
  }
  for (const proto::PickleSummary& n : p.nested()) {
    StreamFeatures(n, true, has_dynamic, executed, totals, acc);
  }
}

void MemberFeatures(const proto::Member& m, bool has_dynamic,
                    const ExecutedOffsets& executed, StaticTotals& totals,
                    Accumulator& acc) {
  constexpr Family kF = Family::kStatic;
  acc.Count(kF, Cat("format:", proto::ContainerFormat_Name(m.format())), 1);
  for (const std::string& note : m.notes()) {
    acc.Count(kF, Cat("member.note:", NormalizeText(note)), 1);
  }
  if (!m.error().empty()) {
    acc.Count(kF, Cat("member.error:", NormalizeText(m.error())), 1);
  }
  for (const proto::PickleSummary& p : m.pickles()) {
    StreamFeatures(p, false, has_dynamic, executed, totals, acc);
  }
  for (const proto::Member& c : m.children()) {
    MemberFeatures(c, has_dynamic, executed, totals, acc);
  }
}

void StaticFeatures(const proto::Trace& trace, bool has_dynamic,
                    Accumulator& acc) {
  constexpr Family kF = Family::kStatic;
  if (!trace.has_root()) return;
  StaticTotals totals;
  MemberFeatures(trace.root(), has_dynamic, CollectExecutedOffsets(trace),
                 totals, acc);
  acc.Count(kF, "streams", static_cast<double>(totals.streams));
  acc.Count(kF, "opcodes", static_cast<double>(totals.opcodes));
  acc.Count(kF, "bytes", static_cast<double>(totals.bytes));
  acc.Count(kF, "memo", static_cast<double>(totals.memo));
  acc.Count(kF, "calls", static_cast<double>(totals.calls));
  acc.Count(kF, "max_stack_depth", static_cast<double>(totals.max_depth));
}

// --- events -----------------------------------------------------------------

void GlobalFeatures(const proto::Event& e, Accumulator& acc) {
  constexpr Family kF = Family::kGlobal;
  const double n = Occurrences(e);
  const bool stub = ArgValue(e, "resolved") == "stub";
  acc.CountHierarchy(kF, "", e.name(), n);
  if (stub) acc.CountHierarchy(kF, "stub:", e.name(), n);
  acc.Count(kF, stub ? "resolved:stub" : "resolved:real", n);
  std::string_view type = ArgValue(e, "type");
  if (!type.empty()) acc.Count(kF, Cat("type:", type), n);
}

void PickleCallFeatures(const proto::Event& e, Accumulator& acc) {
  constexpr Family kF = Family::kPickleCall;
  const double n = Occurrences(e);
  const std::string_view op = ArgValue(e, "op");
  acc.Count(kF, Cat("op:", op.empty() ? "?" : op), n);
  if (op == "more") return;  // a count of calls beyond the recorded ones
  acc.CountHierarchy(kF, "callee:", e.name(), n);
  if (ArgValue(e, "stub") == "true")
    acc.CountHierarchy(kF, "stub:", e.name(), n);
  std::vector<std::string> sig;
  for (const proto::Argument& a : e.args()) {
    std::string_view key = a.key();
    if (key == "op" || key == "stub" || key == "lazy") continue;
    if (key == "argc" || key == "kwargc") {
      sig.push_back("...");
      continue;
    }
    const std::string type = ArgType(a.value());
    if (key.starts_with("kw:")) {
      key.remove_prefix(3);
      acc.Count(kF, Cat("kwarg:", type), n);
      sig.push_back(Cat(NormalizeText(key), "=", type));
    } else {
      acc.Count(kF, Cat("arg:", type), n);
      sig.push_back(type);
    }
  }
  acc.Count(kF, Cat("sig:", e.name(), "(", Join(sig, ","), ")"), n);
}

// AUDIT and NATIVE events share the grammar: <name>, <name>@<provenance>,
// <name>@pickle:via=<callee>, <name>:<key>=<value> (and @pickle:<key>=<value>
// for pickle-caused ones).
void ObservedEventFeatures(Family f, const proto::Event& e, Provenance prov,
                           const std::string& callee, Accumulator& acc) {
  const double n = Occurrences(e);
  const std::string& name = e.name();
  acc.Count(f, name, n);
  acc.Count(f, Cat(name, "@", ProvenanceName(prov)), n);
  const bool pickle = prov == Provenance::kPickle;
  if (pickle && !callee.empty()) {
    acc.Count(f, Cat(name, "@pickle:via=", callee), n);
  }
  // find_class arguments are the global family's business.
  if (name == "pickle.find_class") return;
  for (const proto::Argument& a : e.args()) {
    if (a.key() == "module" && (name == "import")) {
      acc.CountHierarchy(f, Cat(name, ":module="), a.value(), n);
      continue;
    }
    std::string v = NormalizeArgValue(name, a.key(), a.value());
    if (v.empty()) continue;
    acc.Count(f, Cat(name, ":", a.key(), "=", v), n);
    if (pickle) acc.Count(f, Cat(name, "@pickle:", a.key(), "=", v), n);
  }
}

void CallEdgeFeatures(const proto::Event& e, Accumulator& acc) {
  constexpr Family kF = Family::kCallEdge;
  const double n = Occurrences(e);
  std::string_view caller = ArgValue(e, "caller");
  if (caller.empty()) caller = "?";
  const std::string& callee = e.name();
  acc.Count(kF, Cat(caller, " -> ", callee), n);
  auto top = [](std::string_view q) { return q.substr(0, q.find('.')); };
  acc.Count(kF, Cat("mod:", top(caller), " -> ", top(callee)), n);
  acc.CountHierarchy(kF, "callee:", callee, n);
}

void IntegrityFeatures(const proto::Event& e, Accumulator& acc) {
  constexpr Family kF = Family::kIntegrity;
  const double n = Occurrences(e);
  const std::string& name = e.name();
  acc.CountHierarchy(kF, "", name, n);
  // The subject: a module, or a library class or function
  // (hooks/integrity_diff.h).
  std::string_view module = ArgValue(e, "module");
  if (module.empty()) module = ArgValue(e, "class");
  if (module.empty()) module = ArgValue(e, "function");
  std::string_view attr = ArgValue(e, "attr");
  if (!module.empty() && !attr.empty()) {
    acc.Count(kF, Cat(name, ":", module, ".", NormalizeText(attr)), n);
  } else if (!module.empty()) {
    acc.CountHierarchy(kF, Cat(name, ":module="), module, n);
  }
  for (const proto::Argument& a : e.args()) {
    if (a.key() == "module" || a.key() == "class" || a.key() == "function" ||
        a.key() == "attr" || a.key() == "old") {
      continue;
    }
    std::string v = NormalizeArgValue(name, a.key(), a.value());
    if (!v.empty()) acc.Count(kF, Cat(name, ":", a.key(), "=", v), n);
  }
}

void BlockedFeatures(const proto::Trace& trace, Accumulator& acc) {
  constexpr Family kF = Family::kBlocked;
  for (const proto::Event& e : trace.events()) {
    const double n = Occurrences(e);
    if (e.kind() == proto::Event::BLOCKED) {
      acc.Count(kF, "any", n);
      acc.Count(kF, e.name(), n);
      for (const proto::Argument& a : e.args()) {
        std::string v = NormalizeArgValue(e.name(), a.key(), a.value());
        if (!v.empty()) {
          acc.Count(kF, Cat(e.name(), ":", a.key(), "=", v), n);
        }
      }
    } else if (e.blocked()) {
      acc.Count(kF, "any", n);
      acc.Count(kF,
                Cat("event:", proto::Event::Kind_Name(e.kind()), ":", e.name()),
                n);
    }
  }
  for (const proto::SyscallCount& s : trace.syscalls()) {
    if (s.denied() > 0) {
      acc.Count(kF, Cat("denied:", s.name()), static_cast<double>(s.denied()));
    }
  }
}

void LogFeatures(const proto::Event& e, Accumulator& acc) {
  constexpr Family kF = Family::kExit;
  if (e.name() != "dynahug.load_result") {
    acc.Count(kF, Cat("log:", e.name()), Occurrences(e));
    return;
  }
  acc.Present(kF, Cat("load:loaded=", ArgValue(e, "loaded")));
  if (ArgValue(e, "stub") == "true") acc.Present(kF, "load:stub");
  std::string_view error_type = ArgValue(e, "error_type");
  if (!error_type.empty()) {
    acc.PresentHierarchy(kF, "load:error_type:", error_type);
  }
}

void ExitFeatures(const proto::Trace& trace, Accumulator& acc) {
  constexpr Family kF = Family::kExit;
  if (trace.has_exit() &&
      trace.exit().status() != proto::ChildExit::STATUS_UNSPECIFIED) {
    const proto::ChildExit& x = trace.exit();
    acc.Present(kF, Cat("status:", proto::ChildExit::Status_Name(x.status())));
    if (x.signal() != 0) acc.Present(kF, Cat("signal:", x.signal()));
    if (x.exit_code() != 0) {
      acc.Present(kF,
                  Cat("exit_code:",
                      x.exit_code() < 0
                          ? std::string("neg")
                          : CountBucket(static_cast<uint64_t>(x.exit_code()))));
    }
  }
  if (!trace.loader().empty()) {
    acc.Present(kF, Cat("loader:", trace.loader()));
  }
  if (!trace.loaded_type().empty()) {
    acc.PresentHierarchy(kF, "loaded_type:", trace.loaded_type());
  }
  acc.Count(kF, "dropped_events", static_cast<double>(trace.dropped_events()));
}

bool HasDynamicPart(const proto::Trace& trace) {
  return trace.events_size() > 0 || trace.syscalls_size() > 0 ||
         (trace.has_exit() &&
          trace.exit().status() != proto::ChildExit::STATUS_UNSPECIFIED);
}

}  // namespace

FeatureExtractor::FeatureExtractor(ExtractOptions options)
    : options_(std::move(options)) {}

SparseVector FeatureExtractor::Extract(const proto::Trace& trace) const {
  Accumulator acc(options_);
  SyscallFeatures(trace, acc);
  StaticFeatures(trace, HasDynamicPart(trace), acc);
  BlockedFeatures(trace, acc);
  ExitFeatures(trace, acc);
  ProvenanceTracker provenance;
  for (const proto::Event& e : trace.events()) {
    const Provenance prov = provenance.Observe(e);
    switch (e.kind()) {
      case proto::Event::GLOBAL:
        GlobalFeatures(e, acc);
        break;
      case proto::Event::PICKLE_CALL:
        PickleCallFeatures(e, acc);
        break;
      case proto::Event::AUDIT:
        ObservedEventFeatures(Family::kAudit, e, prov, provenance.callee(),
                              acc);
        break;
      case proto::Event::NATIVE:
        ObservedEventFeatures(Family::kNative, e, prov, provenance.callee(),
                              acc);
        break;
      case proto::Event::PYTHON_CALL:
        CallEdgeFeatures(e, acc);
        break;
      case proto::Event::INTEGRITY:
        IntegrityFeatures(e, acc);
        break;
      case proto::Event::LOG:
        LogFeatures(e, acc);
        break;
      case proto::Event::IMPORT:  // not emitted by the current child
        acc.CountHierarchy(Family::kAudit, "IMPORT:", e.name(), Occurrences(e));
        break;
      default:  // SYSCALL (counted in Trace.syscalls), OPCODE, BLOCKED
        break;
        break;
    }
  }
  return acc.Finish();
}

}  // namespace dynahug::features

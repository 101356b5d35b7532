#include "tests/integration/evidence_rules.h"

#include <optional>
#include <utility>

#include "features/capabilities.h"

namespace dynahug::integration {
namespace {

using features::Capability;

// Manifest effect -> capability, in EvidenceEffects order.
const std::vector<std::pair<std::string, Capability>>& EffectTable() {
  static const auto* table =
      new std::vector<std::pair<std::string, Capability>>{
          {"exec", Capability::kProcess},
          {"connect", Capability::kNetwork},
          {"file-write", Capability::kWriteOutsideScratch},
          {"tamper", Capability::kNamespaceTamper},
          {"delayed", Capability::kDeferred},
          {"import", Capability::kDynamicImport},
          {"nested-load", Capability::kNestedLoad},
      };
  return *table;
}

std::optional<Capability> CapabilityOf(std::string_view effect) {
  for (const auto& [name, c] : EffectTable()) {
    if (name == effect) return c;
  }
  return std::nullopt;
}

}  // namespace

const std::vector<std::string>& EvidenceEffects() {
  static const auto* effects = [] {
    auto* out = new std::vector<std::string>;
    for (const auto& [name, c] : EffectTable()) out->push_back(name);
    return out;
  }();
  return *effects;
}

bool HasEvidenceRule(std::string_view effect) {
  return CapabilityOf(effect).has_value();
}

std::string_view EvidenceRuleText(std::string_view effect) {
  const std::optional<Capability> c = CapabilityOf(effect);
  return c.has_value() ? features::CapabilityRuleText(*c) : "";
}

std::vector<bool> PayloadCausedEvents(const proto::Trace& trace) {
  return features::PayloadCausedEvents(trace);
}

std::vector<int> FindEvidence(const proto::Trace& trace,
                              std::string_view effect) {
  const std::optional<Capability> c = CapabilityOf(effect);
  if (!c.has_value()) return {};
  return features::FindCapabilityEvents(trace, *c);
}

}  // namespace dynahug::integration

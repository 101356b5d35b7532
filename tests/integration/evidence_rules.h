// Evidence rules of the integration tests: which events of a `dynahug trace`
// prove that a pickle's payload *attempted* a kind of action (an `effect` of
// the corpus manifest: exec, connect, file-write, tamper, delayed, import,
// nested-load).
//
// The rules are the detector's capability rules (features/capabilities.h,
// where the attribution of events to pickle opcodes is documented); each
// effect maps to one capability:
//   exec -> process, connect -> network, file-write -> write-outside-scratch,
//   tamper -> namespace-tamper, delayed -> deferred, import ->
//   dynamic-import, nested-load -> nested-load.
// So the negative control (benign_evidence_test.cc: no rule fires on the
// benign corpus) and malicious_corpus_test.cc (every manifest effect of every
// malicious file is found) test what `dynahug scan` reports.
//
// Thread safety: pure functions of their arguments.
#ifndef DYNAHUG_TESTS_INTEGRATION_EVIDENCE_RULES_H_
#define DYNAHUG_TESTS_INTEGRATION_EVIDENCE_RULES_H_

#include <string>
#include <string_view>
#include <vector>

#include "proto/dynahug.pb.h"

namespace dynahug::integration {

// The effects that have a rule, in a fixed order.
const std::vector<std::string>& EvidenceEffects();

// True when `effect` has a rule.
bool HasEvidenceRule(std::string_view effect);

// What the rule for `effect` accepts, for failure messages ("" when there is
// no rule).
std::string_view EvidenceRuleText(std::string_view effect);

// For each event of `trace` (same indices as trace.events()): whether the
// payload caused it (features::PayloadCausedEvents).
std::vector<bool> PayloadCausedEvents(const proto::Trace& trace);

// Indices into trace.events() of the events that prove the payload attempted
// `effect`, in trace order; empty when there are none or `effect` has no
// rule.
std::vector<int> FindEvidence(const proto::Trace& trace,
                              std::string_view effect);

}  // namespace dynahug::integration

#endif  // DYNAHUG_TESTS_INTEGRATION_EVIDENCE_RULES_H_

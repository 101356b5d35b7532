// Evidence rules of the integration tests: which events of a `dynahug trace`
// prove that a pickle's payload *attempted* a kind of action (an `effect` of
// the corpus manifest: exec, connect, file-write, tamper, delayed, import,
// nested-load).
//
// A rule is about a kind of behaviour, never about a file or a technique, and
// it only accepts events the payload caused, not library noise (a library
// that probes IPv6 with a socket when it is imported, a temporary directory
// torch creates to unpack a legacy tar):
//
//   - PICKLE_CALL of a call opcode (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST,
//     BUILD): the pickle chose the callee, so the call is the payload's.
//     persistent_load (PERSID/BINPERSID) calls the library's function and is
//     not a payload call.
//   - AUDIT and NATIVE events: caused by the payload when they happened
//     while one of those calls ran: the latest opcode record before them
//     (GLOBAL, PICKLE_CALL or OPCODE, which the unpickler emits before it
//     runs the opcode) is such a call, at the event's pickle_offset. Events
//     without an offset ran outside the unpickler (the library before or
//     after it); events at the offset of a GLOBAL ran while find_class
//     imported a module (module initialisation code, not the payload).
//     Members are not compared: audit events name the loaded target
//     ("weights.pth"), unpickler events the stream inside it
//     ("archive/data.pkl"); the order of events ties them together.
//     Calls past the loader's per-callee recording cap (256) have no
//     PICKLE_CALL, so what they do is not attributed.
//   - BLOCKED events come from the parent's seccomp supervisor and carry no
//     offset; the child is stopped in the syscall until it is answered, so a
//     denial is attributed like the nearest preceding child event that can
//     carry an offset (AUDIT, NATIVE, GLOBAL, PICKLE_CALL, IMPORT, OPCODE;
//     never PYTHON_CALL, INTEGRITY or LOG).
//   - INTEGRITY findings are computed after the load and carry no offset.
//     They are attributed by what they say: a module added to sys.modules by
//     an import, or a spec-less submodule of a package imported during the
//     load (pyexpat registers pyexpat.errors), is import, not tamper;
//     `integrity.truncated` only counts findings that were not emitted.
//
// The negative control (benign_evidence_test.cc) checks that no rule fires on
// the benign corpus; malicious_corpus_test.cc checks that every manifest
// effect of every malicious file is found.
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
// payload caused it, by the attribution above. INTEGRITY findings are never
// attributed here (the rules judge them by content).
std::vector<bool> PayloadCausedEvents(const proto::Trace& trace);

// Indices into trace.events() of the events that prove the payload attempted
// `effect`, in trace order; empty when there are none or `effect` has no
// rule.
std::vector<int> FindEvidence(const proto::Trace& trace,
                              std::string_view effect);

}  // namespace dynahug::integration

#endif  // DYNAHUG_TESTS_INTEGRATION_EVIDENCE_RULES_H_

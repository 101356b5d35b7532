// The C half of the instrumented unpickler: a bridge module through which
// the loader's Python code (runtime/loader.py) reports GLOBAL, PICKLE_CALL,
// OPCODE and LOG events, moves the audit hook's current pickle offset and
// switches audit recording on and off around the real library call.
//
// The bridge module object is created here and handed to the loader's
// namespace directly; it is never registered in sys.modules nor importable.
//
// Python API of the bridge (all functions require nothing but the GIL):
//   emit(kind: int, name: str, args: tuple[tuple[str, str], ...],
//        offset: int = -1, count: int = 1, member: str = "") -> None
//       kind is a proto::Event::Kind value; offset -1 means none.
//   set_offset(offset: int) -> None      # -1 clears
//   set_recording(on: bool) -> None      # audit hook recording
//   ident(obj) -> int                    # id() without the builtins.id
//                                        # audit event
#ifndef DYNAHUG_HOOKS_UNPICKLER_HOOKS_H_
#define DYNAHUG_HOOKS_UNPICKLER_HOOKS_H_

#include "absl/status/statusor.h"
#include "hooks/event_sink.h"
#include "runtime/py_ref.h"

namespace dynahug::hooks {

// Creates a new bridge module object. Requires the GIL.
absl::StatusOr<runtime::PyRef> CreateUnpicklerBridge();

// Where emit() sends events; nullptr drops them. `sink` must stay valid
// until replaced. Process-wide (there is one load at a time).
void SetBridgeSink(EventSink* sink);

// Limits applied to emit() input.
inline constexpr int kBridgeMaxArgs = 16;
inline constexpr size_t kBridgeMaxValueBytes = 256;

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_UNPICKLER_HOOKS_H_

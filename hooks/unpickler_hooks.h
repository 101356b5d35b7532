// The C half of the instrumented unpickler: a bridge module through which
// the loader's Python code (runtime/embed/loader.py) reports GLOBAL,
// PICKLE_CALL, OPCODE and LOG events, moves the audit hook's current pickle
// offset, and registers the unpickler instances whose hook bindings are
// checked after the load.
//
// The bridge module object is created here and handed to the loader's
// namespace directly; it is never registered in sys.modules nor importable.
// It holds no switch: audit recording is turned on and off by C++ only
// (runtime/embed/loader.cc), so nothing the loaded code can reach turns it
// off.
//
// Caller check: emit, set_offset and watch act only when called directly
// from a code object registered with AllowBridgeCaller (the loader's own
// compiled code). A call from any other frame (a payload that walked to the
// bridge through a loader function's __globals__) is dropped and counted;
// TakeBridgeFindings reports it as an INTEGRITY event. The payload can still
// call the loader's genuine functions with arguments of its choosing; that
// is not detected here.
//
// Python API of the bridge (all functions require nothing but the GIL):
//   emit(kind: int, name: str, args: tuple[tuple[str, str], ...],
//        offset: int = -1, count: int = 1, member: str = "") -> None
//       kind is a proto::Event::Kind value; offset -1 means none.
//   set_offset(offset: int) -> None      # -1 clears
//   watch(unpickler) -> None             # see TakeBridgeFindings
//   ident(obj) -> int                    # id() without the builtins.id
//                                        # audit event
//   GLOBAL, PICKLE_CALL, OPCODE, ...: int  # every proto::Event::Kind, by
//                                        # name, for emit()
//
// The Python half (hooks/unpickler.py: the instrumented unpickler classes,
// argument summaries, stubs for missing modules) is compiled in as
// kUnpicklerSource. The loader runs it, then its own drivers, in one private
// namespace that holds the bridge as `_dh` while the code runs
// (runtime/embed/loader.cc).
#ifndef DYNAHUG_HOOKS_UNPICKLER_HOOKS_H_
#define DYNAHUG_HOOKS_UNPICKLER_HOOKS_H_

#include <cstddef>
#include <string_view>

#include "absl/status/statusor.h"
#include "hooks/base/py_ref.h"
#include "hooks/event_sink.h"

namespace dynahug::hooks {

// hooks/unpickler.py, as compiled into the binary.
extern const std::string_view kUnpicklerSource;

// Creates a new bridge module object. Requires the GIL.
absl::StatusOr<PyRef> CreateUnpicklerBridge();

// Registers `code` (a code object) and every code object nested in its
// constants as allowed callers of the bridge, for the life of the process
// (references are kept). Requires the GIL.
absl::Status AllowBridgeCaller(PyObject* code);

// Where emit() sends events; nullptr drops them. `sink` must stay valid
// until replaced. Process-wide (there is one load at a time). Setting a
// non-null sink also starts a new load: the foreign-call count and the
// watched unpicklers are reset.
void SetBridgeSink(EventSink* sink);

// Emits one INTEGRITY event per finding since the last SetBridgeSink(sink)
// and forgets them:
//   loader.bridge.foreign_call {calls, first}   bridge called from code that
//                                               is not the loader's
//   loader.hook.replaced {hook, type}           a watched unpickler's
//       instance find_class, class, or the C unpickler's persistent_load
//       (as _pickle.Unpickler's own getter reports it) differs from what it
//       was when watch() registered it (hook = "unpickler.find_class",
//       "unpickler.__class__", "unpickler.persistent_load")
// Returns the number of findings. Requires the GIL; runs no Python code
// defined outside the interpreter core (instance dicts are read directly).
size_t TakeBridgeFindings(EventSink& sink);

// Limits applied to emit() input and to watch().
inline constexpr int kBridgeMaxArgs = 16;
inline constexpr size_t kBridgeMaxValueBytes = 256;
inline constexpr size_t kBridgeMaxWatched = 4096;

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_UNPICKLER_HOOKS_H_

// Native-code inspection for the in-interpreter observers: the native call
// stack (libunwind), what kind of memory an address lies in
// (/proc/self/maps), and a bounded x86-64 disassembly of code at an address
// (Capstone). Pure C++: nothing here needs an interpreter or the GIL.
//
// The audit hook (hooks/audit_hook.h) uses these to turn ctypes and mmap
// audit events raised during the load phase into proto::Event{kind=NATIVE}.
// A NATIVE event carries the same name and normalised arguments as the AUDIT
// event it accompanies, a native stack (Event.stack: native=true frames,
// innermost first, starting at the C function that raised the audit event,
// bounded by NativeLimits::max_frames) and, depending on the event:
//
//   ctypes.call_function  function=0x..., argc (as the AUDIT event); also
//                         via=CFuncPtr.__call__ when the call was seen by the
//                         hook's tp_call interposer (CPython 3.11 audits only
//                         _ctypes.call_function(), not ordinary foreign calls;
//                         such events have no AUDIT twin), then
//                         target        "<class>[-exec]" of the function
//                                       pointer: "file-exec" (code of a
//                                       shared object), "anonymous-exec",
//                                       "heap-exec", "stack-exec",
//                                       "memfd-exec", "special-exec" (vdso),
//                                       or the class without "-exec" when the
//                                       memory is not executable, "unmapped"
//                                       when nothing is mapped there, or
//                                       "unknown" (+ target_error)
//                         target_prot   "rwxp"-style permissions
//                         target_object the mapped file (file/memfd only;
//                                       named like Frame.file below)
//                         target_symbol dladdr's name (file only)
//                         and when the target is not read-only code of a
//                         file (anything but non-writable "file-exec"):
//                         code_disasm   "0x...: mnemonic op_str" lines joined
//                                       by "; " (NativeLimits::disasm_insns)
//                         code_hex      the bytes read (disasm_bytes at most,
//                                       never past the mapping)
//                         code_sha256   Sha256Prefix of those bytes
//                         code_size     their number
//                         or code_error when they could not be read
//   ctypes.cdata, ctypes.cdata/buffer, ctypes.string_at, ctypes.wstring_at
//                         target / target_prot / target_object of the
//                         address the object is built on or read from
//   ctypes.dlopen, ctypes.dlsym, ctypes.dlsym/handle, mmap.__new__
//                         the stack only
//
// Frame.file of a native frame is the shared object, reduced like paths in
// audit arguments: kept whole for "system" and "python-lib" objects, else
// "<class>:<basename>" (hooks/path_classifier.h), so host paths do not leak.
// Frame.function is empty when the symbol is unknown (static functions of
// stripped libraries) rather than a misleading neighbour's name.
//
// Example (a call into an anonymous RWX page holding `ret`):
//   kind: NATIVE  name: "ctypes.call_function"
//   args: function=0x7fe20a130000 argc=0 via=CFuncPtr.__call__
//         target=anonymous-exec target_prot=rwxs
//         code_disasm="0x7fe20a130000: ret; 0x7fe20a130001: add byte ptr
//         [rax], al; ..." code_hex=c300... code_sha256=e66df7578222a115
//         code_size=64
//   stack: _PyObject_MakeTpCall (libpython3.11.so.1.0),
//          _PyEval_EvalFrameDefault, ..., PyRun_StringFlags, ...
//
// Cost: the maps snapshot is reused while calls go to file code that
// cannot remap memory (see AuditHook), so a ctypes call into libc costs a
// stack capture and a few lookups; calls into other memory re-read
// /proc/self/maps.
#ifndef DYNAHUG_HOOKS_NATIVE_INSPECTOR_H_
#define DYNAHUG_HOOKS_NATIVE_INSPECTOR_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/dynahug.pb.h"

namespace dynahug::hooks {

// Bounds of the native observations made for one load.
struct NativeLimits {
  bool enabled = true;       // false: no NATIVE events at all
  int max_frames = 32;       // native frames per event
  size_t disasm_bytes = 64;  // bytes read at a suspicious call target
  size_t disasm_insns = 16;  // instructions disassembled from them
  // NATIVE events per load; ctypes events after that get only their AUDIT
  // event (one NATIVE "dynahug.native_budget_exhausted" marks the cut).
  uint64_t max_events = 1024;
  size_t max_value_bytes = 1024;  // per NATIVE argument value
  int max_args = 16;              // arguments per NATIVE event
};

// Up to `max_frames` native frames of the calling thread, innermost first,
// starting at the caller of CaptureNativeStack (`skip_frames` more are
// dropped). Each frame has native=true, pc, function (demangled; dladdr's
// symbol or libunwind's, "" when unknown) and file (the shared object's path
// as the dynamic loader knows it, "" when unknown). Symbol lookups are
// cached per pc for the life of the process (bounded). Thread-safe; not
// async-signal-safe.
std::vector<proto::Frame> CaptureNativeStack(int max_frames,
                                             int skip_frames = 0);

// One line of /proc/<pid>/maps.
struct Mapping {
  uint64_t start = 0;  // first byte
  uint64_t end = 0;    // one past the last byte
  bool readable = false;
  bool writable = false;
  bool executable = false;
  bool shared = false;  // 's' (else 'p', private)
  uint64_t offset = 0;  // file offset
  uint64_t inode = 0;
  std::string path;  // as printed: "/usr/lib/...", "[heap]", "" (anonymous),
                     // "/memfd:x (deleted)"
};

// Parses one maps line ("start-end perms offset dev inode [path]"); nullopt
// when it is malformed (bad hex, start >= end, short perms, missing
// fields). Pure.
std::optional<Mapping> ParseMapsLine(std::string_view line);

enum class MemoryClass {
  kUnmapped,   // no mapping contains the address
  kFile,       // a mapping of a file on a filesystem
  kMemfd,      // a memfd_create file, or /dev/shm, or a deleted file
  kAnonymous,  // anonymous memory (mmap, thread stacks, "[anon:...]")
  kHeap,       // "[heap]" (brk)
  kStack,      // "[stack]" (the main thread's stack)
  kSpecial,    // "[vdso]", "[vvar]", "[vsyscall]", other "[...]"
};

// "unmapped", "file", "memfd", "anonymous", "heap", "stack", "special".
std::string_view MemoryClassName(MemoryClass cls);

// The class of `m` from its path. Pure.
MemoryClass ClassifyMapping(const Mapping& m);

// Where an address lies.
struct AddressInfo {
  MemoryClass cls = MemoryClass::kUnmapped;
  Mapping mapping;  // the containing mapping; empty when kUnmapped

  // "<class>" plus "-exec" when the mapping is executable ("unmapped" alone).
  std::string Label() const;
  // "rwxp"-style permissions, "" when unmapped.
  std::string Prot() const;
  // True for code of a file-backed, executable, non-writable mapping: the
  // only case the audit hook does not disassemble.
  bool IsFileCode() const;
};

// Classifies `addr` against maps text (the content of /proc/<pid>/maps).
// Malformed lines are skipped. Pure.
AddressInfo ClassifyAddressInMaps(std::string_view maps_text, uint64_t addr);

// Classifies `addr` in this process by reading `maps_path` (normally
// /proc/self/maps; a parameter so that tests can force the error path).
// Reading stops at the first mapping past `addr`. Errors: the file cannot
// be opened or read (the message names the path and errno).
absl::StatusOr<AddressInfo> ClassifyAddress(
    uint64_t addr, const char* maps_path = "/proc/self/maps");

// Reads and parses a whole maps file (normally /proc/self/maps); malformed
// lines are skipped. Errors as for ClassifyAddress.
absl::StatusOr<std::vector<Mapping>> ReadMaps(
    const char* maps_path = "/proc/self/maps");

// Classifies `addr` against `maps` sorted by address, as ReadMaps returns
// them (binary search). Pure.
AddressInfo ClassifyAddressIn(const std::vector<Mapping>& maps, uint64_t addr);

// A snapshot of a maps file reused across lookups. The owner decides when
// the mappings may have changed (Invalidate()); lookups that the snapshot
// cannot answer with confidence re-read it: an address in no cached mapping
// always, and any non-"file code" answer when the caller asks for
// `only_trust_file_code`. Not thread-safe.
class MapsCache {
 public:
  explicit MapsCache(std::string maps_path = "/proc/self/maps")
      : maps_path_(std::move(maps_path)) {}

  // Classifies `addr` (see above). Errors: as ReadMaps; the snapshot is then
  // dropped.
  absl::StatusOr<AddressInfo> Classify(uint64_t addr,
                                       bool only_trust_file_code);
  // The next lookup re-reads the maps.
  void Invalidate() { valid_ = false; }
  // Times the maps were read.
  uint64_t reads() const { return reads_; }

 private:
  std::string maps_path_;
  std::vector<Mapping> maps_;
  bool valid_ = false;
  uint64_t reads_ = 0;
};

// A bounded disassembly.
struct Disassembly {
  std::vector<std::string> lines;  // "0x1000: nop", "0x1001: mov rax, rbx"
  std::string hex;                 // the bytes, lowercase hex
  std::string sha256;              // Sha256Prefix (hooks/base/sha256.h)
  size_t size = 0;                 // number of bytes
};

// Disassembles `code` as x86-64 placed at `address`, at most `max_insns`
// instructions; stops at the first undecodable byte (lines may then be
// empty while hex/size/sha256 still describe `code`). Errors: Capstone
// cannot be opened. Pure.
absl::StatusOr<Disassembly> DisassembleBytes(std::string_view code,
                                             uint64_t address,
                                             size_t max_insns);

// Reads at most `max_bytes` at `addr` from this process and disassembles
// them. The read never faults: `info` (from ClassifyAddress(addr)) must
// show a readable, non-special mapping and reads stop at its end; anonymous,
// heap and stack memory is then copied directly (it cannot lie past the end
// of a file), file-backed memory is read through `mem_path` (/proc/self/mem,
// where a page past the end of its file fails with EIO instead of raising
// SIGBUS; a parameter so that tests can force the error). Another thread
// unmapping the memory between the check and the copy is not guarded
// against.
// Errors: FailedPrecondition when `addr` is unmapped, unreadable, special or
// outside `info`'s mapping; Unavailable when the bytes cannot be read.
absl::StatusOr<Disassembly> DisassembleAt(
    const AddressInfo& info, uint64_t addr, size_t max_bytes, size_t max_insns,
    const char* mem_path = "/proc/self/mem");
// As above, classifying `addr` first.
absl::StatusOr<Disassembly> DisassembleAt(uint64_t addr, size_t max_bytes,
                                          size_t max_insns);

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_NATIVE_INSPECTOR_H_

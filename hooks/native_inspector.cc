#include "hooks/native_inspector.h"

#define UNW_LOCAL_ONLY
#include <capstone/capstone.h>
#include <cxxabi.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hooks/base/sha256.h"

namespace dynahug::hooks {
namespace {

// --- symbols -----------------------------------------------------------------

struct Symbol {
  std::string function;
  std::string file;
};

std::string Demangle(const char* name) {
  if (name == nullptr) return "";
  if (name[0] != '_' || name[1] != 'Z') return name;
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || out == nullptr) {
    free(out);
    return name;
  }
  std::string s(out);
  free(out);
  return s;
}

constexpr size_t kMaxCachedSymbols = 8192;

// pc -> symbol, for the life of the process (cleared when full). A library
// unloaded and replaced at the same address keeps its old names: dlclose is
// rare in the processes this runs in.
class SymbolCache {
 public:
  static SymbolCache& Instance() {
    static SymbolCache* cache = new SymbolCache();
    return *cache;
  }

  // `lookup_pc` is the address to name (a return address minus one for
  // outer frames); `cursor` the libunwind cursor of that frame.
  Symbol Resolve(uint64_t lookup_pc, unw_cursor_t* cursor) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(lookup_pc);
      if (it != cache_.end()) return it->second;
    }
    Symbol sym;
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(lookup_pc), &info) != 0) {
      if (info.dli_fname != nullptr) sym.file = info.dli_fname;
      if (info.dli_sname != nullptr) sym.function = Demangle(info.dli_sname);
    }
    if (sym.function.empty()) {
      // libunwind falls back to the nearest preceding symbol of any size (a
      // stripped library's static functions get a neighbour's exported
      // name); keep its name only when that symbol starts where the
      // unwind info says this procedure starts.
      char buf[512];
      unw_word_t off = 0;
      unw_proc_info_t proc;
      int rc = unw_get_proc_name(cursor, buf, sizeof(buf), &off);
      if ((rc == 0 || rc == -UNW_ENOMEM) &&
          unw_get_proc_info(cursor, &proc) == 0) {
        unw_word_t ip = 0;
        unw_get_reg(cursor, UNW_REG_IP, &ip);
        if (ip - off == proc.start_ip) {
          buf[sizeof(buf) - 1] = '\0';
          sym.function = Demangle(buf);
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.size() >= kMaxCachedSymbols) cache_.clear();
    cache_.emplace(lookup_pc, sym);
    return sym;
  }

 private:
  std::mutex mu_;
  absl::flat_hash_map<uint64_t, Symbol> cache_;
};

// --- maps --------------------------------------------------------------------

std::optional<uint64_t> ParseHex(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

std::optional<uint64_t> ParseDec(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// Splits off the next space-delimited field of `rest` (leading spaces
// skipped).
std::string_view NextField(std::string_view& rest) {
  size_t begin = rest.find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(begin);
  size_t end = rest.find(' ');
  std::string_view field = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  return field;
}

// Reads `path` (a maps file) line by line, calling `on_line` until it
// returns false.
template <typename F>
absl::Status ForEachMapsLine(const char* path, F on_line) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("open(", path, ") failed: ", strerror(errno)));
  }
  std::string pending;
  char buf[16384];
  absl::Status status = absl::OkStatus();
  bool stop = false;
  while (!stop) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = absl::UnavailableError(
          absl::StrCat("read(", path, ") failed: ", strerror(errno)));
      break;
    }
    if (n == 0) {
      if (!pending.empty()) on_line(std::string_view(pending));
      break;
    }
    pending.append(buf, static_cast<size_t>(n));
    size_t begin = 0;
    for (size_t nl; (nl = pending.find('\n', begin)) != std::string::npos;
         begin = nl + 1) {
      if (!on_line(std::string_view(pending).substr(begin, nl - begin))) {
        stop = true;
        break;
      }
    }
    pending.erase(0, begin);
  }
  close(fd);
  return status;
}

// Feeds one maps line to a lookup of `addr`; returns false once the answer
// is known (found, or past it: maps are sorted by address).
bool Lookup(std::string_view line, uint64_t addr, AddressInfo* info) {
  std::optional<Mapping> m = ParseMapsLine(line);
  if (!m.has_value()) return true;
  if (addr < m->start) return false;
  if (addr >= m->end) return true;
  info->cls = ClassifyMapping(*m);
  info->mapping = std::move(*m);
  return false;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

class CapstoneHandle {
 public:
  CapstoneHandle() { ok_ = cs_open(CS_ARCH_X86, CS_MODE_64, &h_) == CS_ERR_OK; }
  ~CapstoneHandle() {
    if (ok_) cs_close(&h_);
  }
  CapstoneHandle(const CapstoneHandle&) = delete;
  CapstoneHandle& operator=(const CapstoneHandle&) = delete;
  bool ok() const { return ok_; }
  csh get() const { return h_; }

 private:
  csh h_ = 0;
  bool ok_ = false;
};

}  // namespace

__attribute__((noinline)) std::vector<proto::Frame> CaptureNativeStack(
    int max_frames, int skip_frames) {
  std::vector<proto::Frame> frames;
  if (max_frames <= 0) return frames;
  frames.reserve(static_cast<size_t>(std::min(max_frames, 128)));
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) != 0 || unw_init_local(&cursor, &context) != 0) {
    return frames;
  }
  // The first cursor position is this function.
  int skip = std::max(skip_frames, 0) + 1;
  bool innermost = true;
  do {
    unw_word_t ip = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0 || ip == 0) break;
    if (skip > 0) {
      --skip;
    } else {
      // Outer frames hold return addresses; name the call instruction.
      uint64_t lookup = innermost ? ip : ip - 1;
      Symbol sym = SymbolCache::Instance().Resolve(lookup, &cursor);
      proto::Frame& f = frames.emplace_back();
      f.set_native(true);
      f.set_pc(ip);
      f.set_function(std::move(sym.function));
      f.set_file(std::move(sym.file));
      if (static_cast<int>(frames.size()) >= max_frames) break;
    }
    innermost = false;
  } while (unw_step(&cursor) > 0);
  return frames;
}

std::optional<Mapping> ParseMapsLine(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  std::string_view rest = line;
  std::string_view range = NextField(rest);
  std::string_view perms = NextField(rest);
  std::string_view offset = NextField(rest);
  std::string_view dev = NextField(rest);
  std::string_view inode = NextField(rest);
  if (inode.empty()) return std::nullopt;
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  std::optional<uint64_t> start = ParseHex(range.substr(0, dash));
  std::optional<uint64_t> end = ParseHex(range.substr(dash + 1));
  std::optional<uint64_t> off = ParseHex(offset);
  std::optional<uint64_t> ino = ParseDec(inode);
  if (!start || !end || !off || !ino || *start >= *end) return std::nullopt;
  if (perms.size() != 4 || dev.find(':') == std::string_view::npos) {
    return std::nullopt;
  }
  auto flag = [](char c, char set) -> std::optional<bool> {
    if (c == set) return true;
    if (c == '-') return false;
    return std::nullopt;
  };
  std::optional<bool> r = flag(perms[0], 'r'), w = flag(perms[1], 'w'),
                      x = flag(perms[2], 'x');
  if (!r || !w || !x || (perms[3] != 'p' && perms[3] != 's')) {
    return std::nullopt;
  }
  Mapping m;
  m.start = *start;
  m.end = *end;
  m.readable = *r;
  m.writable = *w;
  m.executable = *x;
  m.shared = perms[3] == 's';
  m.offset = *off;
  m.inode = *ino;
  size_t path_begin = rest.find_first_not_of(' ');
  if (path_begin != std::string_view::npos) {
    m.path = std::string(rest.substr(path_begin));
  }
  return m;
}

std::string_view MemoryClassName(MemoryClass cls) {
  switch (cls) {
    case MemoryClass::kUnmapped:
      return "unmapped";
    case MemoryClass::kFile:
      return "file";
    case MemoryClass::kMemfd:
      return "memfd";
    case MemoryClass::kAnonymous:
      return "anonymous";
    case MemoryClass::kHeap:
      return "heap";
    case MemoryClass::kStack:
      return "stack";
    case MemoryClass::kSpecial:
      return "special";
  }
  return "unmapped";
}

MemoryClass ClassifyMapping(const Mapping& m) {
  std::string_view p = m.path;
  if (p.empty()) return MemoryClass::kAnonymous;
  if (p == "[heap]") return MemoryClass::kHeap;
  if (p == "[stack]" || p.starts_with("[stack:")) return MemoryClass::kStack;
  if (p.starts_with("[anon:") || p.starts_with("[anon_shmem:")) {
    return MemoryClass::kAnonymous;
  }
  if (p.starts_with("[")) return MemoryClass::kSpecial;
  // Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, SysV shm).
  if (p.starts_with("/dev/zero") || p.starts_with("/SYSV")) {
    return MemoryClass::kAnonymous;
  }
  if (p.starts_with("/memfd:") || p.starts_with("/dev/shm/") ||
      p.ends_with(" (deleted)")) {
    return MemoryClass::kMemfd;
  }
  return MemoryClass::kFile;
}

std::string AddressInfo::Label() const {
  if (cls == MemoryClass::kUnmapped) return "unmapped";
  std::string label(MemoryClassName(cls));
  if (mapping.executable) label += "-exec";
  return label;
}

std::string AddressInfo::Prot() const {
  if (cls == MemoryClass::kUnmapped) return "";
  return absl::StrCat(
      mapping.readable ? "r" : "-", mapping.writable ? "w" : "-",
      mapping.executable ? "x" : "-", mapping.shared ? "s" : "p");
}

bool AddressInfo::IsFileCode() const {
  return cls == MemoryClass::kFile && mapping.executable && !mapping.writable;
}

AddressInfo ClassifyAddressInMaps(std::string_view maps_text, uint64_t addr) {
  AddressInfo info;
  while (!maps_text.empty()) {
    size_t nl = maps_text.find('\n');
    std::string_view line = maps_text.substr(0, nl);
    maps_text = nl == std::string_view::npos ? std::string_view()
                                             : maps_text.substr(nl + 1);
    if (!Lookup(line, addr, &info)) break;
  }
  return info;
}

absl::StatusOr<AddressInfo> ClassifyAddress(uint64_t addr,
                                            const char* maps_path) {
  AddressInfo info;
  absl::Status s = ForEachMapsLine(maps_path, [&](std::string_view line) {
    return Lookup(line, addr, &info);
  });
  if (!s.ok()) return s;
  return info;
}

absl::StatusOr<std::vector<Mapping>> ReadMaps(const char* maps_path) {
  std::vector<Mapping> maps;
  absl::Status s = ForEachMapsLine(maps_path, [&](std::string_view line) {
    std::optional<Mapping> m = ParseMapsLine(line);
    if (m.has_value()) maps.push_back(std::move(*m));
    return true;
  });
  if (!s.ok()) return s;
  return maps;
}

AddressInfo ClassifyAddressIn(const std::vector<Mapping>& maps, uint64_t addr) {
  AddressInfo info;
  auto it = std::upper_bound(
      maps.begin(), maps.end(), addr,
      [](uint64_t a, const Mapping& m) { return a < m.start; });
  if (it == maps.begin()) return info;
  --it;
  if (addr >= it->end) return info;
  info.cls = ClassifyMapping(*it);
  info.mapping = *it;
  return info;
}

absl::StatusOr<AddressInfo> MapsCache::Classify(uint64_t addr,
                                                bool only_trust_file_code) {
  if (valid_) {
    AddressInfo info = ClassifyAddressIn(maps_, addr);
    if (info.cls != MemoryClass::kUnmapped &&
        (!only_trust_file_code || info.IsFileCode())) {
      return info;
    }
  }
  ++reads_;
  absl::StatusOr<std::vector<Mapping>> maps = ReadMaps(maps_path_.c_str());
  if (!maps.ok()) {
    valid_ = false;
    maps_.clear();
    return maps.status();
  }
  maps_ = std::move(*maps);
  valid_ = true;
  return ClassifyAddressIn(maps_, addr);
}

absl::StatusOr<Disassembly> DisassembleBytes(std::string_view code,
                                             uint64_t address,
                                             size_t max_insns) {
  CapstoneHandle cs;
  if (!cs.ok()) {
    return absl::InternalError("cs_open(CS_ARCH_X86, CS_MODE_64) failed");
  }
  Disassembly out;
  out.size = code.size();
  out.hex = Hex(code);
  out.sha256 = Sha256Prefix(code);
  if (max_insns == 0 || code.empty()) return out;
  cs_insn* insn = nullptr;
  size_t n = cs_disasm(cs.get(), reinterpret_cast<const uint8_t*>(code.data()),
                       code.size(), address, max_insns, &insn);
  for (size_t i = 0; i < n; ++i) {
    std::string line =
        absl::StrFormat("0x%x: %s", insn[i].address, insn[i].mnemonic);
    if (insn[i].op_str[0] != '\0') absl::StrAppend(&line, " ", insn[i].op_str);
    out.lines.push_back(std::move(line));
  }
  if (insn != nullptr) cs_free(insn, n);
  return out;
}

absl::StatusOr<Disassembly> DisassembleAt(const AddressInfo& info,
                                          uint64_t addr, size_t max_bytes,
                                          size_t max_insns,
                                          const char* mem_path) {
  const std::string where = absl::StrCat("disassemble 0x", absl::Hex(addr));
  if (info.cls == MemoryClass::kUnmapped) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": unmapped"));
  }
  if (addr < info.mapping.start || addr >= info.mapping.end) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, ": outside the mapping 0x", absl::Hex(info.mapping.start), "-0x",
        absl::Hex(info.mapping.end)));
  }
  if (!info.mapping.readable) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": mapping is not readable (", info.Prot(), ")"));
  }
  if (info.cls == MemoryClass::kSpecial) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": special mapping ", info.mapping.path));
  }
  size_t n = static_cast<size_t>(
      std::min<uint64_t>(max_bytes, info.mapping.end - addr));
  std::string bytes(n, '\0');
  if (info.cls == MemoryClass::kAnonymous || info.cls == MemoryClass::kHeap ||
      info.cls == MemoryClass::kStack) {
    memcpy(bytes.data(), reinterpret_cast<const void*>(addr), n);
    return DisassembleBytes(bytes, addr, max_insns);
  }
  int fd = open(mem_path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    // pread of memory that cannot be read (a file mapping past EOF, a page
    // unmapped since the maps were read) fails with EIO instead of faulting.
    ssize_t got;
    do {
      got = pread(fd, bytes.data(), n, static_cast<off_t>(addr));
    } while (got < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (got <= 0) {
      return absl::UnavailableError(
          absl::StrCat(where, ": pread(", mem_path, ", ", n,
                       ") failed: ", got == 0 ? "end of file" : strerror(err)));
    }
    bytes.resize(static_cast<size_t>(got));
  } else {
    return absl::UnavailableError(
        absl::StrCat(where, ": open(", mem_path, ") failed: ", strerror(errno),
                     "; no safe way to read a ",
                     std::string(MemoryClassName(info.cls)), " mapping"));
  }
  return DisassembleBytes(bytes, addr, max_insns);
}

absl::StatusOr<Disassembly> DisassembleAt(uint64_t addr, size_t max_bytes,
                                          size_t max_insns) {
  absl::StatusOr<AddressInfo> info = ClassifyAddress(addr);
  if (!info.ok()) return info.status();
  return DisassembleAt(*info, addr, max_bytes, max_insns);
}

}  // namespace dynahug::hooks

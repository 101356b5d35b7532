#include "runtime/container/container.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "hooks/base/sha256.h"
#include "runtime/container/archive_reader.h"
#include "runtime/container/decompress.h"
#include "runtime/container/file_mapping.h"
#include "runtime/container/npy_header.h"
#include "runtime/container/sniff.h"
#include "runtime/container/zip_reader.h"

namespace dynahug::runtime {

struct AnalyzedFile::Storage {
  FileMapping mapping;
  std::vector<uint8_t> copied;  // AnalyzeBytes input
  std::deque<std::vector<uint8_t>> buffers;  // decompressed members
};

AnalyzedFile::AnalyzedFile() = default;
AnalyzedFile::~AnalyzedFile() = default;
AnalyzedFile::AnalyzedFile(AnalyzedFile&&) noexcept = default;
AnalyzedFile& AnalyzedFile::operator=(AnalyzedFile&&) noexcept = default;

namespace {

void CollectStreamErrors(const std::vector<hooks::PickleStream>& streams,
                         const std::string& prefix,
                         std::vector<std::string>& out) {
  for (const hooks::PickleStream& s : streams) {
    if (s.error) out.push_back(absl::StrCat(prefix, s.error->message));
    CollectStreamErrors(s.nested, prefix, out);
  }
}

void CollectErrors(const Member& m, const std::string& file,
                   const std::string& member_path,
                   std::vector<std::string>& out) {
  std::string prefix = member_path.empty()
                           ? absl::StrCat(file, ": ")
                           : absl::StrCat(file, ": member ", member_path, ": ");
  if (!m.error.empty()) out.push_back(absl::StrCat(prefix, m.error));
  CollectStreamErrors(m.pickles, prefix, out);
  for (const Member& c : m.children) {
    CollectErrors(c, file,
                  member_path.empty() ? c.name
                                      : absl::StrCat(member_path, "/", c.name),
                  out);
  }
}

}  // namespace

std::vector<std::string> AnalyzedFile::Errors() const {
  std::vector<std::string> out;
  CollectErrors(root_, path_, "", out);
  return out;
}

bool AnalyzedFile::HasErrors() const { return !Errors().empty(); }

uint64_t AnalyzedFile::unread_bytes() const {
  uint64_t total = 0;
  for (const ByteRange& r : unread_) total += r.length;
  return total;
}

namespace {

constexpr size_t kPrefixBytes = 4096;
constexpr uint64_t kMinRatioCap = uint64_t{1} << 20;
constexpr size_t kMaxStackedStreams = 4096;
constexpr uint64_t kMaxLegacyRecords = 1 << 20;

// The int 0x1950a86a20f9469cfc6c torch writes first in legacy files, as
// LONG1 bytes (little-endian two's complement) and as decimal text.
constexpr uint8_t kTorchMagicLe[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                       0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr std::string_view kTorchMagicDecimal = "119547037146038801333356";

bool Contains(std::span<const uint8_t> hay, std::string_view needle) {
  if (needle.empty() || hay.size() < needle.size()) return false;
  return memmem(hay.data(), hay.size(), needle.data(), needle.size()) !=
         nullptr;
}

bool IsTorchLegacyMagic(std::span<const uint8_t> stream_bytes) {
  return Contains(stream_bytes,
                  std::string_view(reinterpret_cast<const char*>(kTorchMagicLe),
                                   sizeof(kTorchMagicLe))) ||
         Contains(stream_bytes, kTorchMagicDecimal);
}

// Whether a decode error could go away with more bytes (it happened near
// the end of a prefix, or says the data ended).
bool ErrorMayBeTruncation(const hooks::DecodeError& error, uint64_t size) {
  if (error.offset + 1024 >= size) return true;
  for (std::string_view hint : {"truncated", "past end", "end of stream",
                                "newline", "without STOP"}) {
    if (absl::StrContains(error.message, absl::string_view(hint.data(), hint.size()))) return true;
  }
  return false;
}

// "a.b_c.D": non-empty identifiers ([A-Za-z_][A-Za-z0-9_]*, ASCII) joined
// by single dots.
bool IsDottedIdentifier(std::string_view s) {
  if (s.empty()) return false;
  bool at_start = true;
  for (char c : s) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (c == '.') {
      if (at_start) return false;
      at_start = true;
    } else if (alpha || (digit && !at_start)) {
      at_start = false;
    } else {
      return false;
    }
  }
  return !at_start;
}

// Whether `stream` references a global inline (GLOBAL or INST) with an
// identifier-shaped module and name.
bool HasIdentifierGlobal(const hooks::PickleStream& stream) {
  for (const hooks::GlobalReference& g : stream.globals) {
    if (g.source == hooks::GlobalReference::Source::kInline &&
        IsDottedIdentifier(g.module) && IsDottedIdentifier(g.name)) {
      return true;
    }
  }
  return false;
}

bool IsJoblibGlobal(const hooks::GlobalReference& g) {
  return absl::StrContains(g.module, "joblib") &&
         (g.name == "NumpyArrayWrapper" || g.name == "NDArrayWrapper" ||
          g.name == "ZNDArrayWrapper");
}

// Bytes per element of a torch legacy storage class ("FloatStorage").
int StorageElementSize(std::string_view name) {
  static constexpr std::pair<std::string_view, int> kSizes[] = {
      {"DoubleStorage", 8},      {"FloatStorage", 4},
      {"HalfStorage", 2},        {"BFloat16Storage", 2},
      {"LongStorage", 8},        {"IntStorage", 4},
      {"ShortStorage", 2},       {"CharStorage", 1},
      {"ByteStorage", 1},        {"BoolStorage", 1},
      {"ComplexFloatStorage", 8}, {"ComplexDoubleStorage", 16},
      {"QInt8Storage", 1},       {"QUInt8Storage", 1},
      {"QInt32Storage", 4},      {"UntypedStorage", 1},
  };
  for (auto [n, size] : kSizes) {
    if (name == n) return size;
  }
  return 0;
}

uint64_t ReadLe64(std::span<const uint8_t> d, uint64_t pos) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | d[pos + i];
  return v;
}

// Layout hints for members whose pickles are interleaved with raw data.
enum class PickleLayout { kAuto, kTorchMember, kLegacyStorages, kLegacyTensors };

// A member's content that can be read partially (to sniff) or fully.
struct Content {
  std::span<const uint8_t> bytes;
  std::vector<uint8_t> owned;
  bool truncated = false;  // only a prefix was read
  std::vector<std::string> notes;
};
using ContentReader =
    std::function<absl::StatusOr<Content>(uint64_t max, bool prefix_only)>;

struct LazyMember {
  ContentReader read;
  // The member's bytes as they lie in the parent when they are its content
  // (stored zip entries), else empty: what is not read of it is unread.
  std::span<const uint8_t> stored_view;
  // The bytes a full read consumes (stored or compressed), to read ahead.
  std::span<const uint8_t> source;
  uint64_t declared_size = 0;  // 0: unknown
  uint64_t ratio_base = 0;     // stored bytes the ratio limit applies to
  std::string_view bomb_kind = "zip bomb";
};

}  // namespace

class ContainerReader {
 public:
  ContainerReader(const AnalyzeOptions& options,
                  AnalyzedFile::Storage& storage,
                  std::span<const uint8_t> file)
      : options_(options), storage_(storage), file_(file) {}

  // Byte ranges of the top-level file left unread (not normalized).
  std::vector<ByteRange>& unread() { return unread_; }

  void Analyze(Member& m, std::span<const uint8_t> data,
               const std::string& path, int depth,
               PickleLayout layout = PickleLayout::kAuto);

  static absl::StatusOr<AnalyzedFile> RunFile(const std::string& path,
                                              const AnalyzeOptions& options);
  static absl::StatusOr<AnalyzedFile> RunBytes(std::span<const uint8_t> data,
                                               const std::string& name,
                                               const AnalyzeOptions& options);

 private:
  static absl::StatusOr<AnalyzedFile> Run(
      const std::string& name, std::unique_ptr<AnalyzedFile::Storage> storage,
      std::span<const uint8_t> data, const AnalyzeOptions& options);

 private:
  void AnalyzeLazy(Member& m, const LazyMember& lazy, const std::string& path,
                   int depth, PickleLayout layout = PickleLayout::kAuto);
  // Reads the whole of `lazy` within the limits; on failure sets m.error.
  std::optional<std::span<const uint8_t>> Expand(Member& m,
                                                 const LazyMember& lazy,
                                                 const std::string& path);
  std::span<const uint8_t> Keep(Content& c);

  void AnalyzeZip(Member& m, std::span<const uint8_t> data,
                  const std::string& path, int depth);
  void AnalyzeArchive(Member& m, std::span<const uint8_t> data, Format format,
                      const std::string& path, int depth);
  void AnalyzeWrapper(Member& m, std::span<const uint8_t> data,
                      const Sniffed& sniffed, const std::string& path,
                      int depth);
  void AnalyzeNpy(Member& m, std::span<const uint8_t> data);
  // `first`, when given, is the already decoded stream at offset 0.
  void AnalyzePickles(Member& m, std::span<const uint8_t> data,
                      PickleLayout layout,
                      std::optional<hooks::PickleStream> first = std::nullopt);
  uint64_t DecodeStacked(Member& m, std::span<const uint8_t> data,
                         uint64_t start, size_t max_streams,
                         std::optional<hooks::PickleStream> first = std::nullopt);
  bool WalkLegacyRecords(Member& m, std::span<const uint8_t> data,
                         PickleLayout layout);
  hooks::PickleStream Decode(std::span<const uint8_t> data, uint64_t offset);
  bool CheckDepth(Member& m, int depth);
  // Records `bytes` as never read when they are a view into the top-level
  // file (bytes of decompressed buffers have no place in it).
  void MarkUnread(std::span<const uint8_t> bytes);
  // Starts reading `bytes` from disk when they are a view into the mapped
  // file and about to be read in full (the mapping does no read-around).
  void WillNeed(std::span<const uint8_t> bytes) {
    storage_.mapping.WillNeed(bytes);
  }
  static bool IsPickleCandidate(std::span<const uint8_t> data,
                                const hooks::PickleStream& first);

  const AnalyzeOptions& options_;
  AnalyzedFile::Storage& storage_;
  std::span<const uint8_t> file_;
  std::vector<ByteRange> unread_;
  uint64_t expanded_ = 0;
  uint64_t entries_ = 0;
};

hooks::PickleStream ContainerReader::Decode(std::span<const uint8_t> data,
                                            uint64_t offset) {
  hooks::DecodeOptions opts = options_.decode;
  opts.base_offset = offset;
  return hooks::DecodePickle(data.subspan(offset), opts);
}

bool ContainerReader::IsPickleCandidate(std::span<const uint8_t> data,
                                        const hooks::PickleStream& first) {
  if (first.complete) return true;
  if (data.size() >= 2 && data[0] == 0x80 && data[1] <= 5) return true;
  // A protocol-0/1 stream that breaks early is still a pickle when it got as
  // far as resolving a global and calling something: the real unpickler has
  // run that call before it fails (a payload before a broken stream).
  if (!first.globals.empty() && first.stats.call_count > 0) return true;
  // ... or as far as importing something: a GLOBAL/INST naming a module and
  // a name that are dotted Python identifiers, followed by at least one
  // more valid opcode ("cbuiltins\nexec\n(" and then a bad length). The
  // real unpickler runs find_class (an import) before it fails. Text rarely
  // fits: its first line would have to be "c" + an identifier, its second
  // an identifier, and the third start with a valid opcode.
  if (first.stats.opcode_count >= 2 && HasIdentifierGlobal(first)) return true;
  return first.stats.opcode_count >= 8;
}

void ContainerReader::MarkUnread(std::span<const uint8_t> bytes) {
  if (bytes.empty() || file_.empty()) return;
  const uint8_t* begin = file_.data();
  const uint8_t* end = begin + file_.size();
  // Compared as addresses: the view may belong to another buffer.
  const auto at = reinterpret_cast<uintptr_t>(bytes.data());
  if (at < reinterpret_cast<uintptr_t>(begin) ||
      at + bytes.size() > reinterpret_cast<uintptr_t>(end)) {
    return;
  }
  unread_.push_back({static_cast<uint64_t>(at - reinterpret_cast<uintptr_t>(begin)),
                     bytes.size()});
}

bool ContainerReader::CheckDepth(Member& m, int depth) {
  if (depth < options_.limits.max_depth) return true;
  m.error = absl::StrCat("archive nesting deeper than ",
                         options_.limits.max_depth, " levels");
  return false;
}

std::span<const uint8_t> ContainerReader::Keep(Content& c) {
  if (c.owned.empty()) return c.bytes;
  expanded_ += c.owned.size();
  storage_.buffers.push_back(std::move(c.owned));
  return storage_.buffers.back();
}

void ContainerReader::Analyze(Member& m, std::span<const uint8_t> data,
                              const std::string& path, int depth,
                              PickleLayout layout) {
  m.bytes = data;
  m.size = data.size();
  if (layout == PickleLayout::kTorchMember) {
    AnalyzePickles(m, data, layout);
    return;
  }
  Sniffed sniffed = SniffMagic(data);
  if (sniffed.format != Format::kZip && sniffed.format != Format::kNumpyNpy) {
    // Archives, compressed streams and pickles are read from the start;
    // a legacy torch file only up to its storages.
    constexpr size_t kLegacyHead = size_t{1} << 20;
    WillNeed(IsTorchLegacyMagic(data.first(std::min<size_t>(data.size(), 64)))
                 ? data.first(std::min(data.size(), kLegacyHead))
                 : data);
  }
  switch (sniffed.format) {
    case Format::kZip:
      AnalyzeZip(m, data, path, depth);
      return;
    case Format::kSevenZip:
    case Format::kTar:
      AnalyzeArchive(m, data, sniffed.format, path, depth);
      return;
    case Format::kGzip:
    case Format::kBzip2:
    case Format::kXz:
    case Format::kLzma:
    case Format::kZlib:
      AnalyzeWrapper(m, data, sniffed, path, depth);
      return;
    case Format::kNumpyNpy:
      AnalyzeNpy(m, data);
      return;
    default:
      break;
  }
  if (hooks::LooksLikePickle(data)) {
    hooks::PickleStream first = Decode(data, 0);
    if (IsPickleCandidate(data, first)) {
      AnalyzePickles(m, data, layout, std::move(first));
      return;
    }
  }
  if (HasZipEndRecord(data)) {
    auto dir = ReadZipDirectory(data, 1);
    if (dir.ok() || dir.status().code() == absl::StatusCode::kResourceExhausted) {
      AnalyzeZip(m, data, path, depth);
      return;
    }
  }
  m.format = Format::kData;
}

std::optional<std::span<const uint8_t>> ContainerReader::Expand(
    Member& m, const LazyMember& lazy, const std::string& path) {
  const Limits& limits = options_.limits;
  uint64_t budget = limits.max_expanded_bytes > expanded_
                        ? limits.max_expanded_bytes - expanded_
                        : 0;
  uint64_t ratio_cap = UINT64_MAX;
  if (lazy.ratio_base > 0 &&
      lazy.ratio_base <= UINT64_MAX / std::max<uint64_t>(limits.max_ratio, 1)) {
    ratio_cap = std::max(kMinRatioCap, lazy.ratio_base * limits.max_ratio);
  }
  uint64_t cap = std::min(budget, ratio_cap);
  auto bomb = [&]() {
    m.error = absl::StrCat(std::string(lazy.bomb_kind), ": member \"", path,
                           "\" would expand past ", cap, " bytes (stored ",
                           lazy.ratio_base, " bytes; ",
                           cap == ratio_cap
                               ? absl::StrCat("max ratio ", limits.max_ratio)
                               : absl::StrCat("max expanded bytes ",
                                              limits.max_expanded_bytes,
                                              " per file"),
                           ")");
  };
  if (lazy.declared_size > cap) {
    bomb();
    return std::nullopt;
  }
  WillNeed(lazy.source);
  auto content = lazy.read(cap, false);
  if (!content.ok()) {
    if (content.status().code() == absl::StatusCode::kResourceExhausted) {
      bomb();
    } else {
      m.error = std::string(content.status().message());
    }
    return std::nullopt;
  }
  for (std::string& note : content->notes) m.notes.push_back(std::move(note));
  if (lazy.declared_size != 0 &&
      content->bytes.size() + content->owned.size() != lazy.declared_size) {
    m.notes.push_back(absl::StrCat("declared size ", lazy.declared_size,
                                   " but content is ",
                                   content->bytes.size() + content->owned.size(),
                                   " bytes"));
  }
  return Keep(*content);
}

void ContainerReader::AnalyzeLazy(Member& m, const LazyMember& lazy,
                                  const std::string& path, int depth,
                                  PickleLayout layout) {
  m.size = lazy.declared_size;
  auto prefix = lazy.read(kPrefixBytes, true);
  if (!prefix.ok()) {
    m.error = std::string(prefix.status().message());
    return;
  }
  if (!prefix->truncated) {
    // Small enough: the prefix is the whole content.
    for (std::string& note : prefix->notes) m.notes.push_back(std::move(note));
    std::span<const uint8_t> all = Keep(*prefix);
    Analyze(m, all, path, depth, layout);
    return;
  }
  std::span<const uint8_t> head =
      prefix->owned.empty() ? prefix->bytes : std::span<const uint8_t>(prefix->owned);
  bool need_all = layout != PickleLayout::kAuto;
  if (!need_all) {
    Sniffed sniffed = SniffMagic(head);
    if (sniffed.format == Format::kNumpyNpy) {
      auto header = ParseNpyHeader(head);
      if (header.ok() && !header->has_object) {
        m.format = Format::kNumpyNpy;
        m.notes.push_back(absl::StrCat("dtype ", header->descr, ", shape (",
                                       absl::StrJoin(header->shape, ", "),
                                       ")"));
        if (lazy.stored_view.size() > head.size()) {
          MarkUnread(lazy.stored_view.subspan(head.size()));
        }
        return;  // array bytes need no analysis
      }
      need_all = true;
    } else if (sniffed.format != Format::kData) {
      need_all = true;
    } else if (hooks::LooksLikePickle(head)) {
      hooks::PickleStream first = Decode(head, 0);
      if (IsPickleCandidate(head, first)) {
        if (first.error && !ErrorMayBeTruncation(*first.error, head.size())) {
          // The first stream breaks early for a reason more bytes cannot
          // change: decoding the head gives the same result.
          m.notes.push_back(absl::StrCat("only the first ", head.size(),
                                         " bytes expanded: the pickle breaks "
                                         "at offset ",
                                         first.error->offset));
          std::span<const uint8_t> kept = Keep(*prefix);
          Analyze(m, kept, path, depth, layout);
          m.size = lazy.declared_size;
          return;
        }
        need_all = true;
      }
    }
  }
  if (!need_all) {
    m.format = Format::kData;
    if (lazy.stored_view.size() > head.size()) {
      MarkUnread(lazy.stored_view.subspan(head.size()));
    }
    return;
  }
  auto all = Expand(m, lazy, path);
  if (!all) return;
  Analyze(m, *all, path, depth, layout);
}

void ContainerReader::AnalyzeZip(Member& m, std::span<const uint8_t> data,
                                 const std::string& path, int depth) {
  m.format = Format::kZip;
  if (!CheckDepth(m, depth)) return;
  const Limits& limits = options_.limits;
  uint64_t room = limits.max_entries > entries_ ? limits.max_entries - entries_ : 0;
  auto dir = ReadZipDirectory(data, room);
  ZipArchive archive;
  if (dir.ok()) {
    archive = std::move(*dir);
  } else if (dir.status().code() == absl::StatusCode::kResourceExhausted) {
    m.error = absl::StrCat("too many archive entries (limit ",
                           limits.max_entries, " per file)");
    return;
  } else {
    // The real loaders reject it; recover what the local headers show so
    // that the pickles in it are still seen.
    m.error = std::string(dir.status().message());
    archive = ScanZipLocalHeaders(data, room);
    if (archive.entries.empty()) return;
  }
  entries_ += archive.entries.size();
  for (std::string& note : archive.notes) m.notes.push_back(std::move(note));

  // Torch: the archive folder is the first entry's folder (what
  // PyTorchStreamReader does); records are looked up case-insensitively.
  std::string folder;
  if (!archive.entries.empty()) {
    const std::string& first = archive.entries[0].name;
    size_t slash = first.find('/');
    if (slash != std::string::npos) folder = first.substr(0, slash);
  }
  bool torch = false, torchscript = false, any_data_pkl = false;
  bool all_npy = true;
  size_t files = 0;
  for (const ZipEntry& e : archive.entries) {
    std::string lower = absl::AsciiStrToLower(e.name);
    if (absl::EndsWith(lower, "/data.pkl") || lower == "data.pkl") {
      any_data_pkl = true;
    }
    if (!folder.empty() &&
        lower == absl::AsciiStrToLower(absl::StrCat(folder, "/data.pkl"))) {
      torch = true;
    }
    if (!folder.empty() &&
        (lower == absl::AsciiStrToLower(absl::StrCat(folder, "/constants.pkl")) ||
         absl::StartsWith(lower,
                          absl::AsciiStrToLower(absl::StrCat(folder, "/code/"))))) {
      torchscript = true;
    }
    if (!e.is_directory) {
      ++files;
      if (!absl::EndsWith(lower, ".npy")) all_npy = false;
    }
  }
  if (!torch && any_data_pkl) {
    torch = true;
    m.notes.push_back(absl::StrCat(
        "data.pkl is not in the archive folder \"", folder,
        "\" taken from the first entry; torch.load would not find it"));
  }
  if (torch) {
    m.format = torchscript ? Format::kTorchScriptZip : Format::kTorchZip;
  } else if (files > 0 && all_npy) {
    m.format = Format::kNumpyNpz;
  }

  for (size_t i = 0; i < archive.entries.size(); ++i) {
    const ZipEntry& e = archive.entries[i];
    if (e.is_directory && e.uncompressed_size == 0) continue;
    Member child;
    child.name = e.name;
    child.stored_size = e.compressed_size;
    child.size = e.uncompressed_size;
    child.notes = e.notes;
    std::string child_path = path.empty() ? e.name : absl::StrCat(path, "/", e.name);
    if (!e.error.empty()) {
      child.error = e.error;
      m.children.push_back(std::move(child));
      continue;
    }
    if (e.overlaps_with >= 0) {
      const ZipEntry& other = archive.entries[e.overlaps_with];
      child.error = absl::StrFormat(
          "zip bomb: member \"%s\" (bytes %d..%d) overlaps member \"%s\" "
          "(bytes %d..%d)",
          child_path, e.local_header_offset, e.data_offset + e.compressed_size,
          other.name, other.local_header_offset,
          other.data_offset + other.compressed_size);
      m.children.push_back(std::move(child));
      continue;
    }
    if (e.compressed_size <= UINT64_MAX / std::max<uint64_t>(limits.max_ratio, 1)) {
      uint64_t ratio_cap =
          std::max(kMinRatioCap, e.compressed_size * limits.max_ratio);
      if (e.uncompressed_size > ratio_cap) {
        child.error = absl::StrCat(
            "zip bomb: member \"", child_path, "\" would expand past ",
            ratio_cap, " bytes (stored ", e.compressed_size,
            " bytes; declares ", e.uncompressed_size, "; max ratio ",
            limits.max_ratio, ")");
        m.children.push_back(std::move(child));
        continue;
      }
    }
    // The entry's stored bytes, when nothing else of the archive (another
    // entry, the directory) lies in them: only then may they go unread.
    std::span<const uint8_t> stored;
    if (dir.ok() && e.data_offset <= data.size() &&
        e.compressed_size <= data.size() - e.data_offset &&
        e.data_offset + e.compressed_size <= archive.directory_offset) {
      stored = data.subspan(e.data_offset, e.compressed_size);
    }
    LazyMember lazy;
    lazy.declared_size = e.uncompressed_size;
    lazy.ratio_base = e.compressed_size;
    lazy.bomb_kind = "zip bomb";
    if (e.method == 0) lazy.stored_view = stored;
    lazy.source = stored;
    lazy.read = [&data, &e](uint64_t max,
                            bool prefix_only) -> absl::StatusOr<Content> {
      auto r = ReadZipEntry(data, e, max, prefix_only);
      if (!r.ok()) return r.status();
      Content c;
      c.truncated = r->truncated;
      if (r->is_view) {
        c.bytes = r->view;
      } else {
        c.owned = std::move(r->owned);
      }
      if (r->crc_checked && !r->crc_ok) {
        c.notes.push_back(absl::StrFormat(
            "CRC mismatch: directory says %08x, content has %08x", e.crc32,
            r->actual_crc));
      }
      return c;
    };
    if (torch) {
      std::string lower = absl::AsciiStrToLower(e.name);
      size_t slash = lower.find('/');
      std::string rel =
          slash == std::string::npos ? lower : lower.substr(slash + 1);
      bool is_pickle = absl::EndsWith(rel, ".pkl") ||
                       absl::EndsWith(rel, ".debug_pkl");
      if (!is_pickle) {
        // Storages (data/<key>, constants/<key>) and text records are
        // loaded as bytes; they need no analysis and are not expanded.
        child.format = Format::kData;
        if (absl::StartsWith(rel, "data/") ||
            absl::StartsWith(rel, "constants/")) {
          child.notes.push_back("tensor storage (not expanded)");
          MarkUnread(stored);
        }
        m.children.push_back(std::move(child));
        continue;
      }
      auto all = Expand(child, lazy, child_path);
      if (all) Analyze(child, *all, child_path, depth + 1, PickleLayout::kTorchMember);
      m.children.push_back(std::move(child));
      continue;
    }
    AnalyzeLazy(child, lazy, child_path, depth + 1);
    m.children.push_back(std::move(child));
  }
}

void ContainerReader::AnalyzeArchive(Member& m, std::span<const uint8_t> data,
                                     Format format, const std::string& path,
                                     int depth) {
  m.format = format;
  if (!CheckDepth(m, depth)) return;
  auto reader = ArchiveReader::Open(data);
  if (!reader.ok()) {
    m.error = std::string(reader.status().message());
    return;
  }
  bool has_pickle = false, has_storages = false, has_tensors = false;
  for (;;) {
    ArchiveEntry entry;
    auto next = reader->Next(&entry);
    if (!next.ok()) {
      m.error = std::string(next.status().message());
      break;
    }
    if (!*next) break;
    if (++entries_ > options_.limits.max_entries) {
      m.error = absl::StrCat("too many archive entries (limit ",
                             options_.limits.max_entries, " per file)");
      break;
    }
    if (!entry.is_regular) continue;
    Member child;
    child.name = entry.name;
    child.stored_size = format == Format::kTar ? entry.size : 0;
    std::string child_path =
        path.empty() ? entry.name : absl::StrCat(path, "/", entry.name);
    auto buffer = std::make_shared<std::vector<uint8_t>>();
    auto done = std::make_shared<bool>(false);
    ArchiveReader* r = &*reader;
    LazyMember lazy;
    lazy.declared_size = entry.size_known ? entry.size : 0;
    lazy.ratio_base = data.size();
    lazy.bomb_kind = "decompression bomb";
    lazy.read = [r, buffer, done](uint64_t max,
                                  bool prefix_only) -> absl::StatusOr<Content> {
      // Sequential: a full read continues where the prefix read stopped.
      if (!*done && buffer->size() < max) {
        auto n = r->Read(max - buffer->size(), buffer.get());
        if (!n.ok()) return n.status();
        if (buffer->size() < max) *done = true;
      }
      bool more = false;
      if (!*done) {
        std::vector<uint8_t> probe;
        auto n = r->Read(1, &probe);
        if (!n.ok()) return n.status();
        if (*n == 0) {
          *done = true;
        } else {
          more = true;
          buffer->push_back(probe[0]);
        }
      }
      Content c;
      if (more && !prefix_only) {
        return absl::ResourceExhaustedError("would expand past limit");
      }
      c.truncated = more;
      c.owned.assign(buffer->begin(),
                     buffer->begin() + static_cast<std::ptrdiff_t>(
                                           std::min<uint64_t>(buffer->size(), max)));
      return c;
    };
    PickleLayout layout = PickleLayout::kAuto;
    if (entry.name == "storages") layout = PickleLayout::kLegacyStorages;
    if (entry.name == "tensors") layout = PickleLayout::kLegacyTensors;
    has_pickle |= entry.name == "pickle";
    has_storages |= entry.name == "storages";
    has_tensors |= entry.name == "tensors";
    AnalyzeLazy(child, lazy, child_path, depth + 1, layout);
    if (child.size == 0 && !child.bytes.empty()) child.size = child.bytes.size();
    m.children.push_back(std::move(child));
  }
  if (format == Format::kTar && has_pickle && (has_storages || has_tensors)) {
    m.format = Format::kTorchLegacyTar;
  }
}

void ContainerReader::AnalyzeWrapper(Member& m, std::span<const uint8_t> data,
                                     const Sniffed& sniffed,
                                     const std::string& path, int depth) {
  m.format = sniffed.format;
  if (!CheckDepth(m, depth)) return;
  Codec codec = Codec::kZlib;
  switch (sniffed.format) {
    case Format::kGzip:
      codec = Codec::kGzip;
      break;
    case Format::kBzip2:
      codec = Codec::kBzip2;
      break;
    case Format::kXz:
      codec = Codec::kXz;
      break;
    case Format::kLzma:
      codec = Codec::kLzmaAlone;
      break;
    default:
      codec = Codec::kZlib;
  }
  if (sniffed.joblib_zfile) m.notes.push_back("joblib ZF header (joblib < 0.9.3)");
  uint64_t payload_offset = std::min<uint64_t>(sniffed.payload_offset, data.size());
  std::span<const uint8_t> payload = data.subspan(payload_offset);
  Member child;
  child.name = absl::StrCat("(", std::string(CodecName(codec)), ")");
  child.stored_size = payload.size();
  std::string child_path =
      path.empty() ? child.name : absl::StrCat(path, "/", child.name);
  uint64_t hint = 0;
  if (codec == Codec::kGzip && data.size() >= 18) {
    const uint8_t* t = data.data() + data.size() - 4;
    hint = uint64_t{t[0]} | (uint64_t{t[1]} << 8) | (uint64_t{t[2]} << 16) |
           (uint64_t{t[3]} << 24);
  }
  LazyMember lazy;
  lazy.ratio_base = payload.size();
  lazy.bomb_kind = "decompression bomb";
  lazy.read = [payload, codec, hint, payload_offset](
                  uint64_t max, bool prefix_only) -> absl::StatusOr<Content> {
    auto d = Decompress(codec, payload, max, prefix_only, hint);
    if (!d.ok()) {
      return absl::Status(d.status().code(),
                          absl::StrCat(d.status().message()));
    }
    if (!d->hit_limit && !d->complete) {
      return absl::DataLossError(absl::StrCat(
          std::string(CodecName(codec)), ": input truncated after ",
          payload.size(), " bytes (", d->data.size(), " bytes produced)"));
    }
    Content c;
    c.truncated = d->hit_limit;
    c.owned = std::move(d->data);
    if (!prefix_only && d->consumed < payload.size()) {
      c.notes.push_back(absl::StrCat(
          "trailing data: ", payload.size() - d->consumed,
          " bytes at offset ", payload_offset + d->consumed,
          " after the compressed stream"));
    }
    return c;
  };
  // Sniff the decompressed head first; a prefix read that fails at once
  // means the magic was a coincidence or the stream is corrupt.
  AnalyzeLazy(child, lazy, child_path, depth + 1);
  // Move notes about the compressed stream to the wrapper.
  auto it = std::stable_partition(
      child.notes.begin(), child.notes.end(), [](const std::string& n) {
        return !absl::StartsWith(n, "trailing data: ");
      });
  for (auto j = it; j != child.notes.end(); ++j) m.notes.push_back(*j);
  child.notes.erase(it, child.notes.end());
  if (child.size == 0) child.size = child.bytes.size();
  m.children.push_back(std::move(child));
}

void ContainerReader::AnalyzeNpy(Member& m, std::span<const uint8_t> data) {
  m.format = Format::kNumpyNpy;
  auto header = ParseNpyHeader(data);
  if (!header.ok()) {
    m.error = std::string(header.status().message());
    return;
  }
  m.notes.push_back(absl::StrCat("dtype ", header->descr, ", shape (",
                                 absl::StrJoin(header->shape, ", "), ")"));
  if (!header->has_object) {
    if (header->data_offset < data.size()) {
      MarkUnread(data.subspan(header->data_offset));
    }
    return;
  }
  if (header->data_offset >= data.size()) {
    m.error = absl::StrCat("npy: object array but no pickle at offset ",
                           header->data_offset, " (end of data)");
    return;
  }
  DecodeStacked(m, data, header->data_offset, kMaxStackedStreams);
}

uint64_t ContainerReader::DecodeStacked(
    Member& m, std::span<const uint8_t> data, uint64_t start,
    size_t max_streams, std::optional<hooks::PickleStream> first) {
  uint64_t pos = start;
  size_t count = 0;
  std::string broken;
  while (pos < data.size()) {
    if (count >= max_streams) {
      m.notes.push_back(absl::StrCat("stopped after ", max_streams,
                                     " stacked pickle streams at offset ", pos));
      break;
    }
    if (count > 0 && !hooks::LooksLikePickle(data.subspan(pos))) break;
    hooks::PickleStream s = (count == 0 && first) ? std::move(*first)
                                                  : Decode(data, pos);
    if (count > 0 && !s.complete) {
      broken = s.error ? s.error->message : "incomplete";
      break;
    }
    uint64_t length = std::max<uint64_t>(s.length, 1);
    bool complete = s.complete;
    m.pickles.push_back(std::move(s));
    ++count;
    pos += length;
    if (!complete) return data.size();
  }
  if (pos < data.size()) {
    std::string note = absl::StrCat("trailing data: ", data.size() - pos,
                                    " bytes at offset ", pos);
    if (!broken.empty()) {
      absl::StrAppend(&note, " (starts like a pickle but does not decode: ",
                      broken, ")");
    }
    m.notes.push_back(std::move(note));
  }
  return pos;
}

void ContainerReader::AnalyzePickles(
    Member& m, std::span<const uint8_t> data, PickleLayout layout,
    std::optional<hooks::PickleStream> decoded_first) {
  m.format = Format::kRawPickle;
  if (data.empty()) {
    m.error = "pickle: empty member";
    return;
  }
  if (layout == PickleLayout::kLegacyStorages ||
      layout == PickleLayout::kLegacyTensors) {
    if (WalkLegacyRecords(m, data, layout)) return;
    m.pickles.clear();
    m.notes.clear();
  }
  hooks::PickleStream first =
      decoded_first ? std::move(*decoded_first) : Decode(data, 0);
  uint64_t first_len = std::min<uint64_t>(first.length, data.size());
  if (layout == PickleLayout::kAuto && first.complete &&
      IsTorchLegacyMagic(data.first(first_len))) {
    // Magic, protocol version, sys_info, model, storage keys, storages.
    m.format = Format::kTorchLegacy;
    static constexpr const char* kNames[] = {"magic number", "protocol version",
                                             "sys_info", "model pickle",
                                             "storage keys"};
    uint64_t pos = 0;
    for (int i = 0; i < 5; ++i) {
      if (pos >= data.size()) {
        m.error = absl::StrCat("torch legacy: missing ", kNames[i],
                               " pickle at offset ", pos, " (end of data)");
        return;
      }
      hooks::PickleStream s = i == 0 ? std::move(first) : Decode(data, pos);
      bool complete = s.complete;
      uint64_t length = std::max<uint64_t>(s.length, 1);
      m.pickles.push_back(std::move(s));
      if (!complete) return;  // the stream carries the error
      pos += length;
    }
    if (pos < data.size()) {
      m.notes.push_back(absl::StrCat("storage data: ", data.size() - pos,
                                     " bytes at offset ", pos,
                                     " (not decoded)"));
      // torch.load reads them as raw storage bytes: nothing to analyse.
      MarkUnread(data.subspan(pos));
    }
    return;
  }
  DecodeStacked(m, data, 0, kMaxStackedStreams, std::move(first));
  if (layout == PickleLayout::kAuto) {
    for (const hooks::PickleStream& s : m.pickles) {
      for (const hooks::GlobalReference& g : s.globals) {
        if (IsJoblibGlobal(g)) {
          m.format = Format::kJoblib;
          break;
        }
      }
    }
  }
}

// torch's legacy tar members "storages" and "tensors": a count pickle, then
// per record an argument pickle followed by raw bytes, (storages) then a
// storage-views pickle. Returns false when the layout does not fit.
bool ContainerReader::WalkLegacyRecords(Member& m,
                                        std::span<const uint8_t> data,
                                        PickleLayout layout) {
  hooks::DecodeOptions with_ops = options_.decode;
  with_ops.keep_ops = true;
  hooks::PickleStream count_stream = hooks::DecodePickle(data, with_ops);
  if (!count_stream.complete) return false;
  int64_t count = -1;
  for (const hooks::DecodedOp& op : count_stream.ops) {
    if (op.arg.kind == hooks::OpArg::Kind::kInt &&
        op.opcode != hooks::Opcode::kStop) {
      count = op.arg.int_value;
    }
  }
  if (count < 0 || static_cast<uint64_t>(count) > kMaxLegacyRecords) return false;
  if (!options_.decode.keep_ops) count_stream.ops.clear();
  uint64_t pos = count_stream.length;
  m.pickles.push_back(std::move(count_stream));
  uint64_t raw_bytes = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (pos >= data.size()) return false;
    hooks::PickleStream args = Decode(data, pos);
    if (!args.complete) return false;
    pos += args.length;
    uint64_t skip = 0;
    if (layout == PickleLayout::kLegacyStorages) {
      int element_size = 0;
      for (const hooks::GlobalReference& g : args.globals) {
        if (int s = StorageElementSize(g.name)) element_size = s;
      }
      if (element_size == 0 || data.size() - pos < 8) return false;
      uint64_t numel = ReadLe64(data, pos);
      if (numel > (data.size() - pos - 8) / element_size) return false;
      skip = 8 + numel * element_size;
    } else {
      if (data.size() - pos < 8) return false;
      uint32_t ndim = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) |
                      (uint32_t{data[pos + 3]} << 24);
      if (ndim > 64) return false;
      skip = 8 + 16 * uint64_t{ndim} + 8;
      if (skip > data.size() - pos) return false;
    }
    m.pickles.push_back(std::move(args));
    pos += skip;
    raw_bytes += skip;
  }
  if (layout == PickleLayout::kLegacyStorages) {
    if (pos >= data.size()) return false;
    hooks::PickleStream views = Decode(data, pos);
    bool complete = views.complete;
    pos += views.length;
    m.pickles.push_back(std::move(views));
    if (!complete) return true;  // the stream carries the error
  }
  m.notes.push_back(absl::StrCat(
      layout == PickleLayout::kLegacyStorages ? "storage data: " : "tensor metadata: ",
      raw_bytes, " bytes in ", count, " records (not decoded)"));
  if (pos < data.size()) {
    m.notes.push_back(absl::StrCat("trailing data: ", data.size() - pos,
                                   " bytes at offset ", pos));
  }
  return true;
}

absl::StatusOr<AnalyzedFile> ContainerReader::Run(
    const std::string& name, std::unique_ptr<AnalyzedFile::Storage> storage,
    std::span<const uint8_t> data, const AnalyzeOptions& options) {
  if (data.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": empty file"));
  }
  AnalyzedFile file;
  file.path_ = name;
  file.size_ = data.size();
  ContainerReader reader(options, *storage, data);
  reader.Analyze(file.root_, data, "", 0);
  if (file.root_.format == Format::kData && !options.accept_unknown) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": unknown format (", data.size(),
                     " bytes, first bytes: ", HexPrefix(data), ")"));
  }
  file.unread_ = NormalizeRanges(std::move(reader.unread()), data.size());
  file.content_key_ = ContentKey(data, file.unread_);
  if (file.unread_.empty()) {
    file.sha256_ = file.content_key_;
  } else if (options.full_sha256) {
    if (storage->mapping.is_mapped()) {
      // Outside the mapping, so that the pages do not stay resident here.
      auto sha = FileSha256(name);
      if (!sha.ok()) return sha.status();
      file.sha256_ = *sha;
    } else {
      file.sha256_ = hooks::Sha256Hex(data);
    }
  }
  file.storage_ = std::move(storage);
  return file;
}

absl::StatusOr<AnalyzedFile> ContainerReader::RunFile(
    const std::string& path, const AnalyzeOptions& options) {
  auto storage = std::make_unique<AnalyzedFile::Storage>();
  auto mapping = FileMapping::Open(path);
  if (!mapping.ok()) return mapping.status();
  storage->mapping = std::move(*mapping);
  std::span<const uint8_t> data = storage->mapping.bytes();
  return Run(path, std::move(storage), data, options);
}

absl::StatusOr<AnalyzedFile> ContainerReader::RunBytes(
    std::span<const uint8_t> data, const std::string& name,
    const AnalyzeOptions& options) {
  auto storage = std::make_unique<AnalyzedFile::Storage>();
  storage->copied.assign(data.begin(), data.end());
  std::span<const uint8_t> copy = storage->copied;
  return Run(name, std::move(storage), copy, options);
}

absl::StatusOr<AnalyzedFile> AnalyzeFile(const std::string& path,
                                         const AnalyzeOptions& options) {
  return ContainerReader::RunFile(path, options);
}

absl::StatusOr<AnalyzedFile> AnalyzeBytes(std::span<const uint8_t> data,
                                          const std::string& display_name,
                                          const AnalyzeOptions& options) {
  return ContainerReader::RunBytes(data, display_name, options);
}

}  // namespace dynahug::runtime

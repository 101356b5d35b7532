// Container reading: read a model file once, sniff its format from content
// (never from its name), unpack archives and compression wrappers
// recursively within limits, and find every pickle stream in it, decoded
// statically by hooks::DecodePickle.
//
// Pickles have no magic: data that is no other format is a raw pickle when
// its first stream decodes completely, starts with PROTO 0..5, or its
// decodable prefix (before a decode error) resolves a global and calls
// something, resolves a GLOBAL/INST whose module and name are dotted Python
// identifiers and then decodes at least one more opcode (the real unpickler
// imports it before failing), or holds at least 8 opcodes. Such a broken
// stream is kept with its PickleStream::error and its globals.
// This reader decides only what is shown statically; which loaders run, and
// whether they load the file, is decided by them (runtime/trace).
//
// Tolerance: whatever the real loaders accept is accepted here (torch zips
// with bad CRCs, odd flag bits, renamed top-level folders, extra files;
// stacked pickles; trailing data). Anomalies are kept as Member::notes.
// Errors: a top-level file that cannot be read or is of no known format is a
// Status error; a member that cannot be analysed (truncated pickle, zip bomb,
// broken archive) gets Member::error or PickleStream::error and the rest of
// the file is still analysed. Every message names the file, the member path
// and the offset.
#ifndef DYNAHUG_RUNTIME_CONTAINER_CONTAINER_H_
#define DYNAHUG_RUNTIME_CONTAINER_CONTAINER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "hooks/pickle_decoder.h"
#include "runtime/container/content_key.h"
#include "runtime/container/format.h"

namespace dynahug::runtime {

struct Limits {
  // Archives/wrappers nested deeper than this are an error of that member.
  int max_depth = 8;
  // Total archive entries over the whole file.
  uint64_t max_entries = 100000;
  // Total bytes produced by decompression over the whole file. Tensor
  // storages that need no analysis are not decompressed and do not count.
  uint64_t max_expanded_bytes = uint64_t{2} << 30;
  // Largest ratio of expanded to stored size accepted for one member
  // (zip-bomb guard for members that are expanded).
  uint64_t max_ratio = 1000;
};

// One node of the container tree. Byte views point into storage owned by the
// enclosing AnalyzedFile and live as long as it does.
struct Member {
  std::string name;  // name inside the parent; "" for the top-level file
  Format format = Format::kData;
  uint64_t size = 0;         // bytes after decompression
  uint64_t stored_size = 0;  // bytes as stored in the parent
  std::vector<std::string> notes;
  std::vector<Member> children;
  std::vector<hooks::PickleStream> pickles;
  std::string error;  // non-empty when this member could not be analysed
  std::span<const uint8_t> bytes;  // the member's (decompressed) content;
                                   // empty when not expanded (storages)
};

// A fully analysed file. Move-only; owns the file mapping and every
// decompressed buffer the Member tree points into.
class AnalyzedFile {
 public:
  AnalyzedFile();
  ~AnalyzedFile();
  AnalyzedFile(AnalyzedFile&&) noexcept;
  AnalyzedFile& operator=(AnalyzedFile&&) noexcept;
  AnalyzedFile(const AnalyzedFile&) = delete;
  AnalyzedFile& operator=(const AnalyzedFile&) = delete;

  const std::string& path() const { return path_; }
  const Member& root() const { return root_; }
  // File size, bytes.
  uint64_t size() const { return size_; }
  // Byte ranges of the file the analysis never read (tensor storages of
  // torch zips and legacy files, NumPy array data), sorted and disjoint.
  // Only bytes no loader runs code on are skipped; see content_key.h.
  const std::vector<ByteRange>& unread() const { return unread_; }
  uint64_t unread_bytes() const;
  // ContentKey (content_key.h) of the file: covers every byte analysed and
  // where the unread ranges are. What traces and verdicts are keyed on.
  const std::string& content_key() const { return content_key_; }
  // Lowercase hex SHA-256 of the whole file; empty when some of the file was
  // not read and AnalyzeOptions::full_sha256 was not set.
  const std::string& sha256() const { return sha256_; }
  // True when any member or pickle stream in the tree has an error.
  bool HasErrors() const;
  // Every error in the tree, one line each, formatted
  // "<path>: member <a/b/c>: <message>" (member omitted at top level).
  std::vector<std::string> Errors() const;

 private:
  friend class ContainerReader;
  std::string path_;
  uint64_t size_ = 0;
  std::vector<ByteRange> unread_;
  std::string content_key_;
  std::string sha256_;
  Member root_;
  struct Storage;
  std::unique_ptr<Storage> storage_;
};

struct AnalyzeOptions {
  Limits limits;
  // Passed to every DecodePickle call (keep_ops for disasm).
  hooks::DecodeOptions decode;
  // A top-level file of no known format is returned with root().format ==
  // Format::kData instead of an "unknown format" error: for callers that
  // will hand it to a loader chosen by other means (its name, a user's
  // hint), which then decides whether it is loadable.
  bool accept_unknown = false;
  // Also hash the whole file (AnalyzedFile::sha256) when the analysis skips
  // tensor storages: one sequential read of the file, outside the mapping.
  bool full_sha256 = false;
};

// Reads `path` (mapped read-only; only the pages the analysis needs are
// touched: tensor storages are never read) and analyses it.
absl::StatusOr<AnalyzedFile> AnalyzeFile(const std::string& path,
                                         const AnalyzeOptions& options = {});

// Same for bytes already in memory; `display_name` is used in messages.
// The bytes are copied into the result's storage.
absl::StatusOr<AnalyzedFile> AnalyzeBytes(std::span<const uint8_t> data,
                                          const std::string& display_name,
                                          const AnalyzeOptions& options = {});

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_CONTAINER_H_

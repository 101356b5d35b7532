#include "runtime/container/container.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "hooks/base/sha256.h"
#include "runtime/container/zip_reader.h"
#include "tests/runtime/fixtures.h"
#include "zlib.h"

namespace dynahug::runtime {
namespace {

using testing::FixturePath;
using testing::ReadFixture;

const Member* Find(const Member& m, const std::string& path) {
  if (path.empty()) return &m;
  size_t best = std::string::npos;
  for (const Member& c : m.children) {
    if (path == c.name) return &c;
    if (path.size() > c.name.size() && path.compare(0, c.name.size(), c.name) == 0 &&
        path[c.name.size()] == '/') {
      if (const Member* r = Find(c, path.substr(c.name.size() + 1))) return r;
    }
  }
  (void)best;
  return nullptr;
}

void Collect(const Member& m, std::vector<std::string>& notes, size_t& pickles) {
  for (const auto& n : m.notes) notes.push_back(n);
  pickles += m.pickles.size();
  for (const Member& c : m.children) Collect(c, notes, pickles);
}

std::string Tree(const Member& m, int indent = 0) {
  std::string s = std::string(indent, ' ') + "[" + std::string(FormatName(m.format)) +
                  "] " + m.name + " pickles=" + std::to_string(m.pickles.size()) +
                  (m.error.empty() ? "" : " error=" + m.error) + "\n";
  for (const Member& c : m.children) s += Tree(c, indent + 2);
  return s;
}

struct Case {
  std::string fixture;
  Format root;
  std::map<std::string, Format> members;  // path -> format
  size_t pickles;                          // total streams in the tree
  std::vector<std::string> notes;          // substrings, anywhere in tree
  std::vector<std::string> errors;         // substrings of Errors()
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.fixture; }

class ContainerFixtureTest : public ::testing::TestWithParam<Case> {};

TEST_P(ContainerFixtureTest, Tree) {
  ASSERT_FALSE(testing::FixtureDir().empty()) << "fixture generation failed";
  const Case& c = GetParam();
  auto file = AnalyzeFile(FixturePath(c.fixture));
  ASSERT_TRUE(file.ok()) << file.status();
  const Member& root = file->root();
  SCOPED_TRACE(Tree(root));
  EXPECT_EQ(FormatName(root.format), FormatName(c.root));
  for (const auto& [path, format] : c.members) {
    const Member* m = Find(root, path);
    ASSERT_NE(m, nullptr) << path;
    EXPECT_EQ(FormatName(m->format), FormatName(format)) << path;
  }
  std::vector<std::string> notes;
  size_t pickles = 0;
  Collect(root, notes, pickles);
  EXPECT_EQ(pickles, c.pickles);
  std::string all_notes = absl::StrJoin(notes, "\n");
  for (const auto& n : c.notes) {
    EXPECT_NE(all_notes.find(n), std::string::npos) << n << "\nin:\n" << all_notes;
  }
  std::vector<std::string> errors = file->Errors();
  std::string all_errors = absl::StrJoin(errors, "\n");
  EXPECT_EQ(file->HasErrors(), !c.errors.empty()) << all_errors;
  for (const auto& e : c.errors) {
    EXPECT_NE(all_errors.find(e), std::string::npos) << e << "\nin:\n" << all_errors;
  }
  // Identity: the plain SHA-256 when every byte was read, else the content
  // key only (the whole-file hash would read the skipped storages).
  const std::vector<uint8_t> bytes = ReadFixture(c.fixture);
  EXPECT_EQ(file->size(), bytes.size());
  if (file->unread().empty()) {
    EXPECT_EQ(file->sha256(), hooks::Sha256Hex(bytes));
    EXPECT_EQ(file->content_key(), file->sha256());
  } else {
    EXPECT_EQ(file->sha256(), "");
    EXPECT_EQ(file->content_key(), ContentKey(bytes, file->unread()));
    EXPECT_NE(file->content_key(), hooks::Sha256Hex(bytes));
  }
}

using F = Format;
const Case kCases[] = {
    {"sd_zip.pt", F::kTorchZip,
     {{"sd_zip/data.pkl", F::kRawPickle}, {"sd_zip/data/0", F::kData}}, 1,
     {"tensor storage (not expanded)"}, {}},
    {"module_zip.pt", F::kTorchZip, {{"module_zip/data.pkl", F::kRawPickle}}, 1, {}, {}},
    {"legacy.pt", F::kTorchLegacy, {}, 5, // The offset varies: torch names legacy storages by memory address.
     {"storage data: 64 bytes at offset "}, {}},
    {"legacy_tar.pt", F::kTorchLegacyTar,
     {{"pickle", F::kRawPickle}, {"storages", F::kRawPickle},
      {"tensors", F::kRawPickle}, {"sys_info", F::kRawPickle}},
     7, {"storage data: 28 bytes in 1 records", "tensor metadata"}, {}},
    {"script.pt", F::kTorchScriptZip,
     {{"script/data.pkl", F::kRawPickle}, {"script/constants.pkl", F::kRawPickle},
      {"script/code/__torch__.py", F::kData}},
     5, {}, {}},
    {"plain.joblib", F::kJoblib, {}, 1, {}, {}},
    {"comp_zlib.joblib", F::kZlib, {{"(zlib)", F::kJoblib}}, 1, {}, {}},
    {"comp_gzip.joblib", F::kGzip, {{"(gzip)", F::kJoblib}}, 1, {}, {}},
    {"comp_bz2.joblib", F::kBzip2, {{"(bzip2)", F::kJoblib}}, 1, {}, {}},
    {"comp_xz.joblib", F::kXz, {{"(xz)", F::kJoblib}}, 1, {}, {}},
    {"comp_lzma.joblib", F::kLzma, {{"(lzma)", F::kJoblib}}, 1, {}, {}},
    {"num.npy", F::kNumpyNpy, {}, 0, {"dtype <f8, shape (3, 4)"}, {}},
    {"num_v2.npy", F::kNumpyNpy, {}, 0, {"dtype <i4, shape (4)"}, {}},
    {"num_v3.npy", F::kNumpyNpy, {}, 0, {"dtype <i4, shape (4)"}, {}},
    {"obj.npy", F::kNumpyNpy, {}, 1, {"dtype |O"}, {}},
    {"plain.npz", F::kNumpyNpz, {{"a.npy", F::kNumpyNpy}, {"b.npy", F::kNumpyNpy}}, 0, {}, {}},
    {"comp.npz", F::kNumpyNpz, {{"a.npy", F::kNumpyNpy}}, 0, {"shape (1000)"}, {}},
    {"obj.npz", F::kNumpyNpz, {{"o.npy", F::kNumpyNpy}}, 1, {}, {}},
    {"p0.pkl", F::kRawPickle, {}, 1, {}, {}},
    {"p1.pkl", F::kRawPickle, {}, 1, {}, {}},
    {"p2.pkl", F::kRawPickle, {}, 1, {}, {}},
    {"p3.pkl", F::kRawPickle, {}, 1, {}, {}},
    {"p4.pkl", F::kRawPickle, {}, 1, {}, {}},
    {"p5.pkl", F::kRawPickle, {}, 1, {}, {}},
    {"stacked.pkl", F::kRawPickle, {}, 3, {"trailing data: 10 bytes at offset 40"}, {}},
    {"wrap_stored.zip", F::kZip,
     {{"models/model.pt", F::kTorchZip},
      {"models/model.pt/sd_zip/data.pkl", F::kRawPickle},
      {"README.txt", F::kData}},
     1, {}, {}},
    {"wrap_deflated.zip", F::kZip,
     {{"m/model.pt", F::kTorchZip}, {"m/legacy.pt", F::kTorchLegacy},
      {"m/weights.npy", F::kNumpyNpy}, {"m/big.bin", F::kData}},
     6, {}, {}},
    {"wrap.tar", F::kTar,
     {{"ckpt/model.pt", F::kTorchZip}, {"ckpt/extra.pkl", F::kRawPickle}}, 2, {}, {}},
    {"wrap.tar.gz", F::kGzip,
     {{"(gzip)", F::kTar}, {"(gzip)/model.pt", F::kTorchZip}}, 1, {}, {}},
    {"wrap.7z", F::kSevenZip,
     {{"sd_zip.pt", F::kTorchZip}, {"plain.joblib", F::kJoblib}}, 2, {}, {}},
    {"legacy.pt.gz", F::kGzip, {{"(gzip)", F::kTorchLegacy}}, 5, {}, {}},
    {"p4.pkl.bz2", F::kBzip2, {{"(bzip2)", F::kRawPickle}}, 1, {}, {}},
    // Tolerated variants of a torch zip.
    {"bad_crc.pt", F::kTorchZip, {}, 1, {"CRC mismatch: directory says 12345678"}, {}},
    {"renamed.pt", F::kTorchZip, {{"zz_zip/data.pkl", F::kRawPickle}}, 1, {}, {}},
    {"flags.pt", F::kTorchZip, {{"sd_zip/data.pkl", F::kRawPickle}}, 1, {}, {}},
    {"extra_files.pt", F::kTorchZip,
     {{"sd_zip/extra.pkl", F::kRawPickle}, {"sd_zip/notes.txt", F::kData}}, 2, {}, {}},
    {"prefix.pt", F::kTorchZip, {}, 1, {"128 bytes of prefix data"}, {}},
    {"local_name.pt", F::kTorchZip, {}, 1,
     {"local header name \"sd_zip/versioX\" differs"}, {}},
    // Broken inputs: errors name the file, the member and the offset.
    {"trunc_zip_10.pt", F::kZip, {}, 0, {},
     {"trunc_zip_10.pt: zip: data too short"}},
    {"trunc_zip_100.pt", F::kTorchZip, {}, 1, {"entries recovered from local headers"},
     {"zip: no end of central directory record",
      "member sd_zip/data.pkl: pickle: GLOBAL argument at offset 14"}},
    {"trunc_zip_497.pt", F::kTorchZip, {{"sd_zip/data.pkl", F::kRawPickle}}, 1, {},
     {"no end of central directory record"}},
    {"trunc_zip_985.pt", F::kTorchZip, {}, 1, {}, {"no end of central directory"}},
    {"trunc.pkl", F::kRawPickle, {}, 1, {},
     {"trunc.pkl: pickle: FRAME length 91 at offset 2 runs past end of stream"}},
    {"trunc_legacy.pt", F::kTorchLegacy, {}, 4, {}, {"at offset 151"}},
    {"trunc_gzip.joblib", F::kGzip, {}, 0, {},
     {"trunc_gzip.joblib: member (gzip): gzip: input truncated after 238 bytes"}},
    {"bomb_ratio.zip", F::kZip, {}, 0, {},
     {"member a/b.bin: zip bomb: member \"a/b.bin\" would expand past 50970000 bytes "
      "(stored 50970 bytes"}},
    {"bomb_lie.zip", F::kZip, {}, 0, {},
     {"zip bomb: member \"a/b.pkl\" would expand past"}},
    {"bomb_overlap.zip", F::kZip, {}, 0, {},
     {"zip bomb: member \"x.pkl\" (bytes 0..251) overlaps member \"y.pkl\""}},
    {"deep.zip", F::kZip, {}, 0, {},
     {"member d9/d8/d7/d6/d5/d4/d3/d2: archive nesting deeper than 8 levels"}},
};

INSTANTIATE_TEST_SUITE_P(Fixtures, ContainerFixtureTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) {
                           std::string n = info.param.fixture;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

TEST(ContainerTest, UnknownFormatsAreStatusErrors) {
  for (const char* name : {"random.bin", "text.txt"}) {
    auto file = AnalyzeFile(FixturePath(name));
    ASSERT_FALSE(file.ok()) << name;
    EXPECT_NE(file.status().message().find(std::string(name) + ": unknown format"),
              std::string::npos)
        << file.status();
    EXPECT_NE(file.status().message().find("first bytes: "), std::string::npos);
  }
  auto empty = AnalyzeBytes({}, "empty.bin");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "empty.bin: empty file");
  auto missing = AnalyzeFile("/nonexistent/model.pt");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// A protocol-0 stream that calls a global and then breaks after a few
// opcodes is still a pickle (the unpickler ran the call before failing), not
// an unknown format: its globals must be reported.
TEST(ContainerTest, ShortBrokenProtocol0StreamWithCallIsAPickle) {
  const std::string bytes =
      std::string("cos\nsystem\n(X\x09\x00\x00\x00/bin/truetR", 28) +
      std::string("X\xf0\xff\xff\xff" "dyna", 9);
  auto file = AnalyzeBytes(
      {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
      "short.npy");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->root().format, Format::kRawPickle);
  ASSERT_EQ(file->root().pickles.size(), 1u);
  const auto& stream = file->root().pickles[0];
  EXPECT_FALSE(stream.complete);
  ASSERT_EQ(stream.globals.size(), 1u);
  EXPECT_EQ(stream.globals[0].module, "os");
  EXPECT_EQ(stream.globals[0].name, "system");
  EXPECT_TRUE(file->HasErrors());
  // Text that merely starts like a GLOBAL and makes no call stays unknown.
  const std::string text = "class Foo:\n  pass\n  x = 1\n";
  auto text_file = AnalyzeBytes(
      {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, "t.py");
  EXPECT_FALSE(text_file.ok());
}

// A file that starts like a pickle importing something and then breaks
// ("cbuiltins\nexec\n(" and a bad BINUNICODE length) is a raw pickle with a
// decode error, and its global is reported (pickle.load runs find_class on
// it before failing).
TEST(ContainerTest, PickleShapedBrokenStreamIsARawPickleWithItsGlobals) {
  const std::string bytes("cbuiltins\nexec\n(X\xff\xff\xff\x7f", 21);
  auto file = AnalyzeBytes(
      {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
      "shaped.bin");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->root().format, Format::kRawPickle);
  ASSERT_EQ(file->root().pickles.size(), 1u);
  const auto& stream = file->root().pickles[0];
  EXPECT_FALSE(stream.complete);
  ASSERT_TRUE(stream.error.has_value());
  EXPECT_NE(stream.error->message.find("BINUNICODE"), std::string::npos)
      << stream.error->message;
  ASSERT_EQ(stream.globals.size(), 1u);
  EXPECT_EQ(stream.globals[0].module, "builtins");
  EXPECT_EQ(stream.globals[0].name, "exec");
  EXPECT_TRUE(file->HasErrors());
}

// The pickle-shape criterion does not claim ordinary files: text, source,
// JSON, CSV, YAML, a safetensors header, and (below) random bytes.
TEST(ContainerTest, PickleShapeCriterionRejectsNonPickles) {
  const std::string safetensors =
      std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8) +
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}      )" +
      std::string(4, '\0');
  const std::string kCases[] = {
      "Hello world.\nThis is a README.\n",
      "class Foo:\n  pass\n  x = 1\n",
      "import os\nprint(os.getcwd())\n",
      "{\"a\": [1, 2, 3], \"b\": null}\n",
      "col_a,col_b\n1,2\n3,4\n",
      "config:\n  lr: 0.1\n",
      // A word list whose first two lines are identifiers: the third line
      // does not continue a valid opcode sequence.
      "cat\ndog\nemu\nfox\n",
      "cat\ndog\n",
      // A GLOBAL whose names are not identifiers.
      "cnot a module\nname here\n(((",
      safetensors,
  };
  for (const std::string& text : kCases) {
    auto file = AnalyzeBytes(
        {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, "x");
    EXPECT_FALSE(file.ok()) << "taken as " << FormatName(file->root().format)
                            << ": " << text;
  }
  // Random bytes: the broken-stream rules (global + call, identifier
  // global, 8 opcodes) claim none; what is claimed at all is claimed by a
  // 2-byte PROTO header or a complete stream ("N."), about 1 in 10^4 (fixed
  // seed; a linear congruential generator so the bytes are the same
  // everywhere).
  uint64_t state = 0x9e3779b97f4a7c15ull;
  size_t claimed = 0;
  constexpr int kBuffers = 20000;
  for (int n = 0; n < kBuffers; ++n) {
    std::string buf(64 + n % 448, '\0');
    for (char& c : buf) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>(state >> 56);
    }
    auto file = AnalyzeBytes(
        {reinterpret_cast<const uint8_t*>(buf.data()), buf.size()}, "r");
    if (!file.ok() || file->root().format != Format::kRawPickle) continue;
    ++claimed;
    const auto& first = file->root().pickles[0];
    const bool proto = static_cast<uint8_t>(buf[0]) == 0x80 &&
                       static_cast<uint8_t>(buf[1]) <= 5;
    EXPECT_TRUE(proto || first.complete)
        << "buffer " << n << " claimed by a broken-stream rule: "
        << first.stats.opcode_count << " opcodes, " << first.globals.size()
        << " globals";
  }
  EXPECT_LE(claimed, kBuffers / 1000u);
}

TEST(ContainerTest, AcceptUnknownReturnsADataRoot) {
  const std::string text = "just some text\n";
  AnalyzeOptions options;
  options.accept_unknown = true;
  auto file = AnalyzeBytes(
      {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, "t.pt",
      options);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->root().format, Format::kData);
  EXPECT_EQ(file->root().bytes.size(), text.size());
}

// Whatever Python's loader accepts, we analyse without errors.
TEST(ContainerTest, AcceptsWhatPythonLoadersAccept) {
  ASSERT_FALSE(testing::FixtureDir().empty());
  auto rows = testing::ReadTsv("expectations.tsv");
  ASSERT_GT(rows.size(), 30u);
  for (const auto& row : rows) {
    if (row[2] != "1") continue;
    auto file = AnalyzeFile(FixturePath(row[0]));
    ASSERT_TRUE(file.ok()) << row[0] << ": " << file.status();
    EXPECT_FALSE(file->HasErrors())
        << row[0] << " (" << row[1] << " accepts it): "
        << absl::StrJoin(file->Errors(), "; ");
  }
}

TEST(ContainerTest, NestedZipBombStopsAtExpandedLimit) {
  AnalyzeOptions options;
  options.limits.max_expanded_bytes = 8 << 20;
  auto file = AnalyzeFile(FixturePath("bomb_nested.zip"), options);
  ASSERT_TRUE(file.ok()) << file.status();
  std::string errors = absl::StrJoin(file->Errors(), "\n");
  EXPECT_NE(errors.find("zip bomb: member \"l2_"), std::string::npos) << errors;
  EXPECT_NE(errors.find("max expanded bytes 8388608 per file"), std::string::npos)
      << errors;
}

TEST(ContainerTest, EntryLimit) {
  AnalyzeOptions options;
  options.limits.max_entries = 50;
  auto file = AnalyzeFile(FixturePath("bomb_nested.zip"), options);
  ASSERT_TRUE(file.ok()) << file.status();
  std::string errors = absl::StrJoin(file->Errors(), "\n");
  EXPECT_NE(errors.find("too many archive entries (limit 50 per file)"),
            std::string::npos)
      << errors;
}

TEST(ContainerTest, DepthLimitIsConfigurable) {
  AnalyzeOptions options;
  options.limits.max_depth = 2;
  auto file = AnalyzeFile(FixturePath("wrap.tar.gz"), options);
  ASSERT_TRUE(file.ok());
  // gzip (0) -> tar (1) -> torch zip (2): the zip is too deep.
  std::string errors = absl::StrJoin(file->Errors(), "\n");
  EXPECT_NE(errors.find("member (gzip)/model.pt: archive nesting deeper than 2"),
            std::string::npos)
      << errors;
}

TEST(ContainerTest, BytesMatchFileAndViewsStayValid) {
  auto bytes = ReadFixture("wrap_deflated.zip");
  AnalyzeOptions options;
  auto from_bytes = AnalyzeBytes(bytes, "mem.zip", options);
  ASSERT_TRUE(from_bytes.ok());
  auto from_file = AnalyzeFile(FixturePath("wrap_deflated.zip"), options);
  ASSERT_TRUE(from_file.ok());
  EXPECT_EQ(from_bytes->sha256(), from_file->sha256());
  EXPECT_EQ(Tree(from_bytes->root()), Tree(from_file->root()));
  // Moving the result keeps member views valid (decompressed buffers).
  AnalyzedFile moved = std::move(*from_bytes);
  const Member* legacy = Find(moved.root(), "m/legacy.pt");
  ASSERT_NE(legacy, nullptr);
  ASSERT_EQ(legacy->bytes.size(), legacy->size);
  auto original = ReadFixture("legacy.pt");
  EXPECT_TRUE(std::equal(legacy->bytes.begin(), legacy->bytes.end(), original.begin()));
  // Storages and unanalysed data are not expanded.
  const Member* big = Find(moved.root(), "m/big.bin");
  ASSERT_NE(big, nullptr);
  EXPECT_TRUE(big->bytes.empty());
  EXPECT_EQ(big->size, 16384u);
}

TEST(ContainerTest, OffsetsAreMemberOffsets) {
  AnalyzeOptions options;
  options.decode.keep_ops = true;
  auto file = AnalyzeFile(FixturePath("stacked.pkl"), options);
  ASSERT_TRUE(file.ok());
  const auto& p = file->root().pickles;
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].offset, 0u);
  EXPECT_EQ(p[1].offset, 12u);
  EXPECT_EQ(p[2].offset, 33u);
  ASSERT_FALSE(p[1].ops.empty());
  EXPECT_EQ(p[1].ops.front().offset, 12u);
  auto npy = AnalyzeFile(FixturePath("obj.npy"), options);
  ASSERT_TRUE(npy.ok());
  ASSERT_EQ(npy->root().pickles.size(), 1u);
  EXPECT_EQ(npy->root().pickles[0].offset, 128u);
}

// Cutting a file anywhere never crashes, and a cut zip, pickle or gzip is
// always reported (as a Status error or as errors in the tree).
TEST(ContainerTest, TruncationSweep) {
  for (const char* name : {"sd_zip.pt", "p4.pkl", "comp_gzip.joblib", "legacy.pt",
                           "obj.npy", "wrap.7z", "wrap.tar.gz", "plain.npz"}) {
    auto data = ReadFixture(name);
    bool must_fail = std::string(name) == "sd_zip.pt" || std::string(name) == "p4.pkl" ||
                     std::string(name) == "comp_gzip.joblib";
    for (size_t cut = 1; cut < data.size(); ++cut) {
      auto file = AnalyzeBytes(std::span<const uint8_t>(data.data(), cut), name);
      if (must_fail) {
        EXPECT_TRUE(!file.ok() || file->HasErrors()) << name << " cut at " << cut;
      }
    }
  }
}

// --- Tensor storages are never read (issue 10) --------------------------------

std::string TreeWithPickles(const Member& m) {
  std::string s = Tree(m);
  std::vector<const Member*> todo = {&m};
  while (!todo.empty()) {
    const Member* x = todo.back();
    todo.pop_back();
    for (const hooks::PickleStream& p : x->pickles) {
      s += x->name + " @" + std::to_string(p.offset) + "+" +
           std::to_string(p.length) + ":";
      for (const hooks::GlobalReference& g : p.globals) {
        s += " " + g.module + "." + g.name;
      }
      s += "\n";
    }
    for (const std::string& n : x->notes) s += x->name + " note: " + n + "\n";
    for (const Member& c : x->children) todo.push_back(&c);
  }
  return s;
}

// The data ranges of a torch zip's storage entries ("<folder>/data/<key>").
std::vector<ByteRange> StorageRanges(std::span<const uint8_t> data) {
  std::vector<ByteRange> out;
  absl::StatusOr<ZipArchive> dir = ReadZipDirectory(data);
  if (!dir.ok()) return out;
  for (const ZipEntry& e : dir->entries) {
    if (e.name.find("/data/") != std::string::npos) {
      out.push_back({e.data_offset, e.compressed_size});
    }
  }
  return out;
}

TEST(ContainerStoragesTest, TorchZipStoragesAreUnreadAndKeyedByPlaceOnly) {
  const std::vector<uint8_t> data = ReadFixture("sd_zip.pt");
  const std::vector<ByteRange> storages = StorageRanges(data);
  ASSERT_FALSE(storages.empty());
  absl::StatusOr<AnalyzedFile> file = AnalyzeFile(FixturePath("sd_zip.pt"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->unread(), NormalizeRanges(storages, data.size()));
  uint64_t total = 0;
  for (const ByteRange& r : storages) total += r.length;
  EXPECT_EQ(file->unread_bytes(), total);
  EXPECT_EQ(file->sha256(), "");

  AnalyzeOptions full;
  full.full_sha256 = true;
  absl::StatusOr<AnalyzedFile> hashed = AnalyzeFile(FixturePath("sd_zip.pt"), full);
  ASSERT_TRUE(hashed.ok()) << hashed.status();
  EXPECT_EQ(hashed->sha256(), hooks::Sha256Hex(data));
  EXPECT_EQ(hashed->content_key(), file->content_key());
  // In memory (no file to re-read) the full hash comes from the bytes.
  absl::StatusOr<AnalyzedFile> bytes = AnalyzeBytes(data, "sd_zip.pt", full);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->sha256(), hooks::Sha256Hex(data));
  EXPECT_EQ(bytes->content_key(), file->content_key());
}

// Garbage in every storage byte (CRCs left stale, as an attacker or a
// broken disk would leave them) analyses identically and keeps the key;
// a byte changed anywhere else changes the key.
TEST(ContainerStoragesTest, GarbageStoragesAnalyseIdentically) {
  const std::vector<uint8_t> data = ReadFixture("sd_zip.pt");
  std::vector<uint8_t> garbage = data;
  for (const ByteRange& r : StorageRanges(data)) {
    for (uint64_t i = 0; i < r.length; ++i) {
      garbage[r.offset + i] = static_cast<uint8_t>(0xA5 ^ (i * 131));
    }
  }
  ASSERT_NE(garbage, data);
  auto a = AnalyzeBytes(data, "sd_zip.pt");
  auto b = AnalyzeBytes(garbage, "sd_zip.pt");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(TreeWithPickles(a->root()), TreeWithPickles(b->root()));
  EXPECT_FALSE(b->HasErrors()) << absl::StrJoin(b->Errors(), "\n");
  EXPECT_EQ(a->content_key(), b->content_key());
  EXPECT_NE(hooks::Sha256Hex(data), hooks::Sha256Hex(garbage));

  // The pickle member, the directory (a CRC) and the size are keyed.
  absl::StatusOr<ZipArchive> dir = ReadZipDirectory(data);
  ASSERT_TRUE(dir.ok());
  for (const ZipEntry& e : dir->entries) {
    if (e.name.size() < 9 || e.name.substr(e.name.size() - 9) != "/data.pkl") {
      continue;
    }
    std::vector<uint8_t> pickle_changed = data;
    pickle_changed[e.data_offset + e.compressed_size / 2] ^= 0x01;
    auto c = AnalyzeBytes(pickle_changed, "sd_zip.pt");
    ASSERT_TRUE(c.ok());
    EXPECT_NE(c->content_key(), a->content_key());
  }
  std::vector<uint8_t> crc_changed = data;
  crc_changed[dir->directory_offset + 16] ^= 0x01;  // first entry's CRC-32
  auto d = AnalyzeBytes(crc_changed, "sd_zip.pt");
  ASSERT_TRUE(d.ok());
  EXPECT_NE(d->content_key(), a->content_key());
}

// Legacy torch files: storages follow the pickles inline. A file cut in the
// middle of them still shows every pickle, with no error, and the unread
// tail is the storage data.
TEST(ContainerStoragesTest, LegacyStorageBytesTruncatedStillShowThePickles) {
  const std::vector<uint8_t> data = ReadFixture("legacy.pt");
  auto full = AnalyzeBytes(data, "legacy.pt");
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->root().pickles.size(), 5u);
  ASSERT_EQ(full->unread().size(), 1u);
  const ByteRange storage = full->unread()[0];
  EXPECT_EQ(storage.offset + storage.length, data.size());
  uint64_t pickles_end = 0;
  for (const hooks::PickleStream& p : full->root().pickles) {
    pickles_end = std::max(pickles_end, p.offset + p.length);
  }
  EXPECT_EQ(storage.offset, pickles_end);

  for (uint64_t cut : {storage.offset + 1, storage.offset + storage.length / 2,
                       data.size() - 1}) {
    auto file = AnalyzeBytes(std::span<const uint8_t>(data.data(), cut), "cut");
    ASSERT_TRUE(file.ok()) << cut;
    EXPECT_EQ(FormatName(file->root().format), FormatName(Format::kTorchLegacy));
    EXPECT_FALSE(file->HasErrors()) << absl::StrJoin(file->Errors(), "\n");
    ASSERT_EQ(file->root().pickles.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(file->root().pickles[i].globals.size(),
                full->root().pickles[i].globals.size());
    }
    EXPECT_EQ(file->unread(),
              (std::vector<ByteRange>{{storage.offset, cut - storage.offset}}));
  }
}

// A NumPy array's data is not read either.
TEST(ContainerStoragesTest, NpyArrayDataIsUnread) {
  const std::vector<uint8_t> data = ReadFixture("num.npy");
  auto file = AnalyzeBytes(data, "num.npy");
  ASSERT_TRUE(file.ok());
  ASSERT_EQ(file->unread().size(), 1u);
  EXPECT_EQ(file->unread()[0].length, 12u * 8u);  // 3x4 float64
  EXPECT_EQ(file->unread()[0].offset + file->unread()[0].length, data.size());
}

// Writes a stored (uncompressed) zip: a torch checkpoint layout with one
// big storage. Returns the storage's data range.
ByteRange WriteTorchZip(const std::string& path, std::span<const uint8_t> pickle,
                        uint64_t storage_bytes) {
  std::vector<uint8_t> storage(storage_bytes);
  for (uint64_t i = 0; i < storage_bytes; ++i) storage[i] = static_cast<uint8_t>(i * 29);
  struct Item {
    std::string name;
    std::span<const uint8_t> bytes;
    uint32_t offset = 0;
    uint32_t crc = 0;
  };
  static const uint8_t kVersion[] = {'3', '\n'};
  std::vector<Item> items = {{"big/data.pkl", pickle},
                             {"big/data/0", storage},
                             {"big/version", kVersion}};
  std::string out;
  auto le16 = [&](uint32_t v) { out.push_back(char(v)); out.push_back(char(v >> 8)); };
  auto le32 = [&](uint32_t v) { le16(v & 0xFFFF); le16(v >> 16); };
  ByteRange range;
  std::ofstream f(path, std::ios::binary);
  uint64_t pos = 0;
  for (Item& it : items) {
    it.offset = static_cast<uint32_t>(pos);
    it.crc = static_cast<uint32_t>(crc32(0, it.bytes.data(), static_cast<uInt>(it.bytes.size())));
    out.clear();
    le32(0x04034b50); le16(20); le16(0); le16(0); le16(0); le16(0);
    le32(it.crc); le32(static_cast<uint32_t>(it.bytes.size()));
    le32(static_cast<uint32_t>(it.bytes.size()));
    le16(static_cast<uint32_t>(it.name.size())); le16(0);
    out += it.name;
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    pos += out.size();
    if (it.name == "big/data/0") range = {pos, it.bytes.size()};
    f.write(reinterpret_cast<const char*>(it.bytes.data()),
            static_cast<std::streamsize>(it.bytes.size()));
    pos += it.bytes.size();
  }
  out.clear();
  for (const Item& it : items) {
    le32(0x02014b50); le16(20); le16(20); le16(0); le16(0); le16(0); le16(0);
    le32(it.crc); le32(static_cast<uint32_t>(it.bytes.size()));
    le32(static_cast<uint32_t>(it.bytes.size()));
    le16(static_cast<uint32_t>(it.name.size())); le16(0); le16(0); le16(0); le16(0);
    le32(0); le32(it.offset);
    out += it.name;
  }
  const uint32_t cd_size = static_cast<uint32_t>(out.size());
  le32(0x06054b50); le16(0); le16(0); le16(3); le16(3); le32(cd_size);
  le32(static_cast<uint32_t>(pos)); le16(0);
  f.write(out.data(), static_cast<std::streamsize>(out.size()));
  return range;
}

// Resident pages of `range` of the file behind `fd`, bytes.
uint64_t ResidentBytes(int fd, uint64_t file_size, ByteRange range) {
  void* map = mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return UINT64_MAX;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((file_size + page - 1) / page);
  uint64_t resident = 0;
  if (mincore(map, file_size, vec.data()) == 0) {
    for (uint64_t p = range.offset / page; p * page < range.offset + range.length; ++p) {
      if (vec[p] & 1) resident += page;
    }
  } else {
    resident = UINT64_MAX;
  }
  munmap(map, file_size);
  return resident;
}

// The proof that storages are not read: with the file evicted from the page
// cache first, analysing it brings (almost) none of the storage's pages in
// (the pages it shares with the zip headers around it at most).
TEST(ContainerStoragesTest, AnalysisDoesNotPageInTheStorage) {
  auto pickle_dir = ReadZipDirectory(ReadFixture("sd_zip.pt"));
  ASSERT_TRUE(pickle_dir.ok());
  const std::vector<uint8_t> sd = ReadFixture("sd_zip.pt");
  std::vector<uint8_t> pickle;
  for (const ZipEntry& e : pickle_dir->entries) {
    if (e.name.find("data.pkl") != std::string::npos) {
      pickle.assign(sd.begin() + static_cast<std::ptrdiff_t>(e.data_offset),
                    sd.begin() + static_cast<std::ptrdiff_t>(e.data_offset + e.compressed_size));
    }
  }
  ASSERT_FALSE(pickle.empty());
  const std::string path = std::string(DYNAHUG_TEST_DATA_DIR) + "/storage_not_read.pt";
  const uint64_t kStorage = uint64_t{64} << 20;
  const ByteRange storage = WriteTorchZip(path, pickle, kStorage);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const uint64_t size = static_cast<uint64_t>(lseek(fd, 0, SEEK_END));
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  const uint64_t before = ResidentBytes(fd, size, storage);
  if (before > kStorage / 2) {
    close(fd);
    unlink(path.c_str());
    GTEST_SKIP() << "this filesystem does not evict clean pages on "
                    "POSIX_FADV_DONTNEED (tmpfs?): cannot observe reads";
  }
  {
    absl::StatusOr<AnalyzedFile> file = AnalyzeFile(path);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(FormatName(file->root().format), FormatName(Format::kTorchZip));
    EXPECT_FALSE(file->HasErrors()) << absl::StrJoin(file->Errors(), "\n");
    EXPECT_EQ(file->unread(), (std::vector<ByteRange>{storage}));
    const uint64_t after = ResidentBytes(fd, size, storage);
    EXPECT_LT(after, uint64_t{64} << 10)
        << "of a " << kStorage << "-byte storage, " << after
        << " bytes were paged in by the analysis (" << before << " before)";
  }
  close(fd);
  unlink(path.c_str());
}

}  // namespace
}  // namespace dynahug::runtime

// Unit tests of runtime/container/inert_formats: what a scan may skip, and
// that nothing a pickle-based loader could execute is ever skipped.
#include "runtime/container/inert_formats.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace dynahug::runtime {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A safetensors file: u64 little-endian header length, header, data.
std::string Safetensors(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
}

InertCheck Classify(const std::string& content, const std::string& name) {
  return ClassifyInert(Bytes(content), Bytes(content), content.size(), name);
}

TEST(InertFormatsTest, ValidSafetensorsIsSkippedWithTensorCount) {
  const std::string file = Safetensors(
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F16","shape":[4],"data_offsets":[16,24]}})",
      24);
  InertCheck c = Classify(file, "model.safetensors");
  EXPECT_EQ(c.kind, InertCheck::kSkip) << c.reason;
  EXPECT_NE(c.reason.find("safetensors (2 tensors"), std::string::npos)
      << c.reason;
  EXPECT_TRUE(c.no_code_path);
}

TEST(InertFormatsTest, SafetensorsWithOffsetsOutsideTheFileIsInvalid) {
  const std::string file = Safetensors(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}})", 8);
  InertCheck c = Classify(file, "model.safetensors");
  EXPECT_EQ(c.kind, InertCheck::kInvalid);
  EXPECT_NE(c.reason.find("data_offsets"), std::string::npos) << c.reason;
}

TEST(InertFormatsTest, MalformedSafetensorsHeadersAreRejected) {
  for (const char* header :
       {R"({"a":{"dtype":"F32","shape":[2]}})",             // no offsets
        R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})",
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})",  // cut
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x)"}) {
    SCOPED_TRACE(header);
    EXPECT_FALSE(ValidateSafetensorsHeader(header, 8 + strlen(header) + 4).ok());
  }
}

TEST(InertFormatsTest, PicklesAndContainersAreAnalysedWhateverTheirName) {
  // Protocol 0 is printable text; protocol 2 starts with PROTO.
  const std::string p0 = "cposix\nsystem\n(S'/bin/true'\ntR.";
  const std::string p2 = std::string("\x80\x02", 2) + "]q\x00.";
  const std::string zip_with_prefix =
      std::string("some text before a zip ") + "PK\x05\x06" + std::string(18, '\0');
  for (const auto& [content, name] :
       std::vector<std::pair<std::string, std::string>>{
           {p0, "config.json"},
           {p0, "README.md"},
           {p2, "model.safetensors"},
           {p2, "model.onnx"},
           {"PK\x03\x04rest", "weights.gguf"},
           {zip_with_prefix, "notes.txt"},
           {std::string("\x1f\x8b\x08\x00", 4), "x.json"}}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(Classify(content, name).kind, InertCheck::kAnalyse);
  }
}

TEST(InertFormatsTest, InertFormatsAreSkippedWithTheirName) {
  struct Case {
    std::string content, name, reason_prefix;
    bool no_code_path;
  };
  const std::vector<Case> cases = {
      {std::string("GGUF\x03\x00\x00\x00", 8), "m.gguf", "GGUF", true},
      {std::string("\x89HDF\r\n\x1a\n\x00\x00", 10), "tf_model.h5", "HDF5",
       false},
      {std::string("\x08\x07\x12\x00\xff\xfe", 6), "model.onnx", "ONNX",
       false},
      {"  {\"hidden_size\": 768}\n", "config.json", "JSON", true},
      {"[1, 2]", "list", "JSON", true},
      {"# Model card\n\nTrained on things. \xc3\xa9t\xc3\xa9\n", "README.md",
       "text", true},
      {std::string("\x0a\x0b\x00\x01\xfe", 5), "tokenizer.model", "unknown",
       false}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    InertCheck check = Classify(c.content, c.name);
    EXPECT_EQ(check.kind, InertCheck::kSkip);
    EXPECT_EQ(check.reason.rfind(c.reason_prefix, 0), 0u) << check.reason;
    EXPECT_EQ(check.no_code_path, c.no_code_path) << check.reason;
  }
}

TEST(InertFormatsTest, TextCutInsideACharacterIsStillText) {
  const std::string text = "caf\xc3\xa9 caf\xc3\xa9";
  const std::string cut = text.substr(0, text.size() - 1);  // half of é
  // The head ends inside a character of a longer file: still text.
  InertCheck longer = ClassifyInert(Bytes(cut), Bytes(cut), 1000, "notes");
  EXPECT_EQ(longer.reason.rfind("text", 0), 0u) << longer.reason;
  // The same bytes as a whole file are not valid UTF-8.
  InertCheck whole = Classify(cut, "notes");
  EXPECT_EQ(whole.reason.rfind("unknown", 0), 0u) << whole.reason;
}

TEST(InertFormatsTest, CheckInertFileReadsAHeaderLongerThanTheHead) {
  std::string header = R"({"__metadata__":{"pad":")" +
                       std::string(100000, 'x') +
                       R"("},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  char path[] = "/tmp/dynahug-inert-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path, std::ios::binary);
    out << Safetensors(header, 4);
  }
  absl::StatusOr<InertCheck> c = CheckInertFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kind, InertCheck::kSkip) << c->reason;
  EXPECT_NE(c->reason.find("1 tensors"), std::string::npos) << c->reason;
  unlink(path);
  EXPECT_FALSE(CheckInertFile(path).ok());
}

}  // namespace
}  // namespace dynahug::runtime

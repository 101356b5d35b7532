// FileLoaders: which loaders run on a file, by content, name and hint
// (runtime/trace/trace_runner.h). Static analysis only: nothing is loaded.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/container/container.h"
#include "runtime/trace/trace_runner.h"

namespace dynahug::runtime {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A protocol-2 pickle of {}.
const std::string kRawPickle("\x80\x02}q\x00.", 5);
// A joblib-shaped pickle: references joblib's NumpyArrayWrapper.
const std::string kJoblibPickle =
    std::string("\x80\x02", 2) +
    "cjoblib.numpy_pickle\nNumpyArrayWrapper\nq\x00)\x81q\x01.";
// A stored zip holding archive/data.pkl (a torch zip to the sniffer).
std::string TorchZip() {
  const std::string name = "archive/data.pkl";
  const std::string& data = kRawPickle;
  auto le16 = [](std::string& s, uint16_t v) {
    s.push_back(static_cast<char>(v & 0xff));
    s.push_back(static_cast<char>(v >> 8));
  };
  auto le32 = [&](std::string& s, uint32_t v) {
    le16(s, v & 0xffff);
    le16(s, v >> 16);
  };
  std::string z = "PK\x03\x04";
  le16(z, 20), le16(z, 0), le16(z, 0), le16(z, 0), le16(z, 0);
  le32(z, 0), le32(z, data.size()), le32(z, data.size());
  le16(z, name.size()), le16(z, 0);
  z += name + data;
  const uint32_t cd = z.size();
  z += "PK\x01\x02";
  le16(z, 20), le16(z, 20), le16(z, 0), le16(z, 0), le16(z, 0), le16(z, 0);
  le32(z, 0), le32(z, data.size()), le32(z, data.size());
  le16(z, name.size()), le16(z, 0), le16(z, 0), le16(z, 0), le16(z, 0);
  le32(z, 0), le32(z, 0);
  z += name;
  const uint32_t cd_size = z.size() - cd;
  z += "PK\x05\x06";
  le16(z, 0), le16(z, 0), le16(z, 1), le16(z, 1);
  le32(z, cd_size), le32(z, cd);
  le16(z, 0);
  return z;
}

std::vector<std::string> Loaders(const std::string& bytes,
                                 const std::string& name,
                                 const TraceOptions& options = {}) {
  AnalyzeOptions analyze;
  analyze.accept_unknown = true;
  absl::StatusOr<AnalyzedFile> file = AnalyzeBytes(Bytes(bytes), name, analyze);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return {"<error>"};
  return FileLoaders(*file, options);
}

using V = std::vector<std::string>;

TEST(FileLoadersTest, ContentLoaderAloneWhenTheNameAgreesOrAddsNothing) {
  EXPECT_EQ(Loaders(kRawPickle, "model.pkl"), V{"pickle.load"});
  EXPECT_EQ(Loaders(kRawPickle, "noext"), V{"pickle.load"});
  // joblib.load and numpy.load run a prefix of what the pickle loop runs.
  EXPECT_EQ(Loaders(kRawPickle, "model.joblib"), V{"pickle.load"});
  EXPECT_EQ(Loaders(kRawPickle, "x.npy"), V{"pickle.load"});
  EXPECT_EQ(Loaders(TorchZip(), "model.pt"), V{"torch.load"});
  // pickle.load stops at "PK": nothing to add.
  EXPECT_EQ(Loaders(TorchZip(), "model.pkl"), V{"torch.load"});
  EXPECT_EQ(Loaders(kJoblibPickle, "model.joblib"), V{"joblib.load"});
}

TEST(FileLoadersTest, ExtensionAddsTheLoaderThatCouldRunOtherCode) {
  for (const char* name : {"model.pt", "w.PTH", "pytorch_model.bin", "l.ckpt"}) {
    EXPECT_EQ(Loaders(kRawPickle, name), (V{"pickle.load", "torch.load"}))
        << name;
  }
  EXPECT_EQ(Loaders(kJoblibPickle, "model.pkl"),
            (V{"joblib.load", "pickle.load"}));
}

TEST(FileLoadersTest, AsNameReplacesThePathsName) {
  TraceOptions options;
  options.as_name = ".pt";
  EXPECT_EQ(Loaders(kRawPickle, "3f2a9c", options),
            (V{"pickle.load", "torch.load"}));
  options.as_name = "model.pkl";
  EXPECT_EQ(Loaders(kRawPickle, "model.pt", options), V{"pickle.load"});
}

TEST(FileLoadersTest, ExplicitLoaderRunsAlone) {
  TraceOptions options;
  options.load.loader = "torch.load";
  EXPECT_EQ(Loaders(kRawPickle, "model.pkl", options), V{"torch.load"});
  options.load.loader = "joblib.load";
  EXPECT_EQ(Loaders(TorchZip(), "model.pt", options), V{"joblib.load"});
}

// Where the readers find no model format, only a loader that opens the
// container itself runs, and only when the name calls for it.
TEST(FileLoadersTest, NoModelFormatRunsOnlyContainerOpeningLoaders) {
  const std::string data = "\x01\x02\x03 not a model";
  EXPECT_EQ(Loaders(data, "model.pt"), V{});
  EXPECT_EQ(Loaders(data, "model.pkl"), V{});
  // A zip whose data.pkl the reader does not see as torch's.
  std::string zip = TorchZip();
  const size_t at = zip.rfind("archive/data.pkl");
  zip.replace(at, 16, "archive/xata.pkl");
  EXPECT_EQ(Loaders(zip, "model.pt"), V{"torch.load"});
  EXPECT_EQ(Loaders(zip, "arrays.npz"), V{"numpy.load"});
  EXPECT_EQ(Loaders(zip, "model.pkl"), V{});
  EXPECT_EQ(Loaders(zip, "model.zip"), V{});
  TraceOptions explicit_loader;
  explicit_loader.load.loader = "pickle.load";
  EXPECT_EQ(Loaders(data, "model.dat", explicit_loader), V{"pickle.load"});
}

TEST(FileLoadersTest, AnalyzeForTraceAcceptsUnknownDataOnlyForAnExplicitLoader) {
  const std::string path = ::testing::TempDir() + "/unknown.pt";
  FILE* f = fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  fputs("\x01\x02\x03 not a model", f);
  fclose(f);
  TraceOptions options;
  absl::StatusOr<AnalyzedFile> none = AnalyzeForTrace(path, options);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("unknown format"), std::string::npos);
  options.load.loader = "torch.load";
  absl::StatusOr<AnalyzedFile> forced = AnalyzeForTrace(path, options);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->root().format, Format::kData);
  EXPECT_EQ(ResolveLoader(*forced, options), "torch.load");
}

TEST(FileLoadersTest, ResolveLoaderJoinsTheLoaders) {
  AnalyzeOptions analyze;
  absl::StatusOr<AnalyzedFile> file =
      AnalyzeBytes(Bytes(kRawPickle), "model.bin", analyze);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(ResolveLoader(*file, TraceOptions{}), "pickle.load,torch.load");
}

}  // namespace
}  // namespace dynahug::runtime

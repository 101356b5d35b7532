#include "runtime/embed/loader_table.h"

#include <set>
#include <string>

#include "gtest/gtest.h"
#include "runtime/container/format.h"

namespace dynahug::runtime {
namespace {

// What the real libraries load, by sniffed format.
TEST(LoaderTableTest, DefaultLoaderForEveryLoadableFormat) {
  const std::pair<const char*, const char*> kCases[] = {
      {"torch-zip", "torch.load"},
      {"torch-legacy", "torch.load"},
      {"torch-legacy-tar", "torch.load"},
      {"torchscript-zip", "torch.load"},
      {"joblib", "joblib.load"},
      {"gzip", "joblib.load"},
      {"zlib", "joblib.load"},
      {"bzip2", "joblib.load"},
      {"xz", "joblib.load"},
      {"lzma", "joblib.load"},
      {"npy", "numpy.load"},
      {"npz", "numpy.load"},
      {"raw-pickle", "pickle.load"},
  };
  for (const auto& [format, loader] : kCases) {
    absl::StatusOr<std::string> got = DefaultLoaderFor(format);
    ASSERT_TRUE(got.ok()) << format << ": " << got.status();
    EXPECT_EQ(*got, loader) << format;
  }
}

TEST(LoaderTableTest, ArchivesAndDataHaveNoLoader) {
  for (const char* format : {"zip", "7z", "tar", "data", "", "torch.load"}) {
    absl::StatusOr<std::string> got = DefaultLoaderFor(format);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument)
        << format;
  }
  EXPECT_EQ(DefaultLoaderFor("zip").status().message(),
            "no loader for format \"zip\"");
}

// Every format of the table is one the container readers report, and no
// format has two loaders.
TEST(LoaderTableTest, FormatsAreContainerFormatsAndUnique) {
  std::set<std::string> names;
  for (int f = static_cast<int>(Format::kData);
       f <= static_cast<int>(Format::kZlib); ++f) {
    names.insert(std::string(FormatName(static_cast<Format>(f))));
  }
  std::set<std::string> seen;
  for (const LoaderSpec& spec : Loaders()) {
    for (std::string_view format : spec.formats) {
      EXPECT_TRUE(names.count(std::string(format))) << format;
      EXPECT_TRUE(seen.insert(std::string(format)).second) << format;
    }
  }
}

TEST(LoaderTableTest, FindLoaderByName) {
  ASSERT_EQ(Loaders().size(), 4u);
  for (const LoaderSpec& spec : Loaders()) {
    EXPECT_EQ(FindLoader(spec.name), &spec);
    EXPECT_TRUE(spec.driver.starts_with("_")) << spec.driver;
  }
  EXPECT_EQ(FindLoader("auto"), nullptr);
  EXPECT_EQ(FindLoader("os.system"), nullptr);
  ASSERT_NE(FindLoader("joblib.load"), nullptr);
  EXPECT_EQ(
      std::set<std::string_view>(FindLoader("joblib.load")->packages.begin(),
                                 FindLoader("joblib.load")->packages.end()),
      (std::set<std::string_view>{"joblib", "numpy"}));
  EXPECT_TRUE(FindLoader("pickle.load")->packages.empty());
}

// The loader a victim calls for a file by its name.
TEST(LoaderTableTest, LoaderForNameByExtension) {
  const std::pair<const char*, const char*> kCases[] = {
      {"model.pt", "torch.load"},
      {"/hub/snapshots/abc/pytorch_model.bin", "torch.load"},
      {"W.PTH", "torch.load"},
      {"last.ckpt", "torch.load"},
      {".pt", "torch.load"},
      {"model.joblib", "joblib.load"},
      {"m.jbl", "joblib.load"},
      {"a.npy", "numpy.load"},
      {"a.npz", "numpy.load"},
      {"model.pkl", "pickle.load"},
      {"x.pickle", "pickle.load"},
  };
  for (const auto& [name, loader] : kCases) {
    absl::StatusOr<std::string> got = LoaderForName(name);
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    EXPECT_EQ(*got, loader) << name;
  }
  for (const char* name : {"model", "model.safetensors", "dir.pt/model",
                           "x.zip", ""}) {
    EXPECT_EQ(LoaderForName(name).status().code(), absl::StatusCode::kNotFound)
        << name;
  }
}

// No extension is claimed by two loaders.
TEST(LoaderTableTest, ExtensionsAreUnique) {
  std::set<std::string> seen;
  for (const LoaderSpec& spec : Loaders()) {
    EXPECT_FALSE(spec.extensions.empty()) << spec.name;
    for (std::string_view ext : spec.extensions) {
      EXPECT_EQ(ext.substr(0, 1), ".") << ext;
      EXPECT_TRUE(seen.insert(std::string(ext)).second) << ext;
    }
  }
}

}  // namespace
}  // namespace dynahug::runtime

#include "runtime/embed/loader_table.h"

#include "absl/strings/str_cat.h"

namespace dynahug::runtime {
namespace {

constexpr std::string_view kTorchFormats[] = {
    "torch-zip", "torch-legacy", "torch-legacy-tar", "torchscript-zip"};
constexpr std::string_view kJoblibFormats[] = {"joblib", "gzip", "zlib",
                                               "bzip2",  "xz",   "lzma"};
constexpr std::string_view kNumpyFormats[] = {"npy", "npz"};
constexpr std::string_view kPickleFormats[] = {"raw-pickle"};

constexpr std::string_view kTorch[] = {"torch"};
constexpr std::string_view kJoblibNumpy[] = {"joblib", "numpy"};
constexpr std::string_view kNumpy[] = {"numpy"};

constexpr LoaderSpec kLoaders[] = {
    {"torch.load", "_torch_load", kTorchFormats, kTorch},
    {"joblib.load", "_joblib_load", kJoblibFormats, kJoblibNumpy},
    {"numpy.load", "_numpy_load", kNumpyFormats, kNumpy},
    {"pickle.load", "_pickle_load", kPickleFormats, {}},
};

}  // namespace

std::span<const LoaderSpec> Loaders() { return kLoaders; }

const LoaderSpec* FindLoader(std::string_view name) {
  for (const LoaderSpec& spec : kLoaders) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

absl::StatusOr<std::string> DefaultLoaderFor(std::string_view format) {
  for (const LoaderSpec& spec : kLoaders) {
    for (std::string_view f : spec.formats) {
      if (f == format) return std::string(spec.name);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no loader for format \"", std::string(format), "\""));
}

}  // namespace dynahug::runtime

#include "runtime/embed/loader_table.h"

#include "absl/strings/ascii.h"
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

// What users name the files they hand to each loader (Hugging Face
// pytorch_model.bin, Lightning .ckpt; joblib's own suffixes; numpy's).
constexpr std::string_view kTorchExtensions[] = {".pt", ".pth", ".bin",
                                                 ".ckpt"};
constexpr std::string_view kJoblibExtensions[] = {".joblib", ".jbl"};
constexpr std::string_view kNumpyExtensions[] = {".npy", ".npz"};
constexpr std::string_view kPickleExtensions[] = {".pkl", ".pickle"};

constexpr LoaderSpec kLoaders[] = {
    {"torch.load", "_torch_load", kTorchFormats, kTorch, kTorchExtensions},
    {"joblib.load", "_joblib_load", kJoblibFormats, kJoblibNumpy,
     kJoblibExtensions},
    {"numpy.load", "_numpy_load", kNumpyFormats, kNumpy, kNumpyExtensions},
    {"pickle.load", "_pickle_load", kPickleFormats, {}, kPickleExtensions},
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

absl::StatusOr<std::string> LoaderForName(std::string_view name) {
  const size_t slash = name.rfind('/');
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) {
    return absl::NotFoundError(
        absl::StrCat("\"", std::string(name), "\" has no file extension"));
  }
  const std::string ext = absl::AsciiStrToLower(std::string(name.substr(dot)));
  for (const LoaderSpec& spec : kLoaders) {
    for (std::string_view e : spec.extensions) {
      if (e == ext) return std::string(spec.name);
    }
  }
  return absl::NotFoundError(
      absl::StrCat("no loader for the extension \"", ext, "\""));
}

}  // namespace dynahug::runtime

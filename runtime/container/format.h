// The container formats dynahug recognises by content, and their names.
#ifndef DYNAHUG_RUNTIME_CONTAINER_FORMAT_H_
#define DYNAHUG_RUNTIME_CONTAINER_FORMAT_H_

#include <string_view>

namespace dynahug::runtime {

// Mirrors proto::ContainerFormat (see proto/dynahug.proto for meanings).
enum class Format {
  kData,
  kRawPickle,
  kTorchZip,
  kTorchScriptZip,
  kTorchLegacy,
  kTorchLegacyTar,
  kJoblib,
  kNumpyNpy,
  kNumpyNpz,
  kZip,
  kSevenZip,
  kTar,
  kGzip,
  kBzip2,
  kXz,
  kLzma,
  kZlib,
};

// Stable lowercase name used in CLI/JSON output: "data", "raw-pickle",
// "torch-zip", "torchscript-zip", "torch-legacy", "torch-legacy-tar",
// "joblib", "npy", "npz", "zip", "7z", "tar", "gzip", "bzip2", "xz",
// "lzma", "zlib".
std::string_view FormatName(Format format);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CONTAINER_FORMAT_H_

#include "runtime/container/format.h"

namespace dynahug::runtime {

std::string_view FormatName(Format format) {
  switch (format) {
    case Format::kData:
      return "data";
    case Format::kRawPickle:
      return "raw-pickle";
    case Format::kTorchZip:
      return "torch-zip";
    case Format::kTorchScriptZip:
      return "torchscript-zip";
    case Format::kTorchLegacy:
      return "torch-legacy";
    case Format::kTorchLegacyTar:
      return "torch-legacy-tar";
    case Format::kJoblib:
      return "joblib";
    case Format::kNumpyNpy:
      return "npy";
    case Format::kNumpyNpz:
      return "npz";
    case Format::kZip:
      return "zip";
    case Format::kSevenZip:
      return "7z";
    case Format::kTar:
      return "tar";
    case Format::kGzip:
      return "gzip";
    case Format::kBzip2:
      return "bzip2";
    case Format::kXz:
      return "xz";
    case Format::kLzma:
      return "lzma";
    case Format::kZlib:
      return "zlib";
  }
  return "unknown";
}

}  // namespace dynahug::runtime

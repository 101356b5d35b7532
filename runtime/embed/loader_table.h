// The loaders dynahug runs in the sandboxed child: one row per library
// loader, the only list of them. The C++ side reads it here (the loader for a
// sniffed format, the packages the zygote imports first, the names
// `--loader` accepts); loader.py gets each row's name and driver when
// Loader::Create runs it, and dispatches on that.
//
// Pure data; thread-safe.
#ifndef DYNAHUG_RUNTIME_EMBED_LOADER_TABLE_H_
#define DYNAHUG_RUNTIME_EMBED_LOADER_TABLE_H_

#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace dynahug::runtime {

struct LoaderSpec {
  // What a user names it (`--loader`) and how traces report it:
  // "torch.load".
  std::string_view name;
  // The loader.py function that drives it: "_torch_load".
  std::string_view driver;
  // Sniffed container formats (runtime/container/format.h FormatName) it
  // loads when the loader is chosen automatically.
  std::span<const std::string_view> formats;
  // Top-level packages the library loader itself imports.
  std::span<const std::string_view> packages;
  // Lowercase file-name extensions (with the dot) under which users load
  // files with it: ".pt" for torch.load. Used to run the loader a victim
  // would call for a file by its name (LoaderForName).
  std::span<const std::string_view> extensions;
};

// Every loader, in a fixed order: torch.load, joblib.load, numpy.load,
// pickle.load.
std::span<const LoaderSpec> Loaders();

// The row named `name`, or nullptr.
const LoaderSpec* FindLoader(std::string_view name);

// The name of the loader the real libraries would use for the sniffed
// format `format` ("torch-zip" -> "torch.load", "gzip" -> "joblib.load",
// "npz" -> "numpy.load", "raw-pickle" -> "pickle.load", ...).
// InvalidArgument for a format no loader takes (archives, "data").
absl::StatusOr<std::string> DefaultLoaderFor(std::string_view format);

// The loader whose extensions include the extension of the file name `name`
// (the last component of a path, or a bare ".ext"; the extension is
// compared case-insensitively): "pytorch_model.bin" -> "torch.load", "model.pkl" ->
// "pickle.load", "x.joblib" -> "joblib.load", "a.npz" -> "numpy.load".
// NotFound when the name has no extension or one no loader claims.
absl::StatusOr<std::string> LoaderForName(std::string_view name);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_EMBED_LOADER_TABLE_H_

// Where the model bundle comes from when `--model` is not given.
//
// In order: $DYNAHUG_MODEL; `default.dhm` beside the binary (the build
// copies models/default.dhm there); `../share/dynahug/default.dhm` relative
// to the binary (`cmake --install`); the source tree's models/default.dhm
// (compiled in, for a build directory that was moved).
#ifndef DYNAHUG_RUNTIME_SCANNER_DEFAULT_MODEL_H_
#define DYNAHUG_RUNTIME_SCANNER_DEFAULT_MODEL_H_

#include <string>

namespace dynahug::runtime {

// The first existing candidate, or the first candidate (so that the error
// of loading it names a path) when none exists.
std::string DefaultModelPath();

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_SCANNER_DEFAULT_MODEL_H_

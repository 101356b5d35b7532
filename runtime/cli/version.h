// The version every front end of the binary reports (`--version`, scan
// reports, `dynahug serve`'s hello): the CMake project's version, passed in
// as DYNAHUG_VERSION by runtime/cli/CMakeLists.txt.
#ifndef DYNAHUG_RUNTIME_CLI_VERSION_H_
#define DYNAHUG_RUNTIME_CLI_VERSION_H_

namespace dynahug::runtime {

inline constexpr char kVersion[] = DYNAHUG_VERSION;

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_VERSION_H_

// How file paths appear in events: a class instead of the host path.
//
// A path is lexically normalised (joined to the working directory when
// relative, "." and ".." folded) and classified as "model-file",
// "model-dir", "scratch", "tmp", "home", "python-lib", "system", "etc",
// "proc", "dev" or "other"; host paths outside the model directory and
// scratch never appear. Pure functions (ClassifyPath reads the working
// directory only when PathContext::cwd is empty); thread-safe.
#ifndef DYNAHUG_HOOKS_PATH_CLASSIFIER_H_
#define DYNAHUG_HOOKS_PATH_CLASSIFIER_H_

#include <string>
#include <string_view>

namespace dynahug::hooks {

// Where the load runs; used to classify paths. All paths absolute; empty
// members never match.
struct PathContext {
  std::string model_path;   // the file being loaded
  std::string scratch_dir;  // the child's writable scratch directory
  std::string home_dir;     // $HOME of the child (also /home/*, /root)
  std::string cwd;          // for relative paths; "" = getcwd() at use
};

// Lexically normalises `path` (joins it to ctx.cwd when relative, folds "."
// and "..") and returns its class (see file comment).
std::string ClassifyPath(std::string_view path, const PathContext& ctx);

// Lexical normalisation used by ClassifyPath: absolute, no "." or "..", no
// duplicate or trailing slashes.
std::string NormalizePath(std::string_view path, std::string_view cwd);

// A path as events show it.
struct PathView {
  std::string cls;  // ClassifyPath
  std::string ext;  // the file name's extension (".pt"), or ""
  // Inside the model directory or scratch: the path relative to it ("."
  // for the directory itself); elsewhere "".
  std::string rel;
};
PathView ViewPath(std::string_view path, const PathContext& ctx);

// The last component of `path` (all of it when there is no slash).
std::string_view PathBasename(std::string_view path);

// A shared object or mapped file as it may appear in a NATIVE event: whole
// for system and Python-library files, memfd names and loader names that
// are not paths ("linux-vdso.so.1") as they are, otherwise
// "<class>:<basename>" so that host paths do not leak.
std::string NativeObjectName(std::string_view path, const PathContext& ctx);

}  // namespace dynahug::hooks

#endif  // DYNAHUG_HOOKS_PATH_CLASSIFIER_H_

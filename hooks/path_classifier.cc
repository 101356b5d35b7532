#include "hooks/path_classifier.h"

#include <unistd.h>

#include <cctype>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dynahug::hooks {
namespace {

std::string Extension(std::string_view path) {
  std::string_view base = PathBasename(path);
  size_t dot = base.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || base.size() - dot > 9) {
    return "";
  }
  for (char c : base.substr(dot + 1)) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_') return "";
  }
  return std::string(base.substr(dot));
}

bool Under(std::string_view path, std::string_view dir) {
  if (dir.empty()) return false;
  if (dir == "/") return true;
  return path == dir || (path.starts_with(dir) && path.size() > dir.size() &&
                         path[dir.size()] == '/');
}

std::string Cwd(const PathContext& ctx) {
  if (!ctx.cwd.empty()) return ctx.cwd;
  char buf[4096];
  if (getcwd(buf, sizeof(buf)) == nullptr) return "/";
  return buf;
}

std::string ModelDir(const PathContext& ctx) {
  std::string n = NormalizePath(ctx.model_path, "/");
  size_t slash = n.rfind('/');
  if (ctx.model_path.empty() || slash == 0 || slash == std::string::npos) {
    return "";
  }
  return n.substr(0, slash);
}

}  // namespace

std::string_view PathBasename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string NormalizePath(std::string_view path, std::string_view cwd) {
  std::vector<std::string_view> parts;
  auto push = [&parts](std::string_view p) {
    while (!p.empty()) {
      size_t slash = p.find('/');
      std::string_view part = p.substr(0, slash);
      p = slash == std::string_view::npos ? std::string_view()
                                          : p.substr(slash + 1);
      if (part.empty() || part == ".") continue;
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
        continue;
      }
      parts.push_back(part);
    }
  };
  if (path.empty() || path[0] != '/') push(cwd);
  push(path);
  std::string out;
  for (std::string_view part : parts) {
    out += '/';
    out += part;
  }
  return out.empty() ? "/" : out;
}

std::string ClassifyPath(std::string_view path, const PathContext& ctx) {
  std::string p = NormalizePath(path, Cwd(ctx));
  if (!ctx.model_path.empty() && p == NormalizePath(ctx.model_path, "/")) {
    return "model-file";
  }
  if (!ctx.scratch_dir.empty() &&
      Under(p, NormalizePath(ctx.scratch_dir, "/"))) {
    return "scratch";
  }
  std::string model_dir = ModelDir(ctx);
  if (!model_dir.empty() && Under(p, model_dir)) return "model-dir";
  if ((!ctx.home_dir.empty() && ctx.home_dir != "/" &&
       Under(p, NormalizePath(ctx.home_dir, "/"))) ||
      Under(p, "/home") || Under(p, "/root")) {
    return "home";
  }
  if (Under(p, "/tmp") || Under(p, "/var/tmp") || Under(p, "/dev/shm")) {
    return "tmp";
  }
  for (std::string_view lib : {"/usr/lib/", "/usr/local/lib/"}) {
    if (std::string_view(p).starts_with(lib) &&
        std::string_view(p).substr(lib.size()).starts_with("python3")) {
      return "python-lib";
    }
  }
  if (Under(p, "/etc")) return "etc";
  if (Under(p, "/proc") || Under(p, "/sys")) return "proc";
  if (Under(p, "/dev")) return "dev";
  for (std::string_view sys : {"/usr", "/lib", "/lib64", "/lib32", "/bin",
                               "/sbin", "/opt", "/var/lib", "/var/cache"}) {
    if (Under(p, sys)) return "system";
  }
  return "other";
}

PathView ViewPath(std::string_view path, const PathContext& ctx) {
  PathView view;
  view.cls = ClassifyPath(path, ctx);
  view.ext = Extension(path);
  std::string dir;
  if (view.cls == "scratch") dir = NormalizePath(ctx.scratch_dir, "/");
  if (view.cls == "model-dir") dir = ModelDir(ctx);
  if (!dir.empty()) {
    std::string norm = NormalizePath(path, Cwd(ctx));
    view.rel = norm.size() > dir.size() ? norm.substr(dir.size() + 1) : ".";
  }
  return view;
}

std::string NativeObjectName(std::string_view path, const PathContext& ctx) {
  if (path.find('/') == std::string_view::npos || path.starts_with("/memfd:")) {
    return std::string(path);
  }
  std::string cls = ClassifyPath(path, ctx);
  if (cls == "system" || cls == "python-lib") return NormalizePath(path, "/");
  return absl::StrCat(cls, ":", std::string(PathBasename(path)));
}

}  // namespace dynahug::hooks

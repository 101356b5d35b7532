#include "runtime/cli/scan_inputs.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace dynahug::runtime {
namespace {

// Directories never walked: version-control internals and the hub cache's
// lock folder. Inside a hub repository folder, `blobs/` (reached through the
// snapshots' links), `refs/` (branch names) and `.no_exist/` (markers of
// files the hub does not have) are not walked either.
bool SkippedDirectory(std::string_view name, bool in_hub_repo_root) {
  if (name == ".git" || name == ".locks") return true;
  return in_hub_repo_root &&
         (name == "blobs" || name == "refs" || name == ".no_exist");
}

std::optional<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return std::nullopt;
  return std::string(buf);
}

bool Within(const std::string& path, const std::string& root) {
  return path == root ||
         (absl::StartsWith(path, root) &&
          (root == "/" || path.size() > root.size()) &&
          (root.back() == '/' || path[root.size()] == '/'));
}

// The hub repository folder containing `real` ("…/models--ORG--NAME"), or
// "" when there is none.
std::string HubRepoRoot(const std::string& real) {
  size_t start = 0;
  while (start < real.size()) {
    if (real[start] == '/') {
      ++start;
      continue;
    }
    size_t end = real.find('/', start);
    if (end == std::string::npos) end = real.size();
    const std::string part = real.substr(start, end - start);
    if (absl::StartsWith(part, "models--") ||
        absl::StartsWith(part, "datasets--") ||
        absl::StartsWith(part, "spaces--")) {
      return real.substr(0, end);
    }
    start = end;
  }
  return "";
}

class Collector {
 public:
  InputSet Take() { return std::move(set_); }

  void AddArgument(const std::string& arg) {
    struct stat st{};
    if (stat(arg.c_str(), &st) != 0) {
      Error(arg, strerror(errno));
      return;
    }
    std::optional<std::string> real = RealPath(arg);
    if (!real) {
      Error(arg, strerror(errno));
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      std::string root = HubRepoRoot(*real);
      if (root.empty()) root = *real;
      Walk(arg, *real, root, 0);
    } else if (S_ISREG(st.st_mode)) {
      AddFile(arg, *real, st);
    } else {
      Skip(arg, "not a regular file");
    }
  }

 private:
  // Depth bound for directory trees (deeper levels are reported, not walked).
  static constexpr int kMaxDepth = 64;

  void Walk(const std::string& shown, const std::string& real,
            const std::string& root, int depth) {
    if (depth > kMaxDepth) {
      Skip(shown, absl::StrCat("directory nested deeper than ", kMaxDepth,
                               " levels: not walked"));
      return;
    }
    DIR* dir = opendir(real.c_str());
    if (dir == nullptr) {
      Error(shown, strerror(errno));
      return;
    }
    std::vector<std::string> names;
    while (dirent* e = readdir(dir)) {
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
        names.emplace_back(e->d_name);
      }
    }
    closedir(dir);
    std::sort(names.begin(), names.end());
    const bool hub_repo_root = HubRepoRoot(real) == real;
    for (const std::string& name : names) {
      const std::string path = shown == "/" ? "/" + name
                               : absl::EndsWith(shown, "/")
                                   ? shown + name
                                   : shown + "/" + name;
      const std::string real_path = real + (real == "/" ? "" : "/") + name;
      struct stat lst{};
      if (lstat(real_path.c_str(), &lst) != 0) {
        Error(path, strerror(errno));
        continue;
      }
      if (S_ISDIR(lst.st_mode)) {
        if (!SkippedDirectory(name, hub_repo_root)) {
          Walk(path, real_path, root, depth + 1);
        }
        continue;
      }
      if (S_ISREG(lst.st_mode)) {
        AddFile(path, real_path, lst);
        continue;
      }
      if (!S_ISLNK(lst.st_mode)) {
        Skip(path, "not a regular file");
        continue;
      }
      std::optional<std::string> target = RealPath(real_path);
      struct stat st{};
      if (!target || stat(target->c_str(), &st) != 0) {
        Skip(path, "dangling symlink");
        continue;
      }
      if (!Within(*target, root)) {
        Skip(path, absl::StrCat("symlink to ", *target,
                                ", outside the scanned tree: not followed"));
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        Skip(path, "symlink to a directory: not followed");
        continue;
      }
      if (!S_ISREG(st.st_mode)) {
        Skip(path, "not a regular file");
        continue;
      }
      AddFile(path, *target, st);
    }
  }

  void AddFile(const std::string& shown, const std::string& real,
               const struct stat& st) {
    ScanInput in;
    in.path = shown;
    in.hub = ParseHubPath(shown);
    if (!in.hub) in.hub = ParseHubPath(real);
    const std::pair<dev_t, ino_t> key(st.st_dev, st.st_ino);
    auto [it, inserted] = seen_.emplace(key, set_.blobs.size());
    if (inserted) set_.blobs.push_back(real);
    in.blob = it->second;
    set_.inputs.push_back(std::move(in));
  }

  void Skip(const std::string& shown, std::string reason) {
    ScanInput in;
    in.path = shown;
    in.hub = ParseHubPath(shown);
    in.skip_reason = std::move(reason);
    set_.inputs.push_back(std::move(in));
  }

  void Error(const std::string& shown, std::string message) {
    ScanInput in;
    in.path = shown;
    in.error = std::move(message);
    set_.inputs.push_back(std::move(in));
  }

  InputSet set_;
  std::map<std::pair<dev_t, ino_t>, size_t> seen_;
};

}  // namespace

std::optional<HubRef> ParseHubPath(std::string_view path) {
  std::vector<std::string> parts =
      absl::StrSplit(std::string(path), '/', absl::SkipEmpty());
  for (size_t i = 0; i + 3 < parts.size(); ++i) {
    std::string dir = parts[i];
    std::string kind;
    for (std::string k : {"models", "datasets", "spaces"}) {
      if (absl::StartsWith(dir, k + "--")) {
        kind = k.substr(0, k.size() - 1);
        dir = dir.substr(k.size() + 2);
        break;
      }
    }
    if (kind.empty() || parts[i + 1] != "snapshots") continue;
    // ORG--NAME (a repo without an organisation has no "--").
    std::string repo(dir);
    if (const size_t sep = repo.find("--"); sep != std::string::npos) {
      repo = repo.substr(0, sep) + "/" + repo.substr(sep + 2);
    }
    HubRef ref{kind, repo, parts[i + 2], ""};
    for (size_t k = i + 3; k < parts.size(); ++k) {
      if (!ref.file.empty()) ref.file += "/";
      ref.file += parts[k];
    }
    return ref;
  }
  return std::nullopt;
}

std::string HubDisplay(const HubRef& ref) {
  return absl::StrCat(ref.kind == "model" ? "" : ref.kind + ":", ref.repo, "@",
                      ref.revision.substr(0, 12), ":", ref.file);
}

InputSet CollectScanInputs(const std::vector<std::string>& args) {
  Collector collector;
  for (const std::string& arg : args) collector.AddArgument(arg);
  return collector.Take();
}

}  // namespace dynahug::runtime

#include "runtime/trace/trace_runner.h"

#include <Python.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "hooks/base/py_ref.h"
#include "hooks/event_sink.h"
#include "runtime/embed/loader_table.h"
#include "runtime/trace/preimport_policy.h"
#include "runtime/trace/static_trace.h"
#include "sandbox/seccomp_policy.h"

namespace dynahug::runtime {
namespace {

using hooks::PyRef;

// At most this many archive members are loaded dynamically per file.
constexpr size_t kMaxLoadTargets = 16;

// Something the child loads: the file itself with one of its loaders, or a
// loadable member of a generic archive (written to the child's scratch
// directory first, the way a user would unpack it).
struct LoadTarget {
  std::string member;  // "" for the file itself
  std::string format;
  std::string loader;  // a loader of the table (never "auto")
  std::span<const uint8_t> bytes;  // member content (members only)
  // The file itself is loaded by more than one loader: events are marked
  // with the loader's name.
  bool mark_loader = false;
};

bool IsLoadable(const Member& m) {
  if (!DefaultLoaderFor(FormatName(m.format)).ok()) return false;
  // A compressed stream is a (joblib-compressed) pickle only when it holds
  // one; a .tar.gz is an archive whose members are loaded instead.
  switch (m.format) {
    case Format::kGzip:
    case Format::kBzip2:
    case Format::kXz:
    case Format::kLzma:
    case Format::kZlib:
      return m.children.size() != 1 ||
             m.children[0].format == Format::kRawPickle ||
             m.children[0].format == Format::kJoblib;
    default:
      return true;
  }
}

void CollectTargets(const Member& m, const std::string& path,
                    std::vector<LoadTarget>& out) {
  for (const Member& child : m.children) {
    if (out.size() >= kMaxLoadTargets) return;
    const std::string child_path =
        path.empty() ? child.name : path + "/" + child.name;
    if (IsLoadable(child) && !child.bytes.empty()) {
      const std::string format(FormatName(child.format));
      out.push_back({child_path, format, DefaultLoaderFor(format).value_or(""),
                     child.bytes});
    } else {
      CollectTargets(child, child_path, out);
    }
  }
}

// (sniffed format, extension loader) pairs for which the extension's loader
// runs after the content's loader (FileLoaders in trace_runner.h says why).
constexpr std::pair<std::string_view, std::string_view> kExtraLoaders[] = {
    {"raw-pickle", "torch.load"},
    {"joblib", "pickle.load"},
};

// (generic container, extension loader) pairs for which the extension's
// loader runs on a file whose content has no model format: torch.load opens
// zips (finding data.pkl where dynahug's reader did not) and tars (its
// legacy tar format, unpickling "storages" first); numpy.load opens zips
// as npz.
constexpr std::pair<Format, std::string_view> kArchiveLoaders[] = {
    {Format::kZip, "torch.load"},
    {Format::kTar, "torch.load"},
    {Format::kZip, "numpy.load"},
};

std::vector<LoadTarget> LoadTargets(const AnalyzedFile& file,
                                    const TraceOptions& options) {
  std::vector<LoadTarget> targets;
  const std::string format(FormatName(file.root().format));
  const std::vector<std::string> loaders = FileLoaders(file, options);
  for (const std::string& loader : loaders) {
    targets.push_back({"", format, loader, {}, loaders.size() > 1});
  }
  if (options.load.loader == "auto" && !IsLoadable(file.root())) {
    CollectTargets(file.root(), "", targets);
  }
  return targets;
}

// Forwards the loader's events to the parent over the event channel,
// labelling them with the archive member being loaded.
class ChannelSink final : public hooks::EventSink {
 public:
  explicit ChannelSink(sandbox::EventWriter& writer) : writer_(writer) {}
  void set_member(std::string member) { member_ = std::move(member); }
  // "" = events are not marked with a loader.
  void set_loader(std::string loader) { loader_ = std::move(loader); }
  void Emit(proto::Event event) override {
    if (event.member().empty() && !member_.empty()) event.set_member(member_);
    if (!loader_.empty()) event.set_loader(loader_);
    writer_.Write(std::move(event));
  }

 private:
  sandbox::EventWriter& writer_;
  std::string member_;
  std::string loader_;
};

void AddArg(proto::Event& event, std::string key, std::string value) {
  proto::Argument* arg = event.add_args();
  arg->set_key(std::move(key));
  arg->set_value(std::move(value));
}

std::string ArgValue(const proto::Event& event, std::string_view key) {
  for (const auto& arg : event.args()) {
    if (arg.key() == key) return arg.value();
  }
  return "";
}

// Replaces os.environ with the sandbox's scrubbed environment: CPython's
// copy of the zygote's environment is still in the child's memory.
bool ResetEnviron(const std::vector<std::string>& env) {
  PyRef os(PyImport_ImportModule("os"));
  if (!os) return false;
  PyRef environ(PyObject_GetAttrString(os.get(), "environ"));
  if (!environ) return false;
  PyRef cleared(PyObject_CallMethod(environ.get(), "clear", nullptr));
  if (!cleared) return false;
  for (const std::string& entry : env) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    PyRef key(PyUnicode_DecodeFSDefaultAndSize(entry.data(),
                                               static_cast<Py_ssize_t>(eq)));
    PyRef value(PyUnicode_DecodeFSDefault(entry.c_str() + eq + 1));
    if (!key || !value ||
        PyObject_SetItem(environ.get(), key.get(), value.get()) != 0) {
      return false;
    }
  }
  return true;
}

// Writes `bytes` to `path` (a fresh file in scratch).
bool WriteFile(const std::string& path, std::span<const uint8_t> bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                      0600);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  return done == bytes.size();
}

std::string SafeFileName(std::string_view member, size_t index) {
  std::string name = absl::StrCat(index, "_");
  const size_t slash = member.rfind('/');
  for (char c : member.substr(slash == std::string_view::npos ? 0 : slash + 1)) {
    name.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                           c == '-' || c == '_'
                       ? c
                       : '_');
  }
  return name;
}

// Top-level package of every global the file's pickles reference.
void CollectPackages(const Member& m, std::set<std::string>& out) {
  for (const auto& stream : m.pickles) {
    for (const auto& g : stream.globals) {
      out.insert(g.module.substr(0, g.module.find('.')));
    }
  }
  for (const auto& child : m.children) CollectPackages(child, out);
}

}  // namespace

std::vector<std::string> FileLoaders(const AnalyzedFile& file,
                                     const TraceOptions& options) {
  if (options.load.loader != "auto") return {options.load.loader};
  const std::string format(FormatName(file.root().format));
  const absl::StatusOr<std::string> by_name = LoaderForName(
      options.as_name.empty() ? file.path() : options.as_name);
  if (!IsLoadable(file.root())) {
    // Where dynahug's readers found no model format, only a loader that
    // opens the container itself may still find one; a pickle-reading
    // loader fails on the first byte (else the sniff had found a pickle).
    if (!by_name.ok()) return {};
    for (const auto& [f, loader] : kArchiveLoaders) {
      if (f == file.root().format && loader == *by_name) return {*by_name};
    }
    return {};
  }
  std::vector<std::string> loaders = {*DefaultLoaderFor(format)};
  if (by_name.ok() && *by_name != loaders[0]) {
    for (const auto& [f, extra] : kExtraLoaders) {
      if (f == format && extra == *by_name) loaders.push_back(*by_name);
    }
  }
  return loaders;
}

absl::StatusOr<AnalyzedFile> AnalyzeForTrace(const std::string& path,
                                             const TraceOptions& options) {
  AnalyzeOptions analyze = options.analyze;
  analyze.accept_unknown =
      analyze.accept_unknown || options.load.loader != "auto";
  return AnalyzeFile(path, analyze);
}

std::string ResolveLoader(const AnalyzedFile& file,
                          const TraceOptions& options) {
  const std::vector<std::string> loaders = FileLoaders(file, options);
  return loaders.empty() ? "archive" : absl::StrJoin(loaders, ",");
}

absl::StatusOr<TraceRunner> TraceRunner::Create(
    const TraceRunnerOptions& options) {
  absl::StatusOr<Interpreter> interpreter =
      Interpreter::Create(options.interpreter);
  if (!interpreter.ok()) return interpreter.status();
  absl::StatusOr<Loader> loader = Loader::Create(*interpreter);
  if (!loader.ok()) return loader.status();
  return TraceRunner(std::move(*interpreter), std::move(*loader),
                     options.preimport_allowlist,
                     options.preimport_submodules);
}

void LoaderPackages(std::string_view loader, std::set<std::string>& out) {
  if (const LoaderSpec* spec = FindLoader(loader)) {
    out.insert(spec->packages.begin(), spec->packages.end());
  }
}

std::set<std::string> PackagesNeeded(const AnalyzedFile& file,
                                     const TraceOptions& options) {
  std::set<std::string> wanted;
  for (const LoadTarget& target : LoadTargets(file, options)) {
    LoaderPackages(target.loader, wanted);
  }
  CollectPackages(file.root(), wanted);
  return wanted;
}

absl::Status TraceRunner::Warm(const AnalyzedFile& file,
                               const TraceOptions& options) {
  const LoadOptions& load = options.load;
  const std::set<std::string> wanted = PackagesNeeded(file, options);
  std::vector<std::string> to_import;
  for (const std::string& package : wanted) {
    if (imported_.count(package)) continue;
    if (std::find(allowlist_.begin(), allowlist_.end(), package) ==
        allowlist_.end()) {
      continue;  // never import a name a file chose, outside the sandbox
    }
    to_import.push_back(package);
  }
  if (!to_import.empty()) {
    absl::Status status = interpreter_.Preimport(to_import);
    if (!status.ok()) return status;
    imported_.insert(to_import.begin(), to_import.end());
    baseline_.reset();  // new modules: the snapshot must include them
  }
  if (preimport_submodules_ && PreimportSubmodules(file)) {
    baseline_.reset();
  }
  if (load.integrity_diff && !baseline_) {
    // The libraries this zygote may import are the ones whose classes and
    // functions are watched.
    hooks::IntegrityOptions integrity = load.integrity;
    integrity.library_packages = allowlist_;
    absl::StatusOr<hooks::IntegritySnapshot> snapshot =
        hooks::IntegritySnapshot::Take(integrity);
    if (!snapshot.ok()) return snapshot.status();
    baseline_.emplace(std::move(*snapshot));
  }
  return absl::OkStatus();
}

bool TraceRunner::PreimportSubmodules(const AnalyzedFile& file) {
  for (const std::string& package : allowlist_) {
    if (!imported_.count(package) || package_dirs_.count(package)) continue;
    absl::StatusOr<std::string> dir = interpreter_.PackageDirectory(package);
    // A module that is not a package has no submodules: "" matches nothing.
    package_dirs_[package] = dir.ok() ? *dir : "";
  }
  bool any = false;
  for (const std::string& module : SubmodulesToPreimport(file, package_dirs_)) {
    if (imported_.count(module) || failed_.count(module)) continue;
    if (preimported_ >= kMaxPreimportPerZygote) break;
    ++preimported_;
    if (interpreter_.Preimport({module}).ok()) {
      imported_.insert(module);
      any = true;
    } else {
      // Trusted code of an allowlisted package that does not import here
      // (an optional dependency missing): the child will meet the same.
      failed_.insert(module);
    }
  }
  return any;
}

absl::StatusOr<proto::Trace> TraceRunner::Trace(const std::string& path,
                                                const TraceOptions& options) {
  absl::StatusOr<AnalyzedFile> file = AnalyzeForTrace(path, options);
  if (!file.ok()) return file.status();
  return Trace(*file, options);
}

absl::StatusOr<proto::Trace> TraceRunner::Trace(const AnalyzedFile& file,
                                                const TraceOptions& options) {
  proto::Trace trace = StaticTrace(file);
  const std::vector<LoadTarget> targets = LoadTargets(file, options);
  if (targets.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.path(), ": nothing loadable (",
        std::string(FormatName(file.root().format)),
        " with no model members, and no loader for its name)"));
  }
  if (absl::Status warm = Warm(file, options); !warm.ok()) {
    return absl::InternalError(absl::StrCat(
        "zygote: importing the libraries for ", file.path(),
        " failed: ", std::string(warm.message())));
  }
  trace.set_loader(ResolveLoader(file, options));

  // The child's cwd is its home directory.
  std::error_code ec;
  const std::string absolute_path =
      std::filesystem::absolute(file.path(), ec).string();
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": cannot make the path absolute: ",
                     ec.message()));
  }
  Loader& loader = loader_;
  auto body = [&](sandbox::ChildContext& ctx) -> int {
    Interpreter::AfterForkChild();
    ChannelSink sink(ctx.events());
    if (!ResetEnviron(ctx.environment())) {
      PyErr_Clear();
      return 3;
    }
    // The file itself counts as loaded when any of its loaders loaded it
    // (some victim gets the object); each archive member must load.
    bool file_loaded = false, file_tried = false, members_loaded = true;
    const DeferredWork deferred = loader.CaptureDeferred();
    // Scratch and home are the child's scratch directory, for every load
    // and for the shutdown phase.
    hooks::PathContext paths = options.load.paths;
    paths.scratch_dir = ctx.scratch_dir();
    paths.home_dir = ctx.scratch_dir();
    for (size_t i = 0; i < targets.size(); ++i) {
      const LoadTarget& target = targets[i];
      std::string load_path = absolute_path;
      if (!target.member.empty()) {
        load_path = ctx.scratch_dir() + "/" + SafeFileName(target.member, i);
        if (!WriteFile(load_path, target.bytes)) return 3;
      }
      LoadOptions load = options.load;
      load.format = target.format;
      load.loader = target.loader;
      load.paths = paths;
      load.paths.model_path = load_path;
      load.integrity_baseline = baseline_ ? &*baseline_ : nullptr;
      sink.set_member(target.member);
      sink.set_loader(target.mark_loader ? target.loader : "");
      absl::StatusOr<LoadResult> result = loader.Load(load_path, load, sink);
      proto::Event done;
      done.set_kind(proto::Event::LOG);
      done.set_name(kLoadResultEvent);
      done.set_member(target.member);
      if (!result.ok()) {
        AddArg(done, "status", std::string(result.status().message()));
        sink.Emit(std::move(done));
        return 3;
      }
      AddArg(done, "loader", result->loader);
      AddArg(done, "loaded", result->loaded ? "true" : "false");
      AddArg(done, "type", result->loaded_type);
      AddArg(done, "stub", result->loaded_type_is_stub ? "true" : "false");
      AddArg(done, "digest", result->loaded_digest);
      AddArg(done, "error_type", result->error_type);
      AddArg(done, "error", result->error_message);
      AddArg(done, "load_ms", absl::StrCat(result->load_ms));
      AddArg(done, "dropped", absl::StrCat(result->dropped_events));
      sink.Emit(std::move(done));
      if (result->error_type == "builtins.MemoryError") {
        ctx.ReportOutOfMemory();
      }
      if (target.member.empty()) {
        file_tried = true;
        file_loaded = file_loaded || result->loaded;
      } else {
        members_loaded = members_loaded && result->loaded;
      }
    }
    // What the process would still run before exiting (atexit, threads,
    // timers), recorded as the shutdown phase.
    ShutdownOptions shutdown;
    shutdown.profile_calls = options.load.profile_calls;
    shutdown.paths = paths;
    shutdown.paths.model_path = absolute_path;
    shutdown.audit_limits = options.load.audit_limits;
    shutdown.recorder_limits = options.load.recorder_limits;
    shutdown.profiler_limits = options.load.profiler_limits;
    sink.set_member("");
    sink.set_loader("");
    if (!loader.RunShutdown(deferred, shutdown, sink).ok()) return 3;
    return (!file_tried || file_loaded) && members_loaded ? 0 : 1;
  };

  // The model stays visible at its own path in the child, also when it
  // lives under /tmp or /home, which the child's scratch mounts hide.
  sandbox::Policy policy = options.policy;
  policy.visible_paths.push_back(absolute_path);
  Interpreter::BeforeFork();
  absl::StatusOr<sandbox::ChildResult> child =
      sandbox::RunSandboxed(policy, body);
  Interpreter::AfterForkParent();
  if (!child.ok()) return child.status();

  std::vector<std::string> types, digests;
  bool file_typed = false;
  // Stacked pickle streams: the driver's marks become Event.stream.
  std::optional<uint32_t> stream;
  int load_start = 0;  // index in trace.events() of the current load's first
  for (proto::Event& event : child->events) {
    if (event.kind() == proto::Event::LOG &&
        event.name() == kPickleStreamEvent) {
      if (!stream) {
        // A second stream starts: the events so far were the first's.
        for (int j = load_start; j < trace.events_size(); ++j) {
          trace.mutable_events(j)->set_stream(0);
        }
      }
      uint32_t index = 0;
      if (!absl::SimpleAtoi(ArgValue(event, "index"), &index)) index = 0;
      stream = index;
      continue;
    }
    if (event.kind() == proto::Event::LOG &&
        event.name() == kPickleStreamsEvent) {
      stream.reset();
    }
    if (stream) event.set_stream(*stream);
    if (event.kind() == proto::Event::LOG && event.name() == kLoadResultEvent) {
      stream.reset();
      load_start = trace.events_size() + 1;
      const std::string type = ArgValue(event, "type");
      // The file's type and value digest are its first loader's that loaded
      // it (loaders run on the same bytes); each member adds its own.
      if (!type.empty() && (!event.member().empty() || !file_typed)) {
        types.push_back(type);
        const std::string digest = ArgValue(event, "digest");
        if (!digest.empty()) digests.push_back(digest);
        file_typed = file_typed || event.member().empty();
      }
      const std::string status = ArgValue(event, "status");
      if (!status.empty()) {
        trace.mutable_exit()->set_reason("loader error: " + status);
      }
      // The first load that raised says why the child failed.
      const std::string error_type = ArgValue(event, "error_type");
      if (!error_type.empty() && trace.exit().reason().empty()) {
        std::string error = ArgValue(event, "error");
        if (error.size() > 200) error = error.substr(0, 200) + "...";
        trace.mutable_exit()->set_reason(absl::StrCat(
            "load failed",
            event.member().empty() ? "" : absl::StrCat(" [", event.member(), "]"),
            event.loader().empty() ? "" : absl::StrCat(" <", event.loader(), ">"),
            ": ", error_type, error.empty() ? "" : ": ", error));
      }
    }
    *trace.add_events() = std::move(event);
  }
  trace.set_loaded_type(absl::StrJoin(types, ","));
  trace.set_loaded_digest(absl::StrJoin(digests, ","));
  for (const sandbox::SyscallCount& count : child->syscalls) {
    *trace.add_syscalls() = sandbox::ToProto(count);
  }
  const std::string loader_reason = trace.exit().reason();
  *trace.mutable_exit() = sandbox::ToProto(*child);
  if (!loader_reason.empty() &&
      trace.exit().status() != proto::ChildExit::OK) {
    // A plain non-zero exit ("exit code 1") is explained by the loader's
    // error; limits, signals and timeouts keep the sandbox's reason.
    const std::string& reason = trace.exit().reason();
    if (reason.empty()) {
      trace.mutable_exit()->set_reason(loader_reason);
    } else if (trace.exit().status() == proto::ChildExit::LOAD_FAILED) {
      trace.mutable_exit()->set_reason(
          absl::StrCat(loader_reason, " (", reason, ")"));
    }
  }
  trace.set_dropped_events(child->channel.dropped_by_child +
                           child->channel.dropped_by_reader);
  return trace;
}

}  // namespace dynahug::runtime

#include "runtime/scanner/scanner.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "features/detector.h"
#include "hooks/base/sha256.h"
#include "runtime/scanner/default_model.h"
#include "runtime/scanner/precheck.h"
#include "runtime/trace/trace_worker.h"
#include "sandbox/unique_fd.h"
#include "sandbox/worker_pool.h"

namespace dynahug {
namespace {

std::string ArgValue(const proto::Event& event, std::string_view key) {
  for (const proto::Argument& arg : event.args()) {
    if (arg.key() == key) return arg.value();
  }
  return "";
}

// The distinct globals `trace` shows resolved, in order: GLOBAL events of
// the instrumented unpicklers and "pickle.find_class" audit events (every
// unpickler, also those a loader runs itself, e.g. joblib's pickle.load of
// an object array). A name any GLOBAL event resolved to a stub is a stub.
std::vector<ResolvedGlobal> GlobalsOf(const proto::Trace& trace) {
  std::vector<ResolvedGlobal> out;
  std::map<std::pair<std::string, std::string>, size_t> index;
  for (const proto::Event& event : trace.events()) {
    const bool global = event.kind() == proto::Event::GLOBAL;
    if (!global && !(event.kind() == proto::Event::AUDIT &&
                     event.name() == "pickle.find_class")) {
      continue;
    }
    std::pair<std::string, std::string> key(ArgValue(event, "module"),
                                            ArgValue(event, "name"));
    auto [it, inserted] = index.emplace(key, out.size());
    if (inserted) out.push_back({key.first, key.second, false});
    if (global && ArgValue(event, "resolved") == "stub") {
      out[it->second].stub = true;
    }
  }
  return out;
}

// A file name for `name` inside a private directory: its last component,
// or "model" when that is empty, "." or "..".
std::string SafeBaseName(std::string_view name) {
  const size_t slash = name.rfind('/');
  std::string base(slash == std::string_view::npos ? name
                                                   : name.substr(slash + 1));
  base = base.substr(0, 200);
  if (base.empty() || base == "." || base == ".." ||
      base.find('\0') != std::string::npos) {
    return "model";
  }
  return base;
}

// A private directory (mode 0700) holding one file with the bytes to scan;
// both are removed by the destructor.
class TempCopy {
 public:
  static absl::StatusOr<TempCopy> Write(std::span<const uint8_t> data,
                                        std::string_view name) {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp",
                                   "/dynahug-scan-XXXXXX");
    if (mkdtemp(dir.data()) == nullptr) {
      return absl::InternalError(
          absl::StrCat("mkdtemp(", dir, ") failed: ", strerror(errno)));
    }
    TempCopy copy(dir, absl::StrCat(dir, "/", SafeBaseName(name)));
    sandbox::UniqueFd fd(open(copy.path_.c_str(),
                              O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) {
      return absl::InternalError(
          absl::StrCat("open(", copy.path_, ") failed: ", strerror(errno)));
    }
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = write(fd.get(), data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::InternalError(
            absl::StrCat("write(", copy.path_, ") failed: ", strerror(errno)));
      }
      done += static_cast<size_t>(n);
    }
    return copy;
  }
  TempCopy(TempCopy&& other) noexcept
      : dir_(std::exchange(other.dir_, "")),
        path_(std::exchange(other.path_, "")) {}
  TempCopy& operator=(TempCopy&&) = delete;
  ~TempCopy() {
    if (dir_.empty()) return;
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  TempCopy(std::string dir, std::string path)
      : dir_(std::move(dir)), path_(std::move(path)) {}
  std::string dir_;
  std::string path_;
};

}  // namespace

struct Scanner::Impl {
  features::Detector detector;
  ScannerOptions options;
  std::unique_ptr<sandbox::WorkerPool> pool;
};

Scanner::Scanner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Scanner::~Scanner() = default;

absl::StatusOr<std::unique_ptr<Scanner>> Scanner::Create(
    const ScannerOptions& options) {
  const std::string model_path = options.model_path.empty()
                                     ? runtime::DefaultModelPath()
                                     : options.model_path;
  absl::StatusOr<features::Detector> detector =
      features::Detector::Load(model_path);
  if (!detector.ok()) {
    return absl::Status(detector.status().code(),
                        absl::StrCat("model bundle: ",
                                     std::string(detector.status().message())));
  }
  runtime::TraceOptions trace;
  if (options.timeout_seconds > 0) {
    trace.policy.limits.wall_time = absl::Seconds(options.timeout_seconds);
    trace.policy.limits.cpu_seconds = options.timeout_seconds;
  }
  if (options.memory_mib > 0) {
    trace.policy.limits.memory_bytes = options.memory_mib << 20;
  }
  trace.analyze.full_sha256 = options.full_hash;
  runtime::TraceWorkerOptions worker;
  worker.prewarm = options.prewarm;
  sandbox::WorkerPoolOptions pool_options;
  pool_options.workers = 1;
  // The sandbox bounds each load; this only catches a stuck worker.
  pool_options.job_timeout =
      2 * trace.policy.limits.wall_time + absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<sandbox::WorkerPool>> pool =
      sandbox::WorkerPool::Create(
          runtime::TraceWorkerFactory(trace, {}, worker), pool_options);
  if (!pool.ok()) return pool.status();
  auto impl = std::make_unique<Impl>(
      Impl{std::move(*detector), options, std::move(*pool)});
  return std::unique_ptr<Scanner>(new Scanner(std::move(impl)));
}

const std::string& Scanner::model_id() const { return impl_->detector.id(); }

absl::StatusOr<ScanOutcome> Scanner::ScanPath(const std::string& path,
                                              const ScanOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  ScanOutcome outcome;
  auto finish = [&]() {
    outcome.elapsed_ms = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - start)
                             .count();
    return std::move(outcome);
  };
  if (std::optional<proto::Verdict> v =
          runtime::VerdictWithoutLoad(path, impl_->options.strict)) {
    outcome.verdict = std::move(*v);
    return finish();
  }
  const sandbox::WorkerJob job{path, {}};
  absl::StatusOr<std::string> reply = absl::InternalError("no reply");
  absl::Status run = impl_->pool->Run(
      {&job, 1},
      [&](size_t, absl::StatusOr<std::string> r) { reply = std::move(r); });
  if (!run.ok()) return run;
  if (!reply.ok()) {
    // The file could not be traced (unreadable, unknown format, the
    // worker died on it): inconclusive.
    outcome.verdict =
        features::Detector::ErrorVerdict(std::string(reply.status().message()));
    return finish();
  }
  proto::Trace trace;
  if (!trace.ParseFromString(*reply)) {
    return absl::InternalError(
        absl::StrCat(path, ": unparseable trace from the worker"));
  }
  features::ClassifyOptions classify;
  classify.task = impl_->options.task;
  outcome.verdict = impl_->detector.Classify(trace, classify);
  outcome.format = trace.root().format();
  outcome.loader = trace.loader();
  outcome.sha256 = trace.file().sha256();
  outcome.content_key = trace.file().content_key();
  outcome.globals = GlobalsOf(trace);
  outcome.loaded = trace.exit().status() == proto::ChildExit::OK;
  if (!outcome.loaded) outcome.load_error = trace.exit().reason();
  if (options.keep_trace) outcome.trace = std::move(trace);
  return finish();
}

absl::StatusOr<ScanOutcome> Scanner::ScanBytes(std::span<const uint8_t> data,
                                               std::string_view name,
                                               const ScanOptions& options) {
  absl::StatusOr<TempCopy> copy = TempCopy::Write(data, name);
  if (!copy.ok()) return copy.status();
  absl::StatusOr<ScanOutcome> outcome = ScanPath(copy->path(), options);
  // The bytes are in memory: their SHA-256 costs no read of the file.
  if (options.hash_bytes && outcome.ok() && outcome->sha256.empty() &&
      !outcome->content_key.empty()) {
    outcome->sha256 = hooks::Sha256Hex(data);
  }
  return outcome;
}

}  // namespace dynahug

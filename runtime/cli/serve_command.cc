#include "runtime/cli/serve_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "runtime/cli/exit_codes.h"
#include "runtime/cli/flags.h"
#include "runtime/cli/json_writer.h"
#include "runtime/cli/verdict_json.h"
#include "runtime/cli/version.h"
#include "runtime/scanner/precheck.h"
#include "runtime/scanner/scanner.h"
#include "sandbox/unique_fd.h"

namespace dynahug::runtime {
namespace {

constexpr char kUsage[] =
    "usage: dynahug serve [--model FILE] [--task LABEL] [--strict]\n"
    "                     [--timeout S] [--memory MIB] [--no-prewarm]\n"
    "  (the helper of the Python package: a binary protocol on stdin/stdout,\n"
    "   runtime/cli/serve_command.h)\n";

// Largest header frame and file accepted.
constexpr uint32_t kMaxHeaderBytes = 64 * 1024;
constexpr uint64_t kMaxFileBytes = uint64_t{64} << 30;

bool ParseOptions(const std::vector<std::string>& args, ScannerOptions& options,
                  std::ostream& err) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](std::string& v) {
      if (i + 1 >= args.size()) {
        err << "dynahug serve: " << arg << " needs a value\n" << kUsage;
        return false;
      }
      v = args[++i];
      return true;
    };
    std::string v;
    if (arg == "--model") {
      if (!value(options.model_path)) return false;
    } else if (arg == "--task") {
      if (!value(options.task)) return false;
    } else if (arg == "--strict") {
      options.strict = true;
    } else if (arg == "--no-prewarm") {
      options.prewarm = false;
    } else if (arg == "--timeout" || arg == "--memory") {
      if (!value(v)) return false;
      uint64_t n = 0;
      if (!ParseUint(v, n) || n == 0 || n > (uint64_t{1} << 20)) {
        err << "dynahug serve: " << arg << " needs a positive integer, got '"
            << v << "'\n";
        return false;
      }
      if (arg == "--timeout") {
        options.timeout_seconds = static_cast<uint32_t>(n);
      } else {
        options.memory_mib = n;
      }
    } else {
      err << "dynahug serve: unknown option '" << arg << "'\n" << kUsage;
      return false;
    }
  }
  return true;
}

// Reads exactly `n` bytes. False at end of input or on an error (`eof`
// tells a clean end before the first byte apart).
bool ReadExact(int fd, void* buf, size_t n, bool* eof = nullptr) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < n) {
    const ssize_t got = read(fd, p + done, n - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (eof != nullptr) *eof = got == 0 && done == 0;
      return false;
    }
    done += static_cast<size_t>(got);
  }
  return true;
}

bool WriteFrame(int fd, std::string_view payload) {
  std::string frame(4, '\0');
  const uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i)
    frame[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  frame.append(payload);
  size_t done = 0;
  while (done < frame.size()) {
    const ssize_t put = write(fd, frame.data() + done, frame.size() - done);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    done += static_cast<size_t>(put);
  }
  return true;
}

uint64_t LittleEndian(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct Request {
  std::string name = "model";
  bool trace = false;
  std::string data;
};

// Reads one request; nullopt with `error` empty at end of input.
std::optional<Request> ReadRequest(int fd, std::string& error) {
  uint8_t len[8];
  bool eof = false;
  if (!ReadExact(fd, len, 4, &eof)) {
    if (!eof) error = "truncated header length";
    return std::nullopt;
  }
  const uint64_t header_len = LittleEndian(len, 4);
  if (header_len > kMaxHeaderBytes) {
    error = absl::StrCat("header of ", header_len, " bytes (most ",
                         kMaxHeaderBytes, ")");
    return std::nullopt;
  }
  std::string header(header_len, '\0');
  if (!ReadExact(fd, header.data(), header.size())) {
    error = "truncated header";
    return std::nullopt;
  }
  Request request;
  bool scan = false;
  for (size_t pos = 0; pos < header.size();) {
    size_t end = header.find('\n', pos);
    if (end == std::string::npos) end = header.size();
    const std::string line = header.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    const std::string key = line.substr(0, eq);
    const std::string value =
        eq == std::string::npos ? "" : line.substr(eq + 1);
    if (key == "op") {
      if (value != "scan") {
        error = absl::StrCat("unknown op '", value, "'");
        return std::nullopt;
      }
      scan = true;
    } else if (key == "name") {
      request.name = value;
    } else if (key == "trace") {
      request.trace = value == "1";
    } else {
      error = absl::StrCat("unknown header key '", key, "'");
      return std::nullopt;
    }
  }
  if (!scan) {
    error = "request without op=scan";
    return std::nullopt;
  }
  if (!ReadExact(fd, len, 8)) {
    error = "truncated data length";
    return std::nullopt;
  }
  const uint64_t size = LittleEndian(len, 8);
  if (size > kMaxFileBytes) {
    error = absl::StrCat("file of ", size, " bytes (most ", kMaxFileBytes, ")");
    return std::nullopt;
  }
  request.data.resize(size);
  if (!ReadExact(fd, request.data.data(), size)) {
    error = "truncated data";
    return std::nullopt;
  }
  return request;
}

std::string ReplyJson(const ScanOutcome& outcome) {
  const proto::Verdict& v = outcome.verdict;
  JsonWriter w;
  w.BeginObject();
  w.Field("verdict", LabelName(v.label()));
  w.Field("score", v.score());
  w.Field("threshold", v.threshold());
  w.Field("ocsvm_score", v.ocsvm_score());
  w.Field("cluster", v.cluster());
  WriteCapabilitiesAndReasons(w, v);
  w.Field("error", v.error());
  w.Field("skip_reason", v.skip_reason());
  w.Field("format", outcome.format == proto::FORMAT_UNSPECIFIED
                        ? std::string()
                        : proto::ContainerFormat_Name(outcome.format));
  w.Field("loader", outcome.loader);
  w.Field("sha256", outcome.sha256);
  w.Field("content_key", outcome.content_key);
  w.Field("elapsed_ms", outcome.elapsed_ms);
  w.Field("loaded", outcome.loaded);
  w.Field("load_error", outcome.load_error);
  w.Key("globals");
  w.BeginArray();
  for (const ResolvedGlobal& g : outcome.globals) {
    w.BeginObject();
    w.Field("module", g.module);
    w.Field("name", g.name);
    w.Field("stub", g.stub);
    w.EndObject();
  }
  w.EndArray();
  w.Field("trace_follows", outcome.trace.has_value());
  w.EndObject();
  return w.str();
}

std::string StatusJson(std::string_view key, std::string_view message) {
  JsonWriter w;
  w.BeginObject();
  if (key == "ready") w.Field("ready", false);
  w.Field(key == "ready" ? "error" : key, message);
  w.EndObject();
  return w.str();
}

}  // namespace

int RunServe(const std::vector<std::string>& args, std::ostream& /*out*/,
             std::ostream& err) {
  ScannerOptions options;
  if (!ParseOptions(args, options, err)) return kExitError;
  // The protocol owns the original stdout; whatever else writes to fd 1
  // (a library, a diagnostic) lands on stderr instead.
  sandbox::UniqueFd wire(dup(STDOUT_FILENO));
  if (!wire.valid() || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 ||
      fcntl(wire.get(), F_SETFD, FD_CLOEXEC) != 0) {
    err << "dynahug serve: redirecting stdout failed: " << strerror(errno)
        << "\n";
    return kExitError;
  }
  absl::StatusOr<std::unique_ptr<Scanner>> scanner = Scanner::Create(options);
  if (!scanner.ok()) {
    WriteFrame(wire.get(),
               StatusJson("ready", std::string(scanner.status().message())));
    err << "dynahug serve: " << scanner.status().message() << "\n";
    return kExitError;
  }
  {
    JsonWriter w;
    w.BeginObject();
    w.Field("ready", true);
    w.Field("model", (*scanner)->model_id());
    w.Field("version", kVersion);
    w.Field("pid", static_cast<uint64_t>(getpid()));
    w.EndObject();
    if (!WriteFrame(wire.get(), w.str())) return kExitError;
  }
  for (;;) {
    std::string error;
    std::optional<Request> request = ReadRequest(STDIN_FILENO, error);
    if (!request) {
      if (error.empty()) return kExitOk;  // the caller closed the pipe
      WriteFrame(wire.get(), StatusJson("fatal", error));
      err << "dynahug serve: bad request: " << error << "\n";
      return kExitError;
    }
    ScanOptions scan;
    scan.keep_trace = request->trace;
    scan.hash_bytes = false;  // the client hashed them (its cache key)
    absl::StatusOr<ScanOutcome> outcome = (*scanner)->ScanBytes(
        {reinterpret_cast<const uint8_t*>(request->data.data()),
         request->data.size()},
        request->name, scan);
    if (!outcome.ok()) {
      WriteFrame(wire.get(),
                 StatusJson("fatal", std::string(outcome.status().message())));
      err << "dynahug serve: " << outcome.status().message() << "\n";
      return kExitError;
    }
    if (!WriteFrame(wire.get(), ReplyJson(*outcome))) return kExitError;
    if (outcome->trace) {
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(*outcome->trace, &json);
      if (!WriteFrame(wire.get(), json)) return kExitError;
    }
  }
}

}  // namespace dynahug::runtime

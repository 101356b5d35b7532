#include "tests/integration/integration_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

extern char** environ;

namespace dynahug::integration {
namespace {

namespace fs = std::filesystem;

std::string ErrnoText(int err) { return std::strerror(err); }

// Removes a directory tree when it goes out of scope.
class TempDir {
 public:
  TempDir() {
    char path[] = "/tmp/dynahug_integ.XXXXXX";
    if (mkdtemp(path) != nullptr) path_ = path;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("open(", path, ") failed: ", ErrnoText(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("RunCommand: no argv");
  TempDir dir;
  if (dir.path().empty()) {
    return absl::InternalError(
        absl::StrCat("mkdtemp failed: ", ErrnoText(errno)));
  }
  const std::string out_path = dir.path() + "/stdout";
  const std::string err_path = dir.path() + "/stderr";

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr,
                             args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("posix_spawn(", argv[0], ") failed: ", ErrnoText(rc)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("waitpid failed: ", ErrnoText(errno)));
    }
  }
  CommandResult result;
  result.wall_ms = std::chrono::duration<double, std::milli>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  absl::StatusOr<std::string> out = ReadFileToString(out_path);
  if (!out.ok()) return out.status();
  absl::StatusOr<std::string> err = ReadFileToString(err_path);
  if (!err.ok()) return err.status();
  result.out = std::move(*out);
  result.err = std::move(*err);
  return result;
}

absl::StatusOr<google::protobuf::Struct> ParseJsonObject(
    std::string_view json) {
  google::protobuf::Struct doc;
  const auto status =
      google::protobuf::util::JsonStringToMessage(std::string(json), &doc);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a JSON object: ", status.ToString()));
  }
  return doc;
}

absl::StatusOr<TraceRun> TraceFiles(const std::string& binary,
                                    const std::vector<std::string>& extra,
                                    const std::vector<std::string>& files) {
  std::vector<std::string> argv = {binary, "trace", "--format", "json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), files.begin(), files.end());
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  if (!run.ok()) return run.status();
  absl::StatusOr<std::vector<proto::Trace>> traces =
      ParseTraceDocument(run->out);
  if (!traces.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        traces.status().message(), "\nstderr: ", run->err));
  }
  if (traces->size() != files.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", files.size(), " traces, got ",
                     traces->size(), "\nstderr: ", run->err));
  }
  return TraceRun{*std::move(traces), run->exit_code, run->err};
}

absl::StatusOr<std::vector<proto::Trace>> ParseTraceDocument(
    std::string_view json) {
  absl::StatusOr<google::protobuf::Struct> doc = ParseJsonObject(json);
  if (!doc.ok()) return doc.status();
  const auto it = doc->fields().find("traces");
  if (it == doc->fields().end() || !it->second.has_list_value()) {
    return absl::InvalidArgumentError("trace document has no \"traces\" list");
  }
  std::vector<proto::Trace> traces;
  const auto& values = it->second.list_value().values();
  for (int i = 0; i < values.size(); ++i) {
    std::string element;
    const auto printed =
        google::protobuf::util::MessageToJsonString(values[i], &element);
    if (!printed.ok()) {
      return absl::InternalError(
          absl::StrCat("traces[", i, "]: ", printed.ToString()));
    }
    proto::Trace trace;
    const auto parsed =
        google::protobuf::util::JsonStringToMessage(element, &trace);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "traces[", i, "] is not a dynahug.proto.Trace: ", parsed.ToString()));
    }
    traces.push_back(std::move(trace));
  }
  return traces;
}

std::map<std::string, FileStamp> SnapshotTree(const std::string& root) {
  std::map<std::string, FileStamp> out;
  auto stamp = [](const fs::path& p, FileStamp& s) {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) return false;
    s.inode = st.st_ino;
    s.size = static_cast<uint64_t>(st.st_size);
    s.mtime_ns = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    s.ctime_ns = st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec;
    return true;
  };
  FileStamp top;
  if (!stamp(root, top)) return out;
  out[""] = top;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end;
       it.increment(ec)) {
    FileStamp s;
    if (stamp(it->path(), s)) {
      out[fs::relative(it->path(), root, ec).string()] = s;
    }
  }
  return out;
}

std::string DiffSnapshots(const std::map<std::string, FileStamp>& before,
                          const std::map<std::string, FileStamp>& after) {
  std::string diff;
  for (const auto& [path, stamp] : after) {
    const auto it = before.find(path);
    const std::string shown = path.empty() ? "<the directory itself>" : path;
    if (it == before.end()) {
      absl::StrAppend(&diff, "  new: ", shown, " (", stamp.size, " bytes)\n");
    } else if (!(it->second == stamp)) {
      absl::StrAppend(&diff, "  changed: ", shown, "\n");
    }
  }
  return diff;
}

std::string ArgValue(const proto::Event& event, std::string_view key) {
  for (const auto& arg : event.args()) {
    if (arg.key() == key) return arg.value();
  }
  return "";
}

bool HasArg(const proto::Event& event, std::string_view key) {
  for (const auto& arg : event.args()) {
    if (arg.key() == key) return true;
  }
  return false;
}

const proto::Event* LoadResultEvent(const proto::Trace& trace,
                                    std::string_view member) {
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::LOG && e.name() == "dynahug.load_result" &&
        e.member() == member) {
      return &e;
    }
  }
  return nullptr;
}

std::string DescribeEvent(const proto::Event& e) {
  std::string out =
      absl::StrCat(proto::Event::Kind_Name(e.kind()), " ", e.name());
  for (const auto& a : e.args()) {
    absl::StrAppend(&out, " ", a.key(), "=", a.value().substr(0, 80));
  }
  if (e.has_pickle_offset()) absl::StrAppend(&out, " @", e.pickle_offset());
  if (!e.member().empty()) absl::StrAppend(&out, " in ", e.member());
  if (e.blocked()) absl::StrAppend(&out, " [blocked]");
  return out;
}

std::string DescribeEvents(const proto::Trace& trace, size_t max_events) {
  std::string out;
  size_t n = 0;
  for (const auto& e : trace.events()) {
    if (e.kind() == proto::Event::PYTHON_CALL ||
        e.kind() == proto::Event::OPCODE) {
      continue;
    }
    if (n++ >= max_events) {
      absl::StrAppend(&out, "    ...\n");
      break;
    }
    absl::StrAppend(&out, "    ", DescribeEvent(e), "\n");
  }
  absl::StrAppend(
      &out, "    exit: ", proto::ChildExit::Status_Name(trace.exit().status()),
      " ", trace.exit().reason(), "\n");
  return out;
}

std::string PickleUnicode(std::string_view text) {
  std::string out = "V";
  for (char c : text) {
    if (c == '\\') {
      out += "\\u005c";
    } else if (c == '\n') {
      out += "\\u000a";
    } else {
      out += c;
    }
  }
  out += '\n';
  return out;
}

std::string ExecPickle(std::string_view source) {
  return absl::StrCat("cbuiltins\nexec\n(", PickleUnicode(source), "(dtR.");
}

}  // namespace dynahug::integration

#include "runtime/cli/disasm_command.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <ostream>
#include <string_view>

#include "hooks/pickle_opcodes.h"
#include "runtime/cli/exit_codes.h"
#include "runtime/cli/flags.h"
#include "runtime/cli/json_writer.h"
#include "runtime/container/container.h"

namespace dynahug::runtime {
namespace {

using hooks::DecodedOp;
using hooks::GlobalReference;
using hooks::MemoEffect;
using hooks::OpArg;
using hooks::PickleStream;
using hooks::SourceName;

enum class OutputFormat { kText, kJson };

// Default of --max-opcodes: opcodes listed per pickle stream. Listing more
// costs a DecodedOp (~100 bytes) and up to ~150 bytes of output each.
constexpr uint64_t kDefaultMaxOpcodes = 100000;

// JSON is written out whenever this much is pending.
constexpr size_t kJsonFlushBytes = 64 * 1024;

struct DisasmOptions {
  OutputFormat format = OutputFormat::kText;
  AnalyzeOptions analyze;
  std::vector<std::string> files;
};

// Python-style repr of text (quote ' unless it contains ' and no ").
void AppendPyRepr(std::string& out, std::string_view s, bool is_bytes,
                  size_t max_chars) {
  const bool use_double =
      s.find('\'') != std::string_view::npos && s.find('"') == s.npos;
  const char quote = use_double ? '"' : '\'';
  if (is_bytes) out.push_back('b');
  out.push_back(quote);
  const size_t start = out.size();
  size_t i = 0;
  for (; i < s.size() && out.size() - start < max_chars; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F || (is_bytes && c >= 0x80)) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));  // printable ASCII or UTF-8
    }
  }
  out.push_back(quote);
  if (i < s.size()) {
    out += "...(" + std::to_string(s.size()) + " bytes)";
  }
}

// Little-endian two's complement -> decimal, for up to 64 bytes.
std::string SignedLittleEndianToDecimal(std::span<const uint8_t> bytes) {
  if (bytes.size() > 64) {
    return "<" + std::to_string(bytes.size()) + "-byte int>";
  }
  return hooks::FormatBigInt(bytes);
}

std::string_view AsChars(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::string OpcodeByteRepr(hooks::Opcode opcode) {
  const auto c = static_cast<unsigned char>(opcode);
  char buf[8];
  if (c >= 0x20 && c < 0x7F) {
    std::snprintf(buf, sizeof(buf), "%c", c);
  } else {
    std::snprintf(buf, sizeof(buf), "\\x%02x", c);
  }
  return buf;
}

std::string MemoText(const MemoEffect& memo) {
  switch (memo.kind) {
    case MemoEffect::Kind::kNone:
      return "";
    case MemoEffect::Kind::kPut:
    case MemoEffect::Kind::kMemoize:
      return "memo[" + std::to_string(memo.index) + "] <- top";
    case MemoEffect::Kind::kGet:
      return "push memo[" + std::to_string(memo.index) + "]";
  }
  return "";
}

std::string_view MemoKindName(MemoEffect::Kind kind) {
  switch (kind) {
    case MemoEffect::Kind::kNone:
      return "none";
    case MemoEffect::Kind::kPut:
      return "put";
    case MemoEffect::Kind::kGet:
      return "get";
    case MemoEffect::Kind::kMemoize:
      return "memoize";
  }
  return "none";
}

// "a/b/c" for messages and listings.
std::string JoinPath(const std::vector<std::string>& path) {
  std::string joined;
  for (const auto& part : path) {
    if (part.empty()) continue;
    if (!joined.empty()) joined += '/';
    joined += part;
  }
  return joined;
}

// The note for opcodes past --max-opcodes, e.g. "10385763 of 10485763
// opcodes not listed (only the first 100000 are: --max-opcodes)".
std::string OmittedOpsNote(const PickleStream& stream) {
  return std::to_string(stream.ops_omitted) + " of " +
         std::to_string(stream.stats.opcode_count) +
         " opcodes not listed (only the first " +
         std::to_string(stream.ops.size()) + " are: --max-opcodes)";
}

// --- text output --------------------------------------------------------

void PrintStreamText(const PickleStream& stream, const std::string& where,
                     int depth, std::ostream& out) {
  const std::string pad(static_cast<size_t>(depth) * 2, ' ');
  out << pad << "pickle in " << where << " at offset " << stream.offset
      << ": protocol " << stream.stats.protocol << ", "
      << stream.stats.opcode_count << " opcodes, " << stream.length
      << " bytes, " << (stream.complete ? "complete" : "INCOMPLETE") << "\n";
  for (const DecodedOp& op : stream.ops) {
    char head[64];
    std::snprintf(head, sizeof(head), "%s%8" PRIu64 ": %-4s %-16s", pad.c_str(),
                  op.offset, OpcodeByteRepr(op.opcode).c_str(),
                  std::string(hooks::OpcodeName(op.opcode)).c_str());
    std::string line = head;
    const std::string arg = FormatOpArg(op);
    if (!arg.empty()) line += " " + arg;
    const std::string memo = MemoText(op.memo);
    if (!memo.empty()) line += "    (" + memo + ")";
    out << line << "\n";
  }
  if (stream.ops_omitted > 0) {
    out << pad << "  ... " << OmittedOpsNote(stream) << "\n";
  }
  for (const auto& array : stream.arrays) {
    out << pad << "  inline array at offset " << array.offset << ": "
        << array.length << " bytes, dtype " << array.dtype << ", shape (";
    for (size_t i = 0; i < array.shape.size(); ++i) {
      out << (i ? ", " : "") << array.shape[i];
    }
    out << (array.shape.size() == 1 ? ",)" : ")") << "\n";
  }
  for (const auto& nested : stream.nested) {
    PrintStreamText(nested, where + " (nested)", depth + 1, out);
  }
  if (stream.error) {
    out << pad << "  error at offset " << stream.error->offset << ": "
        << stream.error->message << "\n";
  }
  out << pad << "  globals (" << stream.globals.size() << "):";
  if (stream.globals.empty()) out << " none";
  out << "\n";
  for (const GlobalReference& g : stream.globals) {
    out << pad << "    " << g.offset << ": "
        << (g.source == GlobalReference::Source::kUnknown
                ? std::string("<unresolved>")
                : g.module + " " + g.name)
        << "  (" << hooks::OpcodeName(g.opcode) << ", " << SourceName(g.source)
        << ")\n";
  }
  out << pad << "  stats: max stack depth " << stream.stats.max_stack_depth
      << ", memo size " << stream.stats.memo_size << ", calls "
      << stream.stats.call_count << "\n";
}

bool IsPlainDataLeaf(const Member& m) {
  return m.format == Format::kData && m.children.empty() && m.pickles.empty() &&
         m.notes.empty() && m.error.empty();
}

void PrintMemberText(const Member& member, std::vector<std::string>& path,
                     std::ostream& out) {
  const std::string where = path.empty() ? "file" : JoinPath(path);
  if (!path.empty()) {
    out << "member " << where << ": " << FormatName(member.format) << ", "
        << member.size << " bytes";
    if (member.stored_size != member.size) {
      out << " (" << member.stored_size << " stored)";
    }
    out << "\n";
  }
  for (const auto& note : member.notes) out << "  note: " << note << "\n";
  if (!member.error.empty()) out << "  error: " << member.error << "\n";
  for (const auto& stream : member.pickles) {
    PrintStreamText(stream, where, 1, out);
  }
  // Runs of plain data members (tensor storages) are summarised.
  uint64_t data_count = 0;
  uint64_t data_bytes = 0;
  auto flush_data = [&] {
    if (data_count > 0) {
      out << "  (" << data_count << " data member"
          << (data_count == 1 ? "" : "s") << ", " << data_bytes
          << " bytes, not pickles)\n";
    }
    data_count = data_bytes = 0;
  };
  for (const Member& child : member.children) {
    if (IsPlainDataLeaf(child)) {
      ++data_count;
      data_bytes += child.size;
      continue;
    }
    flush_data();
    path.push_back(child.name);
    PrintMemberText(child, path, out);
    path.pop_back();
  }
  flush_data();
}

// --- JSON output --------------------------------------------------------

// Writes what `json` holds to `out` once it is large: output is streamed,
// the document is never built whole in memory.
void MaybeFlush(JsonWriter& json, std::ostream& out) {
  if (json.str().size() >= kJsonFlushBytes) json.Flush(out);
}

void WriteStreamJson(const PickleStream& stream, JsonWriter& json,
                     std::ostream& out) {
  json.BeginObject();
  json.Field("offset", stream.offset);
  json.Field("length", stream.length);
  json.Field("protocol", stream.stats.protocol);
  json.Field("complete", stream.complete);
  if (stream.error) {
    json.Field("error", stream.error->message);
    json.Field("error_offset", stream.error->offset);
  }
  json.Field("opcode_count", stream.stats.opcode_count);
  json.Field("max_stack_depth", uint64_t{stream.stats.max_stack_depth});
  json.Field("memo_size", stream.stats.memo_size);
  json.Field("call_count", stream.stats.call_count);
  json.Key("histogram");
  json.BeginObject();
  for (int code = 0; code < 256; ++code) {
    const uint64_t n = stream.stats.histogram[static_cast<size_t>(code)];
    if (n == 0) continue;
    json.Field(hooks::OpcodeName(static_cast<hooks::Opcode>(code)), n);
  }
  json.EndObject();
  json.Key("globals");
  json.BeginArray();
  for (const GlobalReference& g : stream.globals) {
    MaybeFlush(json, out);
    json.BeginObject();
    json.Field("module", g.module);
    json.Field("name", g.name);
    json.Field("offset", g.offset);
    json.Field("opcode", hooks::OpcodeName(g.opcode));
    json.Field("source", SourceName(g.source));
    json.EndObject();
  }
  json.EndArray();
  if (!stream.arrays.empty()) {
    json.Key("arrays");
    json.BeginArray();
    for (const auto& array : stream.arrays) {
      json.BeginObject();
      json.Field("offset", array.offset);
      json.Field("length", array.length);
      json.Field("dtype", array.dtype);
      json.Key("shape");
      json.BeginArray();
      for (uint64_t d : array.shape) json.Uint(d);
      json.EndArray();
      json.EndObject();
    }
    json.EndArray();
  }
  if (!stream.nested.empty()) {
    json.Key("nested");
    json.BeginArray();
    for (const auto& nested : stream.nested) {
      WriteStreamJson(nested, json, out);
    }
    json.EndArray();
  }
  if (stream.ops_omitted > 0) {
    json.Field("ops_omitted", stream.ops_omitted);
    json.Field("ops_note", OmittedOpsNote(stream));
  }
  json.Key("ops");
  json.BeginArray();
  for (const DecodedOp& op : stream.ops) {
    MaybeFlush(json, out);
    json.BeginObject();
    json.Field("offset", op.offset);
    json.Field("opcode", hooks::OpcodeName(op.opcode));
    const std::string arg = FormatOpArg(op, 4096);
    if (!arg.empty()) json.Field("arg", arg);
    if (op.memo.kind != MemoEffect::Kind::kNone) {
      json.Key("memo");
      json.BeginObject();
      json.Field("effect", MemoKindName(op.memo.kind));
      json.Field("index", op.memo.index);
      json.EndObject();
    }
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
}

void WriteMemberJson(const Member& member, JsonWriter& json,
                     std::ostream& out) {
  MaybeFlush(json, out);
  json.BeginObject();
  json.Field("name", member.name);
  json.Field("format", FormatName(member.format));
  json.Field("size", member.size);
  json.Field("stored_size", member.stored_size);
  if (!member.notes.empty()) {
    json.Key("notes");
    json.BeginArray();
    for (const auto& note : member.notes) json.String(note);
    json.EndArray();
  }
  if (!member.error.empty()) json.Field("error", member.error);
  json.Key("pickles");
  json.BeginArray();
  for (const auto& stream : member.pickles) {
    WriteStreamJson(stream, json, out);
  }
  json.EndArray();
  json.Key("children");
  json.BeginArray();
  for (const auto& child : member.children) {
    WriteMemberJson(child, json, out);
  }
  json.EndArray();
  json.EndObject();
}

// --- options ------------------------------------------------------------

// Returns false (after printing why) on a usage error.
bool ParseOptions(const std::vector<std::string>& args, DisasmOptions& options,
                  std::ostream& err) {
  options.analyze.decode.keep_ops = true;
  options.analyze.decode.max_kept_ops = kDefaultMaxOpcodes;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto next_value = [&](std::string& value) {
      if (i + 1 >= args.size()) {
        err << "dynahug disasm: " << arg << " needs a value\n";
        return false;
      }
      value = args[++i];
      return true;
    };
    std::string value;
    if (arg == "--format") {
      if (!next_value(value)) return false;
      if (value == "text") {
        options.format = OutputFormat::kText;
      } else if (value == "json") {
        options.format = OutputFormat::kJson;
      } else {
        err << "dynahug disasm: unknown format '" << value
            << "' (expected text or json)\n";
        return false;
      }
    } else if (arg == "--max-depth" || arg == "--max-expanded") {
      if (!next_value(value)) return false;
      uint64_t n = 0;
      if (!ParseUint(value, n) || n == 0) {
        err << "dynahug disasm: " << arg << " needs a positive integer, got '"
            << value << "'\n";
        return false;
      }
      if (arg == "--max-depth") {
        options.analyze.limits.max_depth =
            static_cast<int>(std::min<uint64_t>(n, 64));
      } else {
        options.analyze.limits.max_expanded_bytes = n;
      }
    } else if (arg == "--full-hash") {
      options.analyze.full_sha256 = true;
    } else if (arg == "--max-opcodes") {
      if (!next_value(value)) return false;
      uint64_t n = 0;
      if (!ParseUint(value, n)) {
        err << "dynahug disasm: --max-opcodes needs a non-negative integer "
               "(0: no limit), got '"
            << value << "'\n";
        return false;
      }
      options.analyze.decode.max_kept_ops =
          n == 0 ? std::numeric_limits<uint64_t>::max() : n;
    } else if (arg.size() > 1 && arg[0] == '-') {
      err << "dynahug disasm: unknown option '" << arg << "'\n";
      return false;
    } else {
      options.files.push_back(arg);
    }
  }
  if (options.files.empty()) {
    err << "usage: dynahug disasm FILE... [--format text|json] "
           "[--max-depth N] [--max-expanded BYTES] [--max-opcodes N]\n";
    return false;
  }
  return true;
}

}  // namespace

std::string FormatOpArg(const DecodedOp& op, size_t max_chars) {
  const OpArg& arg = op.arg;
  std::string out;
  switch (arg.kind) {
    case OpArg::Kind::kNone:
      break;
    case OpArg::Kind::kInt:
      out = std::to_string(arg.int_value);
      break;
    case OpArg::Kind::kBool:
      out = arg.int_value ? "True" : "False";
      break;
    case OpArg::Kind::kBigInt:
      if (op.opcode == hooks::Opcode::kLong1 ||
          op.opcode == hooks::Opcode::kLong4) {
        out = SignedLittleEndianToDecimal(arg.bytes);
      } else {
        out = std::string(AsChars(arg.bytes).substr(0, max_chars));
      }
      break;
    case OpArg::Kind::kFloat: {
      char buf[40];
      auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), arg.float_value);
      out.assign(buf, ec == std::errc() ? end : buf);
      break;
    }
    case OpArg::Kind::kText:
      AppendPyRepr(out, arg.text, /*is_bytes=*/false, max_chars);
      break;
    case OpArg::Kind::kBytes:
      AppendPyRepr(out, AsChars(arg.bytes), /*is_bytes=*/true, max_chars);
      break;
    case OpArg::Kind::kQuoted:
      out = std::string(arg.text.substr(0, max_chars));
      if (arg.text.size() > max_chars) out += "...";
      break;
    case OpArg::Kind::kGlobal:
      out = std::string(arg.text) + " " + std::string(arg.text2);
      if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
      break;
  }
  return out;
}

int RunDisasm(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  DisasmOptions options;
  if (!ParseOptions(args, options, err)) return kExitError;

  bool any_error = false;
  JsonWriter json(/*indent=*/2);
  if (options.format == OutputFormat::kJson) {
    json.BeginObject();
    json.Key("files");
    json.BeginArray();
  }
  for (const std::string& path : options.files) {
    absl::StatusOr<AnalyzedFile> file = AnalyzeFile(path, options.analyze);
    if (!file.ok()) {
      any_error = true;
      err << "dynahug: " << std::string(file.status().message()) << "\n";
      if (options.format == OutputFormat::kJson) {
        json.BeginObject();
        json.Field("path", path);
        json.Key("errors");
        json.BeginArray();
        json.String(std::string(file.status().message()));
        json.EndArray();
        json.EndObject();
      }
      continue;
    }
    const std::vector<std::string> errors = file->Errors();
    for (const auto& e : errors) err << "dynahug: " << e << "\n";
    any_error = any_error || !errors.empty();
    const Member& root = file->root();
    if (options.format == OutputFormat::kJson) {
      json.BeginObject();
      json.Field("path", path);
      json.Field("format", FormatName(root.format));
      json.Field("size", root.size);
      json.Field("sha256", file->sha256());
      json.Field("content_key", file->content_key());
      json.Field("unread_bytes", file->unread_bytes());
      json.Key("errors");
      json.BeginArray();
      for (const auto& e : errors) json.String(e);
      json.EndArray();
      json.Key("root");
      WriteMemberJson(root, json, out);
      json.EndObject();
      json.Flush(out);
    } else {
      out << path << ": " << FormatName(root.format) << ", " << root.size
          << " bytes, "
          << (file->sha256().empty() ? "content key " : "sha256 ")
          << (file->sha256().empty() ? file->content_key() : file->sha256());
      if (file->unread_bytes() > 0) {
        out << " (" << file->unread_bytes() << " bytes of tensor or array data not read)";
      }
      out << "\n";
      std::vector<std::string> member_path;
      PrintMemberText(root, member_path, out);
      out << "\n";
    }
  }
  if (options.format == OutputFormat::kJson) {
    json.EndArray();
    json.EndObject();
    json.Flush(out);
    out << "\n";
  }
  return any_error ? kExitError : kExitOk;
}

}  // namespace dynahug::runtime

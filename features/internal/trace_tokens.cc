#include "features/internal/trace_tokens.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "features/internal/str.h"

namespace dynahug::features::internal {
namespace {

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (!s->starts_with(prefix)) return false;
  s->remove_prefix(prefix.size());
  return true;
}

bool ConsumeSuffix(std::string_view* s, std::string_view suffix) {
  if (!s->ends_with(suffix)) return false;
  s->remove_suffix(suffix.size());
  return true;
}

// Cuts `s` at `max` bytes without splitting a UTF-8 sequence.
std::string Cut(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

bool IsInteger(std::string_view s) {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

bool IsFloat(std::string_view s) {
  if (s == "inf" || s == "-inf" || s == "nan") return true;
  if (s.empty() || s.find_first_of(".eE") == std::string_view::npos) {
    return false;
  }
  const std::string text(s);
  char* end = nullptr;
  (void)std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

bool IsHex(std::string_view s) {
  if (!s.starts_with("0x") || s.size() == 2) return false;
  return std::all_of(s.begin() + 2, s.end(), [](char c) {
    return absl::ascii_isxdigit(static_cast<unsigned char>(c));
  });
}

std::string IntegerBucket(std::string_view s) {
  if (!s.empty() && s[0] == '-') return "neg";
  uint64_t n = 0;
  if (!ParseInt(s, &n)) return "big";
  return CountBucket(n);
}

std::string_view Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string HostClass(std::string_view host) {
  if (host.empty()) return "";
  if (host == "localhost" || host.starts_with("127.") || host == "::1") {
    return "loopback";
  }
  if (host.find(':') != std::string_view::npos) return "ipv6";
  std::vector<std::string_view> parts = Split(host, '.');
  int octets[4];
  bool ipv4 = parts.size() == 4;
  for (size_t i = 0; ipv4 && i < 4; ++i) {
    ipv4 = IsInteger(parts[i]) && ParseInt(parts[i], &octets[i]) &&
           octets[i] >= 0 && octets[i] <= 255;
  }
  if (!ipv4) return "name";
  if (octets[0] == 10 || (octets[0] == 192 && octets[1] == 168) ||
      (octets[0] == 172 && octets[1] >= 16 && octets[1] <= 31)) {
    return "private";
  }
  if (octets[0] == 0) return "any";
  return "public";
}

std::string PortClass(std::string_view port) {
  int p = 0;
  if (!IsInteger(port) || !ParseInt(port, &p)) return "?";
  return p >= 0 && p < 1024 ? std::string(port) : "high";
}

bool DroppedKey(std::string_view key) {
  static constexpr std::array<std::string_view, 13> kDropped = {
      "sha256",  "code_hex", "code_sha256", "code_disasm", "function",
      "pid",     "first",    "before",      "after",       "detail",
      "load_ms", "error",    "arg"};
  if (std::find(kDropped.begin(), kDropped.end(), key) != kDropped.end()) {
    return true;
  }
  // Relative paths inside the model directory or scratch, raw syscall
  // registers of BLOCKED events.
  return key.ends_with("_rel") ||
         (key.starts_with("arg") && key.size() == 4 &&
          absl::ascii_isdigit(static_cast<unsigned char>(key[3])));
}

bool CountKey(std::string_view key) {
  return key == "size" || key.ends_with("_size") || key == "argc" ||
         key == "kwargc" || key == "calls" || key == "count" ||
         key == "max_events" || key == "unpicklers";
}

bool ReadMode(std::string_view mode) {
  return !mode.empty() && mode.find_first_of("wa+xc") == std::string_view::npos;
}

bool FileName(std::string_view filename) {
  return !filename.empty() && filename[0] != '<' && filename != "?";
}

}  // namespace

std::vector<WeightedToken> HierarchyTokens(std::string_view prefix,
                                           std::string_view dotted,
                                           double decay) {
  std::vector<size_t> dots;
  for (size_t i = 0; i < dotted.size(); ++i) {
    if (dotted[i] == '.') dots.push_back(i);
  }
  // Ends of the emitted prefixes: the first levels, then the full name.
  std::vector<size_t> ends;
  for (size_t i = 0; i < dots.size() && ends.size() + 1 < kMaxHierarchyLevels;
       ++i) {
    ends.push_back(dots[i]);
  }
  ends.push_back(dotted.size());
  double norm = 0;
  for (size_t i = 0; i < ends.size(); ++i) norm += std::pow(decay, 2.0 * i);
  norm = std::sqrt(norm);
  std::vector<WeightedToken> out;
  out.reserve(ends.size());
  for (size_t i = 0; i < ends.size(); ++i) {
    out.push_back({Cat(prefix, dotted.substr(0, ends[i])),
                   std::pow(decay, static_cast<double>(i)) / norm});
  }
  return out;
}

std::string ClassifyString(std::string_view s) {
  static constexpr std::array<std::string_view, 11> kCode = {
      "import ", "exec(", "eval(",      "lambda", "__",    ";",
      "\n",      "os.",   "subprocess", "socket", "base64"};
  for (std::string_view frag : kCode) {
    if ((s.find(frag) != std::string_view::npos)) return "str.code";
  }
  if ((s.find("://") != std::string_view::npos)) return "str.url";
  if (s.starts_with("/") || s.starts_with("./") || s.starts_with("~/")) {
    return "str.path";
  }
  return "str";
}

std::string ArgType(std::string_view summary) {
  if (ConsumePrefix(&summary, "str:")) return ClassifyString(summary);
  if (summary == "True" || summary == "False") return "bool";
  if (summary == "None") return "None";
  if (summary.starts_with("int[")) return "int";
  for (std::string_view container :
       {"bytes", "bytearray", "tuple", "list", "dict", "set", "frozenset"}) {
    std::string_view rest = summary;
    if (ConsumePrefix(&rest, container) && rest.starts_with("[") &&
        rest.ends_with("]")) {
      return std::string(container);
    }
  }
  if (summary.starts_with("type:") || summary.starts_with("function:")) {
    return Cut(summary, 2 * kMaxValueBytes);
  }
  if (ConsumePrefix(&summary, "obj:")) {
    return Cut(summary, 2 * kMaxValueBytes);
  }
  if (IsInteger(summary)) return "int";
  if (IsFloat(summary)) return "float";
  return "?";
}

std::string CountBucket(uint64_t n) {
  if (n < 2) return Cat(n);
  return Cat("2^", std::bit_width(n) - 1);
}

std::string NormalizeText(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxValueBytes));
  for (size_t i = 0; i < text.size() && out.size() < kMaxValueBytes;) {
    if (text.substr(i).starts_with("0x") && i + 2 < text.size() &&
        absl::ascii_isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out += "0x#";
      i += 2;
      while (i < text.size() &&
             absl::ascii_isxdigit(static_cast<unsigned char>(text[i]))) {
        ++i;
      }
    } else if (absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
      out += '#';
      while (i < text.size() &&
             absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
        ++i;
      }
    } else {
      out += text[i++];
    }
  }
  return Cut(out, kMaxValueBytes);
}

std::string NormalizeArgValue([[maybe_unused]] std::string_view event,
                              std::string_view key, std::string_view value) {
  if (DroppedKey(key)) return "";
  if (CountKey(key)) {
    return IsInteger(value) ? IntegerBucket(value) : NormalizeText(value);
  }
  if (key == "host") return HostClass(value);
  if (key == "port") return PortClass(value);
  if (key == "url") {
    size_t colon = value.find("://");
    return colon == std::string_view::npos
               ? "?"
               : absl::AsciiStrToLower(Cut(value.substr(0, colon), 16));
  }
  if (key == "address") {
    size_t colon = value.rfind(':');
    if (colon != std::string_view::npos && colon > 0 &&
        IsInteger(value.substr(colon + 1))) {
      std::string_view host = value.substr(0, colon);
      ConsumePrefix(&host, "[");
      ConsumeSuffix(&host, "]");
      return Cat(HostClass(host), ":", PortClass(value.substr(colon + 1)));
    }
    return NormalizeText(value);
  }
  if (key == "executable" || key == "library") {
    return NormalizeText(Basename(value));
  }
  if (IsInteger(value)) return IntegerBucket(value);
  if (IsHex(value)) return "hex";
  return NormalizeText(value);
}

std::string_view ProvenanceName(Provenance p) {
  return p == Provenance::kPickle ? "pickle" : "lib";
}

std::string_view ArgValue(const proto::Event& event, std::string_view key) {
  for (const proto::Argument& a : event.args()) {
    if (a.key() == key) return a.value();
  }
  return "";
}

Provenance ProvenanceTracker::Observe(const proto::Event& event) {
  if (!event.has_pickle_offset()) return Provenance::kLib;
  if (!in_context_ || event.pickle_offset() != offset_) {
    in_context_ = true;
    offset_ = event.pickle_offset();
    import_seen_ = false;
    last_was_pyc_read_ = false;
    callee_.clear();
    global_resolution_ = event.kind() == proto::Event::AUDIT &&
                         event.name() == "pickle.find_class";
  }
  switch (event.kind()) {
    case proto::Event::PICKLE_CALL:
      callee_ = event.name();
      global_resolution_ = false;
      return Provenance::kLib;
    case proto::Event::AUDIT:
    case proto::Event::NATIVE:
      break;
    default:
      return Provenance::kLib;
  }
  const std::string& name = event.name();
  const bool pyc_read = event.kind() == proto::Event::AUDIT && name == "open" &&
                        ArgValue(event, "path_ext") == ".pyc" &&
                        ReadMode(ArgValue(event, "mode"));
  Provenance p = Provenance::kPickle;
  if (global_resolution_ && name != "pickle.find_class") {
    p = Provenance::kLib;
    import_seen_ = import_seen_ || name == "import";
  } else if (name == "import") {
    import_seen_ = true;
    p = Provenance::kLib;
  } else if (import_seen_) {
    if ((name == "open" && ReadMode(ArgValue(event, "mode"))) ||
        name == "os.listdir" || name == "os.scandir" ||
        (name == "marshal.loads" && last_was_pyc_read_) ||
        (name == "exec" && ArgValue(event, "name") == "<module>" &&
         FileName(ArgValue(event, "filename"))) ||
        (name == "compile" && FileName(ArgValue(event, "filename")))) {
      p = Provenance::kLib;
    }
  }
  if (event.kind() == proto::Event::AUDIT) last_was_pyc_read_ = pyc_read;
  return p;
}

}  // namespace dynahug::features::internal

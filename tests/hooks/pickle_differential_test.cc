// Differential test of the static pickle decoder against CPython's
// pickletools.genops: tests/hooks/gen_differential.py writes several hundred
// pickles (every protocol, many value shapes, torch/numpy/sklearn/pandas/
// dill/cloudpickle outputs, optimised variants, hand-made Python 2 forms)
// plus the reference opcodes, end offsets and resolved globals; this test
// decodes each file and compares everything. It also checks joblib files
// (inline array data) end exactly at the file end.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hooks/pickle_decoder.h"

namespace dynahug::hooks {
namespace {

const std::string kOutDir = std::string(DYNAHUG_TEST_DATA_DIR) + "/pickle_diff";

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), {});
}

// Parses one line holding a JSON array of strings (what the generator
// writes). Returns false on anything else.
bool ParseJsonStrings(const std::string& line, std::vector<std::string>* out) {
  out->clear();
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  };
  skip_ws();
  if (i >= line.size() || line[i++] != '[') return false;
  skip_ws();
  if (i < line.size() && line[i] == ']') return true;
  while (true) {
    skip_ws();
    if (i >= line.size() || line[i++] != '"') return false;
    std::string s;
    while (true) {
      if (i >= line.size()) return false;
      char c = line[i++];
      if (c == '"') break;
      if (c == '\\') {
        if (i >= line.size()) return false;
        char e = line[i++];
        switch (e) {
          case '"': s.push_back('"'); break;
          case '\\': s.push_back('\\'); break;
          case '/': s.push_back('/'); break;
          case 'n': s.push_back('\n'); break;
          case 't': s.push_back('\t'); break;
          case 'u': {
            if (i + 4 > line.size()) return false;
            unsigned v = std::stoul(line.substr(i, 4), nullptr, 16);
            i += 4;
            if (v >= 0x80) return false;  // the generator writes ASCII only
            s.push_back(static_cast<char>(v));
            break;
          }
          default: return false;
        }
        continue;
      }
      s.push_back(c);
    }
    out->push_back(std::move(s));
    skip_ws();
    if (i >= line.size()) return false;
    if (line[i] == ']') return true;
    if (line[i++] != ',') return false;
  }
}

std::string Hex(std::string_view s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (char c : s) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

std::string Latin1ToUtf8(std::string_view s) {
  std::string out;
  for (char ch : s) {
    const uint8_t c = static_cast<uint8_t>(ch);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

// Python's float.hex().
std::string FloatHex(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  std::string sign = std::signbit(x) ? "-" : "";
  if (x == 0) return sign + "0x0.0p+0";
  uint64_t bits;
  std::memcpy(&bits, &x, 8);
  const uint64_t mant = bits & ((1ULL << 52) - 1);
  const int exp = static_cast<int>((bits >> 52) & 0x7FF);
  char buf[64];
  if (exp == 0) {
    std::snprintf(buf, sizeof(buf), "0x0.%013llxp-1022",
                  static_cast<unsigned long long>(mant));
  } else {
    std::snprintf(buf, sizeof(buf), "0x1.%013llxp%+d",
                  static_cast<unsigned long long>(mant), exp - 1023);
  }
  return sign + buf;
}

// Python's str(int(text)) for decimal text.
std::string NormDecimal(std::string_view t) {
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front())))
    t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back())))
    t.remove_suffix(1);
  bool neg = false;
  if (!t.empty() && (t.front() == '-' || t.front() == '+')) {
    neg = t.front() == '-';
    t.remove_prefix(1);
  }
  std::string digits;
  for (char c : t) {
    if (c != '_') digits.push_back(c);
  }
  size_t nz = digits.find_first_not_of('0');
  digits = nz == std::string::npos ? "0" : digits.substr(nz);
  return (neg && digits != "0" ? "-" : "") + digits;
}

std::string NormArg(const DecodedOp& op) {
  const OpArg& a = op.arg;
  switch (a.kind) {
    case OpArg::Kind::kNone:
      return "-";
    case OpArg::Kind::kInt:
      return "i:" + std::to_string(a.int_value);
    case OpArg::Kind::kBool:
      return a.int_value ? "b:True" : "b:False";
    case OpArg::Kind::kBigInt:
      if (op.opcode == Opcode::kLong1 || op.opcode == Opcode::kLong4) {
        return "i:" + FormatBigInt(a.bytes, 1 << 20);
      }
      return "i:" + NormDecimal(std::string_view(
                        reinterpret_cast<const char*>(a.bytes.data()),
                        a.bytes.size()));
    case OpArg::Kind::kFloat:
      return "f:" + FloatHex(a.float_value);
    case OpArg::Kind::kText:
      if (a.needs_unescape) {
        auto s = DecodeRawUnicodeEscape(a.text);
        return s ? "s:" + Hex(*s) : "<bad raw-unicode-escape>";
      }
      return "s:" + Hex(a.text);
    case OpArg::Kind::kBytes: {
      std::string_view raw(reinterpret_cast<const char*>(a.bytes.data()),
                           a.bytes.size());
      if (op.opcode == Opcode::kBinstring ||
          op.opcode == Opcode::kShortBinstring) {
        return "s:" + Hex(Latin1ToUtf8(raw));
      }
      return "y:" + Hex(raw);
    }
    case OpArg::Kind::kQuoted: {
      auto s = UnquoteStringArg(a.text);
      return s ? "s:" + Hex(Latin1ToUtf8(*s)) : "<bad quoted>";
    }
    case OpArg::Kind::kGlobal:
      return "s:" + Hex(std::string(a.text) + " " + std::string(a.text2));
  }
  return "<?>";
}

class PickleDifferentialTest : public ::testing::Test {
 protected:
  // The pickles come from the CTest fixture `pickle_diff`
  // (gen_differential.py), generated once per ctest run.
  static void SetUpTestSuite() {
    generator_status_ =
        std::ifstream(kOutDir + "/index.txt").good() ? 0 : 1;
    std::ifstream index(kOutDir + "/index.txt");
    std::string stem;
    while (std::getline(index, stem)) {
      if (stem.rfind("joblib/", 0) == 0) {
        joblib_.push_back(stem);
      } else {
        plain_.push_back(stem);
      }
    }
  }
  static void TearDownTestSuite() {
    plain_.clear();
    joblib_.clear();
  }

  static int generator_status_;
  static std::vector<std::string> plain_;
  static std::vector<std::string> joblib_;
};
int PickleDifferentialTest::generator_status_ = -1;
std::vector<std::string> PickleDifferentialTest::plain_;
std::vector<std::string> PickleDifferentialTest::joblib_;

TEST_F(PickleDifferentialTest, GeneratorProducedEnoughPickles) {
  ASSERT_EQ(generator_status_, 0)
      << "fixture pickle_diff (gen_differential.py) did not produce " << kOutDir << "/index.txt";
  EXPECT_GE(plain_.size(), 300u);
  EXPECT_GE(joblib_.size(), 50u);
}

TEST_F(PickleDifferentialTest, EveryOpcodeMatchesPickletools) {
  ASSERT_EQ(generator_status_, 0)
      << "fixture pickle_diff (gen_differential.py) did not produce " << kOutDir << "/index.txt";
  ASSERT_GE(plain_.size(), 300u);
  uint64_t files = 0, streams = 0, ops_compared = 0, globals_compared = 0;
  for (const std::string& stem : plain_) {
    SCOPED_TRACE(stem);
    const std::vector<uint8_t> data = ReadFile(kOutDir + "/" + stem + ".pkl");
    std::ifstream ref(kOutDir + "/" + stem + ".ref");
    ASSERT_TRUE(ref.good());
    // Group reference lines by stream.
    struct RefStream {
      uint64_t start = 0, end = 0;
      std::vector<std::vector<std::string>> ops, globals;
    };
    std::vector<RefStream> ref_streams;
    std::string line;
    std::vector<std::string> f;
    while (std::getline(ref, line)) {
      ASSERT_TRUE(ParseJsonStrings(line, &f)) << line;
      ASSERT_FALSE(f.empty());
      if (f[0] == "stream") {
        ref_streams.emplace_back();
        ref_streams.back().start = std::stoull(f[1]);
      } else {
        ASSERT_FALSE(ref_streams.empty());
        if (f[0] == "op") ref_streams.back().ops.push_back(f);
        else if (f[0] == "global") ref_streams.back().globals.push_back(f);
        else if (f[0] == "end") ref_streams.back().end = std::stoull(f[1]);
      }
    }
    ASSERT_FALSE(ref_streams.empty());
    ++files;
    for (const RefStream& rs : ref_streams) {
      ++streams;
      ASSERT_LE(rs.start, data.size());
      DecodeOptions options;
      options.keep_ops = true;
      options.joblib_arrays = false;
      options.base_offset = rs.start;
      const PickleStream s = DecodePickle(
          std::span<const uint8_t>(data).subspan(rs.start), options);
      ASSERT_FALSE(s.error.has_value()) << s.error->message;
      ASSERT_TRUE(s.complete);
      EXPECT_EQ(s.offset, rs.start);
      EXPECT_EQ(rs.start + s.length, rs.end);
      ASSERT_EQ(s.ops.size(), rs.ops.size());
      EXPECT_EQ(s.stats.opcode_count, rs.ops.size());
      for (size_t i = 0; i < s.ops.size(); ++i) {
        const DecodedOp& op = s.ops[i];
        const auto& want = rs.ops[i];
        ASSERT_EQ(std::to_string(op.offset), want[1]) << "op #" << i;
        ASSERT_EQ(std::string(OpcodeName(op.opcode)), want[2])
            << "op #" << i << " at " << op.offset;
        ASSERT_EQ(NormArg(op), want[3])
            << "op #" << i << " " << want[2] << " at " << op.offset;
        ++ops_compared;
      }
      std::vector<const GlobalReference*> globals;
      for (const GlobalReference& g : s.globals) {
        if (g.opcode == Opcode::kExt1 || g.opcode == Opcode::kExt2 ||
            g.opcode == Opcode::kExt4)
          continue;
        globals.push_back(&g);
      }
      ASSERT_EQ(globals.size(), rs.globals.size());
      for (size_t i = 0; i < globals.size(); ++i) {
        EXPECT_EQ(globals[i]->module, rs.globals[i][1]) << "global #" << i;
        EXPECT_EQ(globals[i]->name, rs.globals[i][2]) << "global #" << i;
        EXPECT_EQ(std::string(SourceName(globals[i]->source)), rs.globals[i][3])
            << "global #" << i << " " << globals[i]->module << "."
            << globals[i]->name;
        ++globals_compared;
      }
    }
  }
  std::printf("compared %llu files, %llu streams, %llu opcodes, %llu globals\n",
              static_cast<unsigned long long>(files),
              static_cast<unsigned long long>(streams),
              static_cast<unsigned long long>(ops_compared),
              static_cast<unsigned long long>(globals_compared));
  EXPECT_GE(files, 300u);
}

TEST_F(PickleDifferentialTest, JoblibFilesEndAtStopWithEveryArray) {
  ASSERT_EQ(generator_status_, 0)
      << "fixture pickle_diff (gen_differential.py) did not produce " << kOutDir << "/index.txt";
  ASSERT_GE(joblib_.size(), 50u);
  for (const std::string& stem : joblib_) {
    SCOPED_TRACE(stem);
    const std::vector<uint8_t> data = ReadFile(kOutDir + "/" + stem + ".pkl");
    std::ifstream ref(kOutDir + "/" + stem + ".ref");
    std::string line;
    std::vector<std::string> f;
    uint64_t size = 0;
    std::vector<std::pair<std::string, std::string>> arrays;
    while (std::getline(ref, line)) {
      ASSERT_TRUE(ParseJsonStrings(line, &f)) << line;
      if (f[0] == "size") size = std::stoull(f[1]);
      if (f[0] == "array") arrays.emplace_back(f[1], f[2]);
    }
    ASSERT_EQ(size, data.size());
    for (bool keep_ops : {false, true}) {
      DecodeOptions options;
      options.keep_ops = keep_ops;
      const PickleStream s = DecodePickle(data, options);
      ASSERT_FALSE(s.error.has_value()) << s.error->message;
      ASSERT_TRUE(s.complete);
      EXPECT_EQ(s.length, data.size());
      ASSERT_EQ(s.arrays.size(), arrays.size());
      for (size_t i = 0; i < arrays.size(); ++i) {
        EXPECT_EQ(s.arrays[i].dtype, arrays[i].first) << "array #" << i;
        std::string shape;
        for (size_t k = 0; k < s.arrays[i].shape.size(); ++k) {
          if (k) shape += ",";
          shape += std::to_string(s.arrays[i].shape[k]);
        }
        EXPECT_EQ(shape, arrays[i].second) << "array #" << i;
        EXPECT_LE(s.arrays[i].offset + s.arrays[i].length, data.size());
      }
      size_t object_arrays = 0;
      for (const auto& a : arrays) object_arrays += a.first == "|O";
      EXPECT_EQ(s.nested.size(), object_arrays);
      for (const PickleStream& n : s.nested) {
        EXPECT_TRUE(n.complete);
        EXPECT_FALSE(n.error.has_value());
      }
      // Without joblib handling the stream breaks right after the first
      // wrapper BUILD (array bytes are not opcodes), unless it is empty.
      DecodeOptions plain;
      plain.joblib_arrays = false;
      const PickleStream p = DecodePickle(data, plain);
      if (!arrays.empty() && p.complete) {
        EXPECT_LT(p.length, data.size());
      }
    }
  }
}

}  // namespace
}  // namespace dynahug::hooks

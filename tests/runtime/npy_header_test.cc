#include "runtime/container/npy_header.h"

#include <string>

#include "gtest/gtest.h"

namespace dynahug::runtime {
namespace {

// A v1 header as numpy writes it, padded so data starts 64-aligned.
std::vector<uint8_t> Npy(const std::string& dict, int major = 1) {
  std::string header = dict;
  size_t len_size = major == 1 ? 2 : 4;
  while ((8 + len_size + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < len_size; ++i) {
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  }
  out += header;
  return std::vector<uint8_t>(out.begin(), out.end());
}

TEST(NpyHeaderTest, ParsesWhatNumpyWrites) {
  struct Case {
    std::string dict;
    int major;
    std::string descr;
    std::vector<uint64_t> shape;
    bool fortran;
    bool object;
  };
  const Case cases[] = {
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", 1,
       "<f8", {3, 4}, false, false},
      {"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 1, "|O",
       {2}, false, true},
      {"{'descr': '<i4', 'fortran_order': True, 'shape': (), }", 2, "<i4", {},
       true, false},
      {"{'descr': '<u2', 'fortran_order': False, 'shape': (5,), }", 3, "<u2",
       {5}, false, false},
      {"{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': False, "
       "'shape': (1,), }",
       1, "[('a', '<i4'), ('b', '|O')]", {1}, false, true},
      {"{'descr': [('a', '<f4', (2,))], 'fortran_order': False, 'shape': (1,)}",
       1, "[('a', '<f4', (2))]", {1}, false, false},
      {"{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (7L,)}", 1,
       "<f8", {7}, false, false},
  };
  for (const Case& c : cases) {
    auto data = Npy(c.dict, c.major);
    auto h = ParseNpyHeader(data);
    ASSERT_TRUE(h.ok()) << c.dict << ": " << h.status();
    EXPECT_EQ(h->major, c.major);
    EXPECT_EQ(h->descr, c.descr);
    EXPECT_EQ(h->shape, c.shape) << c.dict;
    EXPECT_EQ(h->fortran_order, c.fortran);
    EXPECT_EQ(h->has_object, c.object) << c.dict;
    EXPECT_EQ(h->data_offset, data.size());
  }
}

TEST(NpyHeaderTest, Errors) {
  struct Case {
    std::vector<uint8_t> data;
    absl::StatusCode code;
    std::string message;
  };
  auto bytes = [](const std::string& s) {
    return std::vector<uint8_t>(s.begin(), s.end());
  };
  auto cut = [](std::vector<uint8_t> v, size_t n) {
    v.resize(n);
    return v;
  };
  const std::string ok = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }";
  const Case cases[] = {
      {bytes("NOTNUMPY"), absl::StatusCode::kInvalidArgument, "missing magic"},
      {bytes("\x93NUMPY"), absl::StatusCode::kOutOfRange, "version"},
      {bytes(std::string("\x93NUMPY\x09\x00", 8) + "xxxx"),
       absl::StatusCode::kInvalidArgument, "unsupported format version 9.0"},
      {cut(Npy(ok), 9), absl::StatusCode::kOutOfRange, "header length"},
      {cut(Npy(ok), 40), absl::StatusCode::kOutOfRange,
       "runs past end of data (size 40)"},
      {Npy("{'descr': '<f8', 'shape': (3,) 'x': 1}"),
       absl::StatusCode::kInvalidArgument, "expected ',' or '}'"},
      {Npy("{'descr' '<f8'}"), absl::StatusCode::kInvalidArgument,
       "expected ':' at header offset"},
      {Npy("{'shape': (3,)}"), absl::StatusCode::kInvalidArgument,
       "no 'descr'"},
      {Npy("{'descr': '<f8'}"), absl::StatusCode::kInvalidArgument,
       "no 'shape'"},
      {Npy("{'descr': '<f8', 'shape': (-3,)}"),
       absl::StatusCode::kInvalidArgument, "negative"},
      {Npy("{'descr': '<f8', 'shape': (99999999999999999999999,)}"),
       absl::StatusCode::kInvalidArgument, "integer too large"},
      {Npy("{'descr': 5, 'shape': (1,)}"), absl::StatusCode::kInvalidArgument,
       "neither a string nor a list"},
      {Npy("{'descr': '<f8', 'shape': (1,), 'fortran_order': 1}"),
       absl::StatusCode::kInvalidArgument, "not a bool"},
      {Npy("[1, 2]"), absl::StatusCode::kInvalidArgument, "not a dict"},
      {Npy("{'descr': __import__('os')}"), absl::StatusCode::kInvalidArgument,
       "unexpected character '_'"},
      {Npy("{'descr': 'unterminated}"), absl::StatusCode::kInvalidArgument,
       "unterminated string"},
      {Npy(std::string(100, '[') + std::string(100, ']')),
       absl::StatusCode::kInvalidArgument, "nesting too deep"},
  };
  for (const Case& c : cases) {
    auto h = ParseNpyHeader(c.data);
    ASSERT_FALSE(h.ok()) << c.message;
    EXPECT_EQ(h.status().code(), c.code) << h.status();
    EXPECT_NE(h.status().message().find(c.message), std::string::npos)
        << h.status() << " (wanted: " << c.message << ")";
  }
}

}  // namespace
}  // namespace dynahug::runtime

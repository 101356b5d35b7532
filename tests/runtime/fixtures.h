// Test fixtures generated at test time by gen_containers.py (benign
// content only) with Debian's Python, once per script version.
#ifndef DYNAHUG_TESTS_RUNTIME_FIXTURES_H_
#define DYNAHUG_TESTS_RUNTIME_FIXTURES_H_

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace dynahug::runtime::testing {

// Directory holding the generated fixtures; generates them on first use.
// Returns "" (and the test should fail) when generation fails.
inline const std::string& FixtureDir() {
  static std::once_flag once;
  static std::string dir;
  std::call_once(once, [] {
    std::string out = std::string(DYNAHUG_TEST_DATA_DIR) + "/containers";
    std::string cmd = std::string(DYNAHUG_PYTHON) + " " + DYNAHUG_SOURCE_DIR +
                      "/tests/runtime/gen_containers.py " + out +
                      " >/dev/null 2>" + out + ".log";
    if (std::system(cmd.c_str()) == 0) dir = out;
  });
  return dir;
}

inline std::string FixturePath(const std::string& name) {
  return FixtureDir() + "/" + name;
}

inline std::vector<uint8_t> ReadFixture(const std::string& name) {
  std::ifstream in(FixturePath(name), std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Rows of a generated TSV file, split on tabs.
inline std::vector<std::vector<std::string>> ReadTsv(const std::string& name) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(FixturePath(name));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> row;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

}  // namespace dynahug::runtime::testing

#endif  // DYNAHUG_TESTS_RUNTIME_FIXTURES_H_

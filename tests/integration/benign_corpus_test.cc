// Acceptance test on the benign corpus: every file of the small benign
// corpus (fixture `integ_benign`) is traced in ONE `dynahug trace`
// invocation; each load must complete (exit OK) and return the same
// qualified type and the same value as a plain load with the real library
// loader, computed by the fixture outside any sandbox (benign files only).
// "The same value" is a differential test of the sandbox: the digest of the
// loaded object (Trace.loaded_digest) must equal the digest of the plain
// load's object, both computed by the one source runtime/embed/value_digest.py
// (tensor storages, array contents, estimator state, containers; torch
// storages above the lazy threshold by size only), so any change the sandbox
// makes to what a benign file loads to fails here.
//
// The one planned difference: files that reference modules that are not
// installed (params.missing_modules, e.g. transformers' TrainingArguments)
// fail a plain load with ModuleNotFoundError, while dynahug resolves those
// globals to inert stubs and loads them.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_util.h"

namespace dynahug::integration {
namespace {

std::string CorpusDir() {
  return std::string(DYNAHUG_TEST_DATA_DIR) + "/integration/benign";
}

struct PlainLoad {
  std::string type;
  std::string digest;
  std::string error_type;
  std::string error;
};

struct Entry {
  std::string path;
  std::string loader;  // params.loader
  bool missing_modules = false;
  PlainLoad plain;
};

std::vector<Entry> LoadEntries(const google::protobuf::Struct& manifest,
                               const google::protobuf::Struct& plain) {
  std::vector<Entry> out;
  for (const auto& v : manifest.fields().at("files").list_value().values()) {
    const auto& f = v.struct_value().fields();
    Entry e;
    e.path = f.at("path").string_value();
    const auto& params = f.at("params").struct_value().fields();
    e.loader = params.at("loader").string_value();
    const auto missing = params.find("missing_modules");
    e.missing_modules = missing != params.end() &&
                        missing->second.has_list_value() &&
                        missing->second.list_value().values_size() > 0;
    const auto p = plain.fields().find(e.path);
    if (p != plain.fields().end()) {
      const auto& pf = p->second.struct_value().fields();
      e.plain = {pf.at("type").string_value(),
                 pf.at("digest").string_value(),
                 pf.at("error_type").string_value(),
                 pf.at("error").string_value()};
    }
    out.push_back(std::move(e));
  }
  return out;
}

// Sum of the "<key><number>" fields of a (comma-joined) digest string.
uint64_t DigestCount(std::string_view digest, std::string_view key) {
  uint64_t sum = 0;
  for (size_t at = digest.find(key); at != std::string_view::npos;
       at = digest.find(key, at + 1)) {
    uint64_t n = 0;
    for (size_t i = at + key.size(); i < digest.size() && digest[i] >= '0' &&
                                     digest[i] <= '9';
         ++i) {
      n = n * 10 + static_cast<uint64_t>(digest[i] - '0');
    }
    sum += n;
  }
  return sum;
}

TEST(BenignCorpusTest, LoadsCompleteAndMatchAPlainLoad) {
  absl::StatusOr<std::string> manifest_text =
      ReadFileToString(CorpusDir() + "/manifest.json");
  ASSERT_TRUE(manifest_text.ok())
      << manifest_text.status() << " (did fixture integ_benign run?)";
  absl::StatusOr<std::string> plain_text =
      ReadFileToString(CorpusDir() + "/plain_loads.json");
  ASSERT_TRUE(plain_text.ok()) << plain_text.status();
  absl::StatusOr<google::protobuf::Struct> manifest =
      ParseJsonObject(*manifest_text);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  absl::StatusOr<google::protobuf::Struct> plain = ParseJsonObject(*plain_text);
  ASSERT_TRUE(plain.ok()) << plain.status();
  const std::vector<Entry> entries = LoadEntries(*manifest, *plain);
  ASSERT_GE(entries.size(), 100u) << "small benign corpus looks truncated";

  std::vector<std::string> argv = {DYNAHUG_BIN, "trace", "--format", "json"};
  for (const Entry& e : entries) argv.push_back(CorpusDir() + "/" + e.path);
  absl::StatusOr<CommandResult> run = RunCommand(argv);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->signal, 0) << run->err;
  EXPECT_EQ(run->exit_code, 0) << run->err.substr(0, 4000);
  std::printf(
      "[ INFO ] %zu benign files traced in %.0f ms (one "
      "invocation)\n",
      entries.size(), run->wall_ms);
  absl::StatusOr<std::vector<proto::Trace>> traces =
      ParseTraceDocument(run->out);
  ASSERT_TRUE(traces.ok()) << traces.status();
  std::map<std::string, const proto::Trace*> by_path;
  for (const auto& t : *traces) by_path[t.file().path()] = &t;

  int matched = 0, stubbed = 0, same_value = 0, truncated = 0;
  uint64_t total_nodes = 0, total_bytes = 0;
  std::map<std::string, int> per_loader;
  for (const Entry& e : entries) {
    SCOPED_TRACE(e.path);
    const auto it = by_path.find(CorpusDir() + "/" + e.path);
    if (it == by_path.end()) {
      ADD_FAILURE() << "no trace (dynahug stderr: " << run->err.substr(0, 2000)
                    << ")";
      continue;
    }
    const proto::Trace& trace = *it->second;
    EXPECT_EQ(trace.exit().status(), proto::ChildExit::OK)
        << "reason: " << trace.exit().reason() << "\n"
        << DescribeEvents(trace);
    EXPECT_EQ(trace.dropped_events(), 0u);

    if (e.missing_modules) {
      // The plain load fails on exactly the missing module...
      EXPECT_EQ(e.plain.type, "");
      EXPECT_EQ(e.plain.error_type, "builtins.ModuleNotFoundError")
          << e.plain.error;
      // ...and dynahug loads it, with the missing globals as stubs.
      EXPECT_NE(trace.loaded_type(), "");
      bool stub_global = false;
      for (const auto& ev : trace.events()) {
        if (ev.kind() == proto::Event::GLOBAL &&
            ArgValue(ev, "resolved") == "stub") {
          stub_global = true;
        }
      }
      EXPECT_TRUE(stub_global) << DescribeEvents(trace);
      const proto::Event* result = LoadResultEvent(trace);
      ASSERT_NE(result, nullptr);
      EXPECT_EQ(ArgValue(*result, "stub"), "true")
          << "the loaded object should be a stub";
      ++stubbed;
      continue;
    }
    ASSERT_EQ(e.plain.error_type, "")
        << "the plain load of a benign file failed: " << e.plain.error;
    EXPECT_EQ(trace.loaded_type(), e.plain.type)
        << "loader " << trace.loader() << " (manifest: " << e.loader << ")";
    if (trace.loaded_type() == e.plain.type) ++matched;
    EXPECT_NE(e.plain.digest, "");
    EXPECT_EQ(trace.loaded_digest(), e.plain.digest)
        << "the sandboxed load returned a different value than a plain load "
        << "(loader " << trace.loader() << ")";
    if (trace.loaded_digest() == e.plain.digest) ++same_value;
    if (absl::StrContains(e.plain.digest, "truncated")) ++truncated;
    total_nodes += DigestCount(e.plain.digest, "nodes=");
    total_bytes += DigestCount(e.plain.digest, "bytes=");
    ++per_loader[e.loader];
  }
  EXPECT_GT(stubbed, 0) << "the corpus has no missing-module file any more";
  std::printf(
      "[ INFO ] %d loaded types equal a plain load, %d stub loads "
      "where the plain load fails\n",
      matched, stubbed);
  std::printf(
      "[ INFO ] %d loaded values equal a plain load's (value digest over "
      "%llu objects, %llu bytes of array/tensor contents; %d truncated)\n",
      same_value, static_cast<unsigned long long>(total_nodes),
      static_cast<unsigned long long>(total_bytes), truncated);
  for (const auto& [loader, n] : per_loader) {
    std::printf("[ INFO ]   %-20s %d files\n", loader.c_str(), n);
  }
}

}  // namespace
}  // namespace dynahug::integration

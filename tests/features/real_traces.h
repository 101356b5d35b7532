// Real traces written by `dynahug trace --format json` and committed under
// tests/features/testdata/ (see its README for how they were made).
#ifndef DYNAHUG_TESTS_FEATURES_REAL_TRACES_H_
#define DYNAHUG_TESTS_FEATURES_REAL_TRACES_H_

#include <fstream>
#include <sstream>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "proto/dynahug.pb.h"

namespace dynahug::features::testing {

// The first trace of the document testdata/`name`; test failures (not a
// crash) when it cannot be read.
inline proto::Trace LoadTrace(const std::string& name) {
  const std::string path =
      std::string(DYNAHUG_SOURCE_DIR) + "/tests/features/testdata/" + name;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  google::protobuf::Struct doc;
  auto status = google::protobuf::util::JsonStringToMessage(buffer.str(), &doc);
  EXPECT_TRUE(status.ok()) << path << ": " << status;
  proto::Trace trace;
  auto it = doc.fields().find("traces");
  if (it == doc.fields().end() || it->second.list_value().values_size() == 0) {
    ADD_FAILURE() << path << ": no traces";
    return trace;
  }
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(
      it->second.list_value().values(0), &json);
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  status = google::protobuf::util::JsonStringToMessage(json, &trace, options);
  EXPECT_TRUE(status.ok()) << path << ": " << status;
  return trace;
}

}  // namespace dynahug::features::testing

#endif  // DYNAHUG_TESTS_FEATURES_REAL_TRACES_H_

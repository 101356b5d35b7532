#include "runtime/container/file_mapping.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace dynahug::runtime {
namespace {

std::string TempFile(const std::string& content) {
  std::string path = ::testing::TempDir() + "/fm_" +
                     std::to_string(getpid()) + "_" +
                     std::to_string(content.size());
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(FileMappingTest, MapsRegularFile) {
  std::string path = TempFile("hello mapping");
  auto m = FileMapping::Open(path);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->is_mapped());
  EXPECT_EQ(std::string(m->bytes().begin(), m->bytes().end()), "hello mapping");
  // Moves keep the bytes valid.
  FileMapping moved = std::move(*m);
  EXPECT_EQ(moved.bytes().size(), 13u);
  EXPECT_EQ(m->bytes().size(), 0u);
  unlink(path.c_str());
}

TEST(FileMappingTest, EmptyFile) {
  std::string path = TempFile("");
  auto m = FileMapping::Open(path);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->bytes().empty());
  unlink(path.c_str());
}

TEST(FileMappingTest, ReadsUnmappableFiles) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "piped", 5), 5);
  close(fds[1]);
  auto m = FileMapping::Open("/proc/self/fd/" + std::to_string(fds[0]));
  close(fds[0]);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->is_mapped());
  EXPECT_EQ(std::string(m->bytes().begin(), m->bytes().end()), "piped");
}

TEST(FileMappingTest, UnmappableOverLimit) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "0123456789", 10), 10);
  close(fds[1]);
  auto m = FileMapping::Open("/proc/self/fd/" + std::to_string(fds[0]), 4);
  close(fds[0]);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(FileMappingTest, Errors) {
  auto missing = FileMapping::Open("/nonexistent/dynahug/file");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "open(\"/nonexistent/dynahug/file\") failed: No such file or "
            "directory");
  auto dir = FileMapping::Open("/tmp");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("is a directory"), std::string::npos);
}

}  // namespace
}  // namespace dynahug::runtime

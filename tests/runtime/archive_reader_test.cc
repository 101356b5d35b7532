#include "runtime/container/archive_reader.h"

#include <map>
#include <string>

#include "gtest/gtest.h"
#include "tests/runtime/fixtures.h"

namespace dynahug::runtime {
namespace {

std::map<std::string, std::string> ReadAll(const std::vector<uint8_t>& data) {
  std::map<std::string, std::string> out;
  auto r = ArchiveReader::Open(data);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  ArchiveEntry e;
  for (;;) {
    auto next = r->Next(&e);
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok() || !*next) break;
    std::vector<uint8_t> buf;
    auto n = r->Read(1 << 30, &buf);
    EXPECT_TRUE(n.ok());
    EXPECT_EQ(buf.size(), e.size) << e.name;
    out[e.name] = std::string(buf.begin(), buf.end());
  }
  return out;
}

TEST(ArchiveReaderTest, ReadsTarTarGzAnd7z) {
  ASSERT_FALSE(testing::FixtureDir().empty());
  auto model = testing::ReadFixture("sd_zip.pt");
  std::string model_s(model.begin(), model.end());
  struct Case {
    std::string fixture;
    std::string member;
  };
  const Case cases[] = {{"wrap.tar", "ckpt/model.pt"},
                        {"wrap.tar.gz", "model.pt"},
                        {"wrap.7z", "sd_zip.pt"}};
  for (const Case& c : cases) {
    auto files = ReadAll(testing::ReadFixture(c.fixture));
    ASSERT_TRUE(files.count(c.member)) << c.fixture;
    EXPECT_EQ(files[c.member], model_s) << c.fixture;
  }
}

TEST(ArchiveReaderTest, PartialReadsContinue) {
  auto data = testing::ReadFixture("wrap.tar");
  auto r = ArchiveReader::Open(data);
  ASSERT_TRUE(r.ok());
  ArchiveEntry e;
  ASSERT_TRUE(*r->Next(&e));
  std::vector<uint8_t> buf;
  EXPECT_EQ(*r->Read(10, &buf), 10u);
  EXPECT_EQ(*r->Read(1 << 20, &buf), e.size - 10);
  EXPECT_EQ(*r->Read(1 << 20, &buf), 0u);
  EXPECT_EQ(buf.size(), e.size);
}

TEST(ArchiveReaderTest, GarbageAndTruncation) {
  std::vector<uint8_t> garbage(2048, 0x41);
  auto r = ArchiveReader::Open(garbage);
  bool failed = !r.ok();
  if (r.ok()) {
    ArchiveEntry e;
    failed = !r->Next(&e).ok();
  }
  EXPECT_TRUE(failed);
  auto seven = testing::ReadFixture("wrap.7z");
  seven.resize(seven.size() / 2);
  auto t = ArchiveReader::Open(seven);
  bool truncated_failed = !t.ok();
  if (t.ok()) {
    ArchiveEntry e;
    auto next = t->Next(&e);
    truncated_failed = !next.ok();
    if (next.ok() && *next) {
      std::vector<uint8_t> buf;
      truncated_failed = !t->Read(1 << 20, &buf).ok();
    }
  }
  EXPECT_TRUE(truncated_failed);
}

}  // namespace
}  // namespace dynahug::runtime

// Native inspector without an interpreter: maps parsing and classification
// (table-driven), stack capture, address classes in this process, bounded
// and fault-free disassembly, and every error path.
#include "hooks/native_inspector.h"

#include <dlfcn.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/base/sha256.h"

namespace dynahug::hooks {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// An mmap'd region, unmapped on destruction.
class Pages {
 public:
  Pages(size_t n, int prot, int flags = MAP_PRIVATE | MAP_ANONYMOUS,
        int fd = -1)
      : size_(n * static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
    void* p = mmap(nullptr, size_, prot, flags, fd, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  ~Pages() {
    if (base_ != nullptr) munmap(base_, size_);
  }
  Pages(const Pages&) = delete;
  Pages& operator=(const Pages&) = delete;
  uint8_t* get() const { return base_; }
  uint64_t addr() const { return reinterpret_cast<uint64_t>(base_); }
  size_t size() const { return size_; }
  size_t page() const { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

 private:
  size_t size_;
  uint8_t* base_ = nullptr;
};

// --- maps parsing ------------------------------------------------------------

TEST(NativeInspectorTest, ParseMapsLineAcceptsKernelLines) {
  struct Case {
    const char* line;
    uint64_t start, end;
    const char* perms;
    uint64_t offset, inode;
    const char* path;
    MemoryClass cls;
  } cases[] = {
      {"55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0          [heap]",
       0x55d0c0a00000, 0x55d0c0a21000, "rw-p", 0, 0, "[heap]",
       MemoryClass::kHeap},
      {"7f1c2a028000-7f1c2a17d000 r-xp 00028000 fd:01 1311   "
       "/usr/lib/x86_64-linux-gnu/libc.so.6",
       0x7f1c2a028000, 0x7f1c2a17d000, "r-xp", 0x28000, 1311,
       "/usr/lib/x86_64-linux-gnu/libc.so.6", MemoryClass::kFile},
      {"7ffd1c3e0000-7ffd1c401000 rw-p 00000000 00:00 0  [stack]",
       0x7ffd1c3e0000, 0x7ffd1c401000, "rw-p", 0, 0, "[stack]",
       MemoryClass::kStack},
      {"7f0000000000-7f0000001000 rwxp 00000000 00:00 0", 0x7f0000000000,
       0x7f0000001000, "rwxp", 0, 0, "", MemoryClass::kAnonymous},
      {"7f0000000000-7f0000001000 rwxp 00000000 00:00 0   \n", 0x7f0000000000,
       0x7f0000001000, "rwxp", 0, 0, "", MemoryClass::kAnonymous},
      {"1000-2000 r-xs 00000000 00:01 77 /memfd:payload (deleted)", 0x1000,
       0x2000, "r-xs", 0, 77, "/memfd:payload (deleted)", MemoryClass::kMemfd},
      {"1000-2000 r-xp 00001000 08:02 9 /usr/lib/libold.so (deleted)", 0x1000,
       0x2000, "r-xp", 0x1000, 9, "/usr/lib/libold.so (deleted)",
       MemoryClass::kMemfd},
      {"1000-2000 rw-s 00000000 00:19 5 /dev/shm/x", 0x1000, 0x2000, "rw-s", 0,
       5, "/dev/shm/x", MemoryClass::kMemfd},
      {"1000-2000 rw-s 00000000 00:01 1024 /dev/zero (deleted)", 0x1000, 0x2000,
       "rw-s", 0, 1024, "/dev/zero (deleted)", MemoryClass::kAnonymous},
      {"1000-2000 rw-s 00000000 00:01 0 /SYSV00000000 (deleted)", 0x1000,
       0x2000, "rw-s", 0, 0, "/SYSV00000000 (deleted)",
       MemoryClass::kAnonymous},
      {"1000-2000 rw-p 00000000 00:00 0 [anon:scudo]", 0x1000, 0x2000, "rw-p",
       0, 0, "[anon:scudo]", MemoryClass::kAnonymous},
      {"7fff5e3f0000-7fff5e3f2000 r-xp 00000000 00:00 0 [vdso]", 0x7fff5e3f0000,
       0x7fff5e3f2000, "r-xp", 0, 0, "[vdso]", MemoryClass::kSpecial},
      {"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]",
       0xffffffffff600000, 0xffffffffff601000, "--xp", 0, 0, "[vsyscall]",
       MemoryClass::kSpecial},
      {"1000-2000 r--p 00000000 08:02 12 /home/a b/lib x.so", 0x1000, 0x2000,
       "r--p", 0, 12, "/home/a b/lib x.so", MemoryClass::kFile},
      {"ABC000-ABD000 ---p 0 0:0 0", 0xabc000, 0xabd000, "---p", 0, 0, "",
       MemoryClass::kAnonymous},
  };
  for (const Case& c : cases) {
    std::optional<Mapping> m = ParseMapsLine(c.line);
    ASSERT_TRUE(m.has_value()) << c.line;
    EXPECT_EQ(m->start, c.start) << c.line;
    EXPECT_EQ(m->end, c.end) << c.line;
    std::string perms = {m->readable ? 'r' : '-', m->writable ? 'w' : '-',
                         m->executable ? 'x' : '-', m->shared ? 's' : 'p'};
    EXPECT_EQ(perms, c.perms) << c.line;
    EXPECT_EQ(m->offset, c.offset) << c.line;
    EXPECT_EQ(m->inode, c.inode) << c.line;
    EXPECT_EQ(m->path, c.path) << c.line;
    EXPECT_EQ(ClassifyMapping(*m), c.cls) << c.line;
  }
}

TEST(NativeInspectorTest, ParseMapsLineRejectsMalformedLines) {
  const char* bad[] = {
      "",
      "garbage",
      "1000-2000",
      "1000-2000 r-xp 00000000 00:00",     // no inode
      "2000-1000 r-xp 00000000 00:00 0",   // start > end
      "1000-1000 r-xp 00000000 00:00 0",   // empty
      "1000 r-xp 00000000 00:00 0",        // no dash
      "zz00-2000 r-xp 00000000 00:00 0",   // bad hex
      "1000-2000 r-xp 0000000g 00:00 0",   // bad offset
      "1000-2000 r-x 00000000 00:00 0",    // short perms
      "1000-2000 r-xpp 00000000 00:00 0",  // long perms
      "1000-2000 rwxq 00000000 00:00 0",   // bad share flag
      "1000-2000 xwrp 00000000 00:00 0",   // perms out of order
      "1000-2000 r-xp 00000000 0000 0",    // dev without colon
      "1000-2000 r-xp 00000000 00:00 1a",  // bad inode
      "10000000000000000-10000000000000001 r-xp 0 00:00 0",  // > 64 bits
      "-2000 r-xp 00000000 00:00 0",
      "1000- r-xp 00000000 00:00 0",
  };
  for (const char* line : bad) {
    EXPECT_FALSE(ParseMapsLine(line).has_value()) << line;
  }
}

TEST(NativeInspectorTest, ClassifyAddressInMapsTable) {
  const std::string maps =
      "1000-2000 r-xp 00000000 08:02 12 /usr/lib/libx.so\n"
      "this line is garbage and is skipped\n"
      "2000-3000 rw-p 00001000 08:02 12 /usr/lib/libx.so\n"
      "5000-6000 rw-p 00000000 00:00 0 [heap]\n"
      "\n"
      "7000-8000 rwxp 00000000 00:00 0\n"
      "9000-a000 rw-p 00000000 00:00 0 [stack]";  // no trailing newline
  struct Case {
    uint64_t addr;
    const char* label;
    const char* prot;
    bool file_code;
  } cases[] = {
      {0x0, "unmapped", "", false},
      {0xfff, "unmapped", "", false},
      {0x1000, "file-exec", "r-xp", true},
      {0x1fff, "file-exec", "r-xp", true},
      {0x2000, "file", "rw-p", false},  // end is exclusive
      {0x3000, "unmapped", "", false},  // gap
      {0x5800, "heap", "rw-p", false},
      {0x7000, "anonymous-exec", "rwxp", false},
      {0x9fff, "stack", "rw-p", false},
      {0xa000, "unmapped", "", false},
      {~uint64_t{0}, "unmapped", "", false},
  };
  for (const Case& c : cases) {
    AddressInfo info = ClassifyAddressInMaps(maps, c.addr);
    EXPECT_EQ(info.Label(), c.label) << std::hex << c.addr;
    EXPECT_EQ(info.Prot(), c.prot) << std::hex << c.addr;
    EXPECT_EQ(info.IsFileCode(), c.file_code) << std::hex << c.addr;
  }
  EXPECT_EQ(ClassifyAddressInMaps(maps, 0x1800).mapping.path,
            "/usr/lib/libx.so");
  EXPECT_EQ(ClassifyAddressInMaps("", 0x1000).cls, MemoryClass::kUnmapped);
}

TEST(NativeInspectorTest, ClassifyAddressInSortedMappings) {
  std::vector<Mapping> maps;
  for (const char* line : {"1000-2000 r-xp 0 08:02 12 /usr/lib/libx.so",
                           "2000-3000 rw-p 1000 08:02 12 /usr/lib/libx.so",
                           "5000-6000 rwxp 0 00:00 0"}) {
    maps.push_back(*ParseMapsLine(line));
  }
  EXPECT_EQ(ClassifyAddressIn(maps, 0xfff).Label(), "unmapped");
  EXPECT_EQ(ClassifyAddressIn(maps, 0x1000).Label(), "file-exec");
  EXPECT_EQ(ClassifyAddressIn(maps, 0x2fff).Label(), "file");
  EXPECT_EQ(ClassifyAddressIn(maps, 0x3000).Label(), "unmapped");
  EXPECT_EQ(ClassifyAddressIn(maps, 0x5abc).Label(), "anonymous-exec");
  EXPECT_EQ(ClassifyAddressIn(maps, 0x6000).Label(), "unmapped");
  EXPECT_EQ(ClassifyAddressIn({}, 0x1000).Label(), "unmapped");
}

// A maps file the test rewrites.
class MapsFile {
 public:
  MapsFile() {
    char path[] = "/tmp/dynahug_maps_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    path_ = path;
  }
  ~MapsFile() { unlink(path_.c_str()); }
  void Write(const std::string& text) {
    FILE* f = fopen(path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs(text.c_str(), f);
    fclose(f);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(NativeInspectorTest, MapsCacheRereadsOnlyWhenItMust) {
  MapsFile file;
  file.Write(
      "1000-2000 r-xp 0 08:02 12 /usr/lib/libx.so\n"
      "5000-6000 rwxp 0 00:00 0\n");
  MapsCache cache(file.path());
  EXPECT_EQ(cache.reads(), 0u);
  absl::StatusOr<AddressInfo> info = cache.Classify(0x1800, true);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->Label(), "file-exec");
  EXPECT_EQ(cache.reads(), 1u);
  // File code is trusted from the snapshot.
  file.Write("1000-2000 rwxp 0 00:00 0\n5000-6000 rwxp 0 00:00 0\n");
  EXPECT_EQ(cache.Classify(0x1800, true)->Label(), "file-exec");
  EXPECT_EQ(cache.reads(), 1u);
  // Anything else is re-read for a call...
  EXPECT_EQ(cache.Classify(0x5000, true)->Label(), "anonymous-exec");
  EXPECT_EQ(cache.reads(), 2u);
  // ... which picked up the change above.
  EXPECT_EQ(cache.Classify(0x1800, true)->Label(), "anonymous-exec");
  EXPECT_EQ(cache.reads(), 3u);
  // Not for a memory lookup.
  EXPECT_EQ(cache.Classify(0x5000, false)->Label(), "anonymous-exec");
  EXPECT_EQ(cache.reads(), 3u);
  // Unmapped answers are always re-read.
  file.Write("1000-2000 rwxp 0 00:00 0\n8000-9000 rw-p 0 00:00 0 [heap]\n");
  EXPECT_EQ(cache.Classify(0x8000, false)->Label(), "heap");
  EXPECT_EQ(cache.reads(), 4u);
  // Invalidate forces a read.
  cache.Invalidate();
  EXPECT_EQ(cache.Classify(0x8000, false)->Label(), "heap");
  EXPECT_EQ(cache.reads(), 5u);
  // A read error is reported and drops the snapshot.
  unlink(file.path().c_str());
  cache.Invalidate();
  info = cache.Classify(0x8000, false);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  file.Write("1000-2000 r-xp 0 08:02 12 /usr/lib/libx.so\n");
  EXPECT_EQ(cache.Classify(0x1000, false)->Label(), "file-exec");
  EXPECT_EQ(cache.reads(), 7u);
}

TEST(NativeInspectorTest, ReadMapsOfThisProcess) {
  absl::StatusOr<std::vector<Mapping>> maps = ReadMaps();
  ASSERT_TRUE(maps.ok()) << maps.status();
  ASSERT_FALSE(maps->empty());
  for (size_t i = 1; i < maps->size(); ++i) {
    EXPECT_LE((*maps)[i - 1].end, (*maps)[i].start);
  }
  EXPECT_FALSE(ReadMaps("/nonexistent/dynahug/maps").ok());
}

TEST(NativeInspectorTest, MemoryClassNames) {
  EXPECT_EQ(MemoryClassName(MemoryClass::kUnmapped), "unmapped");
  EXPECT_EQ(MemoryClassName(MemoryClass::kFile), "file");
  EXPECT_EQ(MemoryClassName(MemoryClass::kMemfd), "memfd");
  EXPECT_EQ(MemoryClassName(MemoryClass::kAnonymous), "anonymous");
  EXPECT_EQ(MemoryClassName(MemoryClass::kHeap), "heap");
  EXPECT_EQ(MemoryClassName(MemoryClass::kStack), "stack");
  EXPECT_EQ(MemoryClassName(MemoryClass::kSpecial), "special");
}

// --- this process ------------------------------------------------------------

TEST(NativeInspectorTest, ClassifiesLibcCode) {
  void* fn = dlsym(RTLD_DEFAULT, "getpid");
  ASSERT_NE(fn, nullptr);
  absl::StatusOr<AddressInfo> info =
      ClassifyAddress(reinterpret_cast<uint64_t>(fn));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->cls, MemoryClass::kFile);
  EXPECT_TRUE(info->mapping.executable);
  EXPECT_FALSE(info->mapping.writable);
  EXPECT_TRUE(info->IsFileCode());
  EXPECT_EQ(info->Label(), "file-exec");
  EXPECT_THAT(info->mapping.path, HasSubstr("libc"));
}

TEST(NativeInspectorTest, ClassifiesHeapStackAndAnonymousMemory) {
  void* heap = malloc(64);
  ASSERT_NE(heap, nullptr);
  absl::StatusOr<AddressInfo> h =
      ClassifyAddress(reinterpret_cast<uint64_t>(heap));
  free(heap);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->Label(), "heap");  // small malloc on the main thread: brk

  volatile int local = 1;
  absl::StatusOr<AddressInfo> s =
      ClassifyAddress(reinterpret_cast<uint64_t>(const_cast<int*>(&local)));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->Label(), "stack");
  EXPECT_EQ(s->Prot(), "rw-p");

  Pages rwx(1, PROT_READ | PROT_WRITE | PROT_EXEC);
  ASSERT_NE(rwx.get(), nullptr);
  absl::StatusOr<AddressInfo> a = ClassifyAddress(rwx.addr() + 10);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->cls, MemoryClass::kAnonymous);
  EXPECT_EQ(a->Label(), "anonymous-exec");
  EXPECT_EQ(a->Prot(), "rwxp");
  EXPECT_FALSE(a->IsFileCode());
  EXPECT_LE(a->mapping.start, rwx.addr());
  EXPECT_GE(a->mapping.end, rwx.addr() + rwx.size());
}

TEST(NativeInspectorTest, ClassifiesUnmappedAndSpecialMemory) {
  uint64_t gone;
  {
    Pages p(1, PROT_READ);
    ASSERT_NE(p.get(), nullptr);
    gone = p.addr();
  }
  absl::StatusOr<AddressInfo> u = ClassifyAddress(gone);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->Label(), "unmapped");

  uint64_t vdso = getauxval(AT_SYSINFO_EHDR);
  if (vdso != 0) {
    absl::StatusOr<AddressInfo> v = ClassifyAddress(vdso);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->cls, MemoryClass::kSpecial);
    EXPECT_EQ(v->mapping.path, "[vdso]");
  }
}

TEST(NativeInspectorTest, ClassifyAddressReportsUnreadableMaps) {
  absl::StatusOr<AddressInfo> info =
      ClassifyAddress(0x1000, "/nonexistent/dynahug/maps");
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(info.status().message(),
              HasSubstr("open(/nonexistent/dynahug/maps) failed: No such"));
  // A directory opens but cannot be read.
  info = ClassifyAddress(0x1000, "/");
  ASSERT_FALSE(info.ok());
  EXPECT_THAT(info.status().message(), HasSubstr("read(/) failed"));
}

// --- stacks ------------------------------------------------------------------

__attribute__((noinline)) std::vector<proto::Frame> CaptureHere(int max,
                                                                int skip) {
  std::vector<proto::Frame> frames = CaptureNativeStack(max, skip);
  asm volatile("" ::: "memory");  // no tail call: keep this frame
  return frames;
}

TEST(NativeInspectorTest, CaptureNativeStackStartsAtTheCaller) {
  std::vector<proto::Frame> frames = CaptureHere(64, 0);
  ASSERT_GE(frames.size(), 3u);
  EXPECT_THAT(frames[0].function(), HasSubstr("CaptureHere"));
  bool test_body = false;
  bool libc = false;
  for (const proto::Frame& f : frames) {
    EXPECT_TRUE(f.native());
    EXPECT_NE(f.pc(), 0u);
    EXPECT_EQ(f.line(), 0u);
    if (f.function().find("CaptureNativeStackStartsAtTheCaller") !=
        std::string::npos) {
      test_body = true;
    }
    if (f.file().find("libc.so") != std::string::npos) libc = true;
  }
  EXPECT_TRUE(test_body);
  EXPECT_TRUE(libc);  // __libc_start_call_main
  // Symbols are cached per pc: a second capture names the same frames.
  std::vector<proto::Frame> again = CaptureHere(64, 0);
  ASSERT_FALSE(again.empty());
  EXPECT_EQ(again[0].function(), frames[0].function());
  EXPECT_EQ(again[0].file(), frames[0].file());
}

TEST(NativeInspectorTest, CaptureNativeStackIsBounded) {
  EXPECT_TRUE(CaptureHere(0, 0).empty());
  EXPECT_TRUE(CaptureHere(-1, 0).empty());
  std::vector<proto::Frame> two = CaptureHere(2, 0);
  ASSERT_EQ(two.size(), 2u);
  std::vector<proto::Frame> skipped = CaptureHere(1, 1);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].function(), two[1].function());  // the test body
  EXPECT_THAT(skipped[0].function(), HasSubstr("CaptureNativeStackIsBounded"));
  EXPECT_TRUE(CaptureHere(4, 100000).empty());
}

// --- disassembly -------------------------------------------------------------

TEST(NativeInspectorTest, DisassemblesWrittenCode) {
  Pages page(1, PROT_READ | PROT_WRITE | PROT_EXEC);
  ASSERT_NE(page.get(), nullptr);
  const uint8_t code[] = {0x90, 0x90, 0xc3};
  memcpy(page.get(), code, sizeof(code));
  absl::StatusOr<Disassembly> d = DisassembleAt(page.addr(), 3, 16);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->lines.size(), 3u);
  EXPECT_THAT(d->lines[0], MatchesRegex("0x[0-9a-f]+: nop"));
  EXPECT_THAT(d->lines[1], MatchesRegex("0x[0-9a-f]+: nop"));
  EXPECT_THAT(d->lines[2], MatchesRegex("0x[0-9a-f]+: ret"));
  EXPECT_EQ(d->lines[0].substr(0, d->lines[0].find(':')),
            absl::StrCat("0x", absl::Hex(page.addr())));
  EXPECT_EQ(d->hex, "9090c3");
  EXPECT_EQ(d->size, 3u);
  EXPECT_EQ(d->sha256, Sha256Prefix(std::string("\x90\x90\xc3", 3)));

  // Same through the plain-copy fallback (no /proc/self/mem).
  absl::StatusOr<AddressInfo> info = ClassifyAddress(page.addr());
  ASSERT_TRUE(info.ok());
  absl::StatusOr<Disassembly> copied =
      DisassembleAt(*info, page.addr(), 3, 16, "/nonexistent/mem");
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->hex, "9090c3");
  EXPECT_EQ(copied->lines, d->lines);
}

TEST(NativeInspectorTest, DisassemblyIsBoundedByBytesInstructionsAndMapping) {
  Pages pages(2, PROT_READ | PROT_WRITE);
  ASSERT_NE(pages.get(), nullptr);
  memset(pages.get(), 0x90, pages.page());
  // A separate, unreadable second page: reads must stop at the first.
  ASSERT_EQ(mprotect(pages.get() + pages.page(), pages.page(), PROT_NONE), 0);
  absl::StatusOr<Disassembly> d = DisassembleAt(pages.addr(), 64, 4);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, 64u);
  EXPECT_EQ(d->lines.size(), 4u);
  uint64_t tail = pages.addr() + pages.page() - 2;
  d = DisassembleAt(tail, 64, 16);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, 2u);
  EXPECT_EQ(d->lines.size(), 2u);
}

TEST(NativeInspectorTest, DisassembleBytesFormatsAndStopsAtGarbage) {
  absl::StatusOr<Disassembly> d =
      DisassembleBytes(std::string("\x48\x89\xd8\x90", 4), 0x1000, 16);
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(d->lines, ElementsAre("0x1000: mov rax, rbx", "0x1003: nop"));
  // 0x06 (push es) does not exist in 64-bit mode.
  d = DisassembleBytes(std::string("\x06\x90", 2), 0x2000, 16);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->lines.empty());
  EXPECT_EQ(d->hex, "0690");
  EXPECT_EQ(d->size, 2u);
  d = DisassembleBytes("", 0, 16);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->lines.empty());
  EXPECT_EQ(d->sha256, Sha256Prefix(""));
  d = DisassembleBytes(std::string("\x90", 1), 0, 0);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->lines.empty());
}

TEST(NativeInspectorTest, DisassembleRefusesUnsafeAddresses) {
  // Unmapped.
  AddressInfo none;
  absl::StatusOr<Disassembly> d = DisassembleAt(none, 0x1000, 16, 4);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(d.status().message(), HasSubstr("disassemble 0x1000: unmapped"));

  // Not readable.
  Pages guard(1, PROT_NONE);
  ASSERT_NE(guard.get(), nullptr);
  d = DisassembleAt(guard.addr(), 16, 4);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(d.status().message(), HasSubstr("not readable (---p)"));

  // Outside the mapping the info describes.
  absl::StatusOr<AddressInfo> info = ClassifyAddress(guard.addr());
  ASSERT_TRUE(info.ok());
  d = DisassembleAt(*info, info->mapping.end, 16, 4);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("outside the mapping"));

  // Special mappings ([vdso], [vvar]) are never read.
  uint64_t vdso = getauxval(AT_SYSINFO_EHDR);
  if (vdso != 0) {
    d = DisassembleAt(vdso, 16, 4);
    ASSERT_FALSE(d.ok());
    EXPECT_THAT(d.status().message(), HasSubstr("special mapping [vdso]"));
  }
}

TEST(NativeInspectorTest, DisassembleDoesNotFaultPastEndOfFile) {
  char path[] = "/tmp/dynahug_native_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  Pages mapped(1, PROT_READ, MAP_SHARED, fd);
  ASSERT_NE(mapped.get(), nullptr);
  ASSERT_EQ(ftruncate(fd, 0), 0);  // touching the page now raises SIGBUS
  close(fd);
  absl::StatusOr<AddressInfo> info = ClassifyAddress(mapped.addr());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->cls, MemoryClass::kMemfd);  // a deleted file
  absl::StatusOr<Disassembly> d = DisassembleAt(*info, mapped.addr(), 16, 4);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(d.status().message(), HasSubstr("pread(/proc/self/mem"));
  // Without /proc/self/mem a file mapping is not read at all.
  d = DisassembleAt(*info, mapped.addr(), 16, 4, "/nonexistent/mem");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(d.status().message(), HasSubstr("no safe way to read a memfd"));
}

}  // namespace
}  // namespace dynahug::hooks

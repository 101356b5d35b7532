// Loader drivers on BENIGN files only (no sandbox in these tests): the
// instrumented loads return what the plain library loads return
// (differential against /usr/bin/python3), record globals, calls,
// persistent ids, stubs for missing modules, audit events during the load
// only, and, in stepping mode, exactly pickletools.genops' opcodes.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "gtest/gtest.h"
#include "hooks/event_sink.h"
#include "runtime/embed/loader.h"
#include "sandbox/event_channel.h"
#include "tests/runtime/embed_test_util.h"

namespace dynahug::runtime {
namespace {

using dynahug::testing::Fixture;
using dynahug::testing::FixtureDir;
using dynahug::testing::ReadLines;
using dynahug::testing::SharedInterpreter;
using proto::Event;

Loader& SharedLoader() {
  static Loader* loader = [] {
    absl::StatusOr<Loader> l = Loader::Create(SharedInterpreter());
    if (!l.ok()) {
      fprintf(stderr, "Loader::Create: %s\n", l.status().ToString().c_str());
      abort();
    }
    return new Loader(std::move(*l));
  }();
  return *loader;
}

LoadResult MustLoad(const std::string& name, const std::string& loader,
                    hooks::MemoryEventSink& sink, LoadOptions options = {}) {
  options.loader = loader;
  absl::StatusOr<LoadResult> r =
      SharedLoader().Load(Fixture(name), options, sink);
  EXPECT_TRUE(r.ok()) << name << ": " << r.status();
  return r.ok() ? *r : LoadResult{};
}

std::string Arg(const Event& e, const std::string& key) {
  for (const auto& a : e.args()) {
    if (a.key() == key) return a.value();
  }
  return "";
}

std::vector<const Event*> OfKind(const hooks::MemoryEventSink& sink,
                                 Event::Kind kind) {
  std::vector<const Event*> out;
  for (const Event& e : sink.events()) {
    if (e.kind() == kind) out.push_back(&e);
  }
  return out;
}

const Event* Find(const hooks::MemoryEventSink& sink, Event::Kind kind,
                  const std::string& name) {
  for (const Event& e : sink.events()) {
    if (e.kind() == kind && e.name() == name) return &e;
  }
  return nullptr;
}

TEST(EmbedLoaderTest, DefaultLoaderForFormats) {
  struct Case {
    const char* format;
    const char* loader;
  } cases[] = {{"torch-zip", "torch.load"},  {"torch-legacy", "torch.load"},
               {"joblib", "joblib.load"},    {"zlib", "joblib.load"},
               {"npy", "numpy.load"},        {"npz", "numpy.load"},
               {"raw-pickle", "pickle.load"}};
  for (const Case& c : cases) {
    absl::StatusOr<std::string> l = DefaultLoaderFor(c.format);
    ASSERT_TRUE(l.ok()) << c.format;
    EXPECT_EQ(*l, c.loader);
  }
  for (const char* bad : {"zip", "data", "", "7z"}) {
    EXPECT_EQ(DefaultLoaderFor(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(EmbedLoaderTest, BadOptionsAreErrors) {
  hooks::MemoryEventSink sink;
  LoadOptions o;
  o.loader = "eval";
  EXPECT_EQ(
      SharedLoader().Load(Fixture("plain_p2.pkl"), o, sink).status().code(),
      absl::StatusCode::kInvalidArgument);
  o.loader = "auto";
  o.format = "zip";
  EXPECT_EQ(
      SharedLoader().Load(Fixture("plain_p2.pkl"), o, sink).status().code(),
      absl::StatusCode::kInvalidArgument);
  o.format = "raw-pickle";
  absl::StatusOr<LoadResult> r =
      SharedLoader().Load(Fixture("plain_p2.pkl"), o, sink);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->loader, "pickle.load");
  EXPECT_TRUE(r->loaded);
}

// Differential: same type (or same exception type) as the plain loader in a
// separate Debian python3 process.
TEST(EmbedLoaderTest, SameResultTypeAsPlainLoaderInSeparateProcess) {
  std::vector<std::string> ref = ReadLines(Fixture("reference.tsv"));
  ASSERT_GE(ref.size(), 20u);
  for (const std::string& line : ref) {
    size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    std::string name = line.substr(0, t1);
    std::string loader = line.substr(t1 + 1, t2 - t1 - 1);
    std::string want = line.substr(t2 + 1);
    for (bool record_calls : {true, false}) {
      hooks::MemoryEventSink sink;
      LoadOptions options;
      options.record_calls = record_calls;
      LoadResult r = MustLoad(name, loader, sink, options);
      std::string got = r.loaded ? r.loaded_type : "!" + r.error_type;
      EXPECT_EQ(got, want) << name << " via " << loader << ": "
                           << r.error_message
                           << " record_calls=" << record_calls;
      // A benign load raises none of the loader's tamper findings
      // (loader.tampered, loader.hook.*, loader.bridge.*).
      for (const Event* e : OfKind(sink, Event::INTEGRITY)) {
        EXPECT_FALSE(e->name().rfind("loader.", 0) == 0)
            << name << ": " << e->ShortDebugString();
      }
      bool opened_model = false;
      for (const Event* e : OfKind(sink, Event::AUDIT)) {
        opened_model |= e->name() == "open" && Arg(*e, "path") == "model-file";
      }
      EXPECT_TRUE(opened_model) << name << " via " << loader;
    }
  }
}

TEST(EmbedLoaderTest, TorchZipRecordsGlobalsCallsPersistentIdsAndAudit) {
  hooks::MemoryEventSink sink;
  LoadResult r = MustLoad("state_dict.pt", "torch.load", sink);
  ASSERT_TRUE(r.loaded) << r.error_message;
  EXPECT_EQ(r.loaded_type, "collections.OrderedDict");
  const Event* g = Find(sink, Event::GLOBAL, "torch._utils._rebuild_tensor_v2");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(Arg(*g, "resolved"), "real");
  EXPECT_TRUE(g->has_pickle_offset());
  EXPECT_EQ(g->member(), "state_dict/data.pkl");
  const Event* call =
      Find(sink, Event::PICKLE_CALL, "torch._utils._rebuild_tensor_v2");
  ASSERT_NE(call, nullptr);
  EXPECT_EQ(Arg(*call, "op"), "REDUCE");
  EXPECT_EQ(Arg(*call, "0"), "obj:torch.storage.TypedStorage");
  const Event* pid = Find(sink, Event::PICKLE_CALL, "persistent_load");
  ASSERT_NE(pid, nullptr);
  EXPECT_EQ(Arg(*pid, "0"), "str:storage");
  // torch.load opened the model file through Python's open().
  bool opened_model = false;
  for (const Event* e : OfKind(sink, Event::AUDIT)) {
    if (e->name() == "open" && Arg(*e, "path") == "model-file")
      opened_model = true;
  }
  EXPECT_TRUE(opened_model);
  // Sequence numbers strictly increase; events are stamped.
  uint64_t last = 0;
  for (size_t i = 0; i < sink.events().size(); ++i) {
    if (i > 0) {
      EXPECT_GT(sink.events()[i].sequence(), last);
    }
    last = sink.events()[i].sequence();
    EXPECT_GE(sink.events()[i].count(), 1u);
  }
  EXPECT_FALSE(OfKind(sink, Event::PYTHON_CALL).empty());
}

TEST(EmbedLoaderTest, MissingModuleResolvesToStub) {
  for (const auto& [name, loader] :
       std::vector<std::pair<std::string, std::string>>{
           {"missing_module.pkl", "pickle.load"},
           {"missing_module.pt", "torch.load"}}) {
    hooks::MemoryEventSink sink;
    LoadResult r = MustLoad(name, loader, sink);
    EXPECT_TRUE(r.loaded) << name << ": " << r.error_type << " "
                          << r.error_message;
    EXPECT_EQ(r.loaded_type, "builtins.dict");
    const Event* g = Find(sink, Event::GLOBAL,
                          "transformers.training_args.TrainingArguments");
    ASSERT_NE(g, nullptr) << name;
    EXPECT_EQ(Arg(*g, "resolved"), "stub");
    bool stub_built = false;
    for (const Event* e : OfKind(sink, Event::PICKLE_CALL)) {
      if (e->name().starts_with(
              "transformers.training_args.TrainingArguments")) {
        stub_built = true;
      }
    }
    EXPECT_TRUE(stub_built) << name;
  }
}

TEST(EmbedLoaderTest, InstAndObjCallsRecorded) {
  for (const auto& [file, op] :
       std::vector<std::pair<std::string, std::string>>{{"inst.pkl", "INST"},
                                                        {"obj.pkl", "OBJ"}}) {
    hooks::MemoryEventSink sink;
    LoadResult r = MustLoad(file, "pickle.load", sink);
    ASSERT_TRUE(r.loaded);
    const Event* c = Find(sink, Event::PICKLE_CALL, "fractions.Fraction");
    ASSERT_NE(c, nullptr) << file;
    EXPECT_EQ(Arg(*c, "op"), op);
    EXPECT_TRUE(Arg(*c, "0").starts_with("str:")) << Arg(*c, "0");
  }
}

// Once the libraries are imported (as in the zygote), the loader's own
// set-up raises no audit events: the first one is the library opening the
// model file.
TEST(EmbedLoaderTest, NoLoaderNoiseInAuditEvents) {
  for (const auto& [file, loader] :
       std::vector<std::pair<std::string, std::string>>{
           {"plain_p4.pkl", "pickle.load"},
           {"state_dict.pt", "torch.load"},
           {"model.joblib", "joblib.load"},
           {"obj.npy", "numpy.load"}}) {
    hooks::MemoryEventSink warm, sink;
    MustLoad(file, loader, warm);
    MustLoad(file, loader, sink);
    std::vector<const Event*> audit = OfKind(sink, Event::AUDIT);
    ASSERT_FALSE(audit.empty()) << file;
    EXPECT_EQ(audit[0]->name(), "open") << file;
    EXPECT_EQ(Arg(*audit[0], "path"), "model-file") << file;
    for (const Event* e : audit) {
      EXPECT_NE(e->name(), "object.__setattr__") << file;
    }
  }
}

TEST(EmbedLoaderTest, NpzMembersNamedOnEvents) {
  hooks::MemoryEventSink sink;
  LoadResult r = MustLoad("objs.npz", "numpy.load", sink);
  ASSERT_TRUE(r.loaded) << r.error_message;
  const Event* g = Find(sink, Event::GLOBAL, "fractions.Fraction");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->member(), "o.npy");
  EXPECT_TRUE(g->has_pickle_offset());
}

TEST(EmbedLoaderTest, JoblibSteppingLoadsAndInterleaves) {
  hooks::MemoryEventSink sink;
  LoadOptions o;
  o.opcodes = true;
  LoadResult r = MustLoad("model.joblib", "joblib.load", sink, o);
  ASSERT_TRUE(r.loaded) << r.error_message;
  EXPECT_EQ(r.loaded_type, "sklearn.linear_model._logistic.LogisticRegression");
  std::vector<const Event*> ops = OfKind(sink, Event::OPCODE);
  ASSERT_GT(ops.size(), 10u);
  EXPECT_EQ(ops.front()->name(), "PROTO");
  EXPECT_EQ(ops.back()->name(), "STOP");
  // Offsets strictly increase (array bytes read by joblib in between).
  for (size_t i = 1; i < ops.size(); ++i) {
    EXPECT_GT(ops[i]->pickle_offset(), ops[i - 1]->pickle_offset());
  }
  const Event* build = Find(sink, Event::PICKLE_CALL,
                            "joblib.numpy_pickle.NumpyArrayWrapper.__dict__");
  EXPECT_NE(build, nullptr);
}

TEST(EmbedLoaderTest, IntegrityBaselineIsUsedWhenGiven) {
  hooks::MemoryEventSink warm;
  MustLoad("plain_p4.pkl", "pickle.load", warm);
  // Watched modules are those imported when the baseline is taken.
  ASSERT_TRUE(SharedInterpreter().Preimport({"os"}).ok());
  absl::StatusOr<hooks::IntegritySnapshot> baseline =
      hooks::IntegritySnapshot::Take();
  ASSERT_TRUE(baseline.ok());
  // A change made after the baseline (standing in for one made by a load)
  // shows up in the next load's events; without the baseline it does not.
  ASSERT_TRUE(SharedInterpreter()
                  .Exec("import os\nos._dh_saved = os.getcwd\n"
                        "os.getcwd = lambda: '/'")
                  .ok());
  auto rebound = [](const hooks::MemoryEventSink& sink) {
    for (const Event* e : OfKind(sink, Event::INTEGRITY)) {
      if (e->name() == "module.attr.rebound" && Arg(*e, "attr") == "getcwd") {
        return true;
      }
    }
    return false;
  };
  hooks::MemoryEventSink with, without;
  LoadOptions o;
  o.integrity_baseline = &*baseline;
  MustLoad("plain_p4.pkl", "pickle.load", with, o);
  MustLoad("plain_p4.pkl", "pickle.load", without);
  ASSERT_TRUE(SharedInterpreter()
                  .Exec("import os\nos.getcwd = os._dh_saved\n"
                        "del os._dh_saved")
                  .ok());
  EXPECT_TRUE(rebound(with));
  EXPECT_FALSE(rebound(without));
}

TEST(EmbedLoaderTest, RawPickleThroughTorchLoadRunsThenFails) {
  hooks::MemoryEventSink sink;
  LoadResult r = MustLoad("raw_model.bin", "torch.load", sink);
  EXPECT_FALSE(r.loaded);
  EXPECT_EQ(r.error_type, "builtins.RuntimeError");
  EXPECT_NE(r.error_message.find("magic number"), std::string::npos);
}

TEST(EmbedLoaderTest, LargeStoragesStayLazy) {
  hooks::MemoryEventSink lazy_sink, full_sink;
  LoadOptions lazy;
  lazy.lazy_storage_bytes = 1 << 20;
  LoadOptions full;
  full.lazy_storage_bytes = -1;
  hooks::MemoryEventSink warm;
  MustLoad("state_dict.pt", "torch.load", warm);  // torch imported, warm
  LoadResult a = MustLoad("big.pt", "torch.load", lazy_sink, lazy);
  LoadResult b = MustLoad("big.pt", "torch.load", full_sink, full);
  ASSERT_TRUE(a.loaded && b.loaded);
  EXPECT_EQ(a.loaded_type, b.loaded_type);
  int lazy_ids = 0, full_lazy_ids = 0;
  for (const Event* e : OfKind(lazy_sink, Event::PICKLE_CALL)) {
    if (e->name() == "persistent_load" && Arg(*e, "lazy") == "meta") ++lazy_ids;
  }
  for (const Event* e : OfKind(full_sink, Event::PICKLE_CALL)) {
    if (e->name() == "persistent_load" && Arg(*e, "lazy") == "meta")
      ++full_lazy_ids;
  }
  EXPECT_EQ(lazy_ids, 1);  // the 32 MiB tensor, not the small one
  EXPECT_EQ(full_lazy_ids, 0);
}

// What the pickle did, as the loader recorded it: every GLOBAL and
// PICKLE_CALL event with its arguments, in order.
std::vector<std::string> PickleBehaviour(const hooks::MemoryEventSink& sink) {
  std::vector<std::string> out;
  for (const Event& e : sink.events()) {
    if (e.kind() != Event::GLOBAL && e.kind() != Event::PICKLE_CALL) continue;
    std::string line = Event::Kind_Name(e.kind()) + " " + e.name();
    for (const auto& a : e.args()) line += " " + a.key() + "=" + a.value();
    out.push_back(line);
  }
  return out;
}

// Storages are raw bytes no code runs on (issue 10): a checkpoint whose
// every storage byte is garbage (CRCs stale) loads with the same pickle
// behaviour and the same result, for storages read (small) and left lazy
// (big) alike.
TEST(EmbedLoaderTest, GarbageStorageBytesLoadIdentically) {
  for (const auto& [clean, garbage] :
       {std::pair<std::string, std::string>{"state_dict.pt", "state_dict_garbage.pt"},
        {"big.pt", "big_garbage.pt"}}) {
    hooks::MemoryEventSink a, b;
    LoadOptions lazy;
    lazy.lazy_storage_bytes = 1 << 20;
    LoadResult ra = MustLoad(clean, "torch.load", a, lazy);
    LoadResult rb = MustLoad(garbage, "torch.load", b, lazy);
    ASSERT_TRUE(ra.loaded && rb.loaded) << garbage << ": " << rb.error_message;
    EXPECT_EQ(ra.loaded_type, rb.loaded_type);
    const std::vector<std::string> want = PickleBehaviour(a);
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(PickleBehaviour(b), want) << garbage;
  }
}

// Legacy files keep the storages inline after the pickles: cut in the
// middle of them, the load fails (as torch.load does) only after the whole
// model pickle ran, and the trace shows all of it.
TEST(EmbedLoaderTest, TruncatedLegacyStoragesStillShowThePickle) {
  hooks::MemoryEventSink full_sink, cut_sink;
  LoadResult full = MustLoad("legacy.pt", "torch.load", full_sink);
  LoadResult cut = MustLoad("legacy_truncated.pt", "torch.load", cut_sink);
  ASSERT_TRUE(full.loaded) << full.error_message;
  EXPECT_FALSE(cut.loaded);
  EXPECT_EQ(cut.error_type, "builtins.RuntimeError");
  EXPECT_NE(cut.error_message.find("unexpected EOF"), std::string::npos)
      << cut.error_message;
  const std::vector<std::string> want = PickleBehaviour(full_sink);
  EXPECT_NE(Find(full_sink, Event::GLOBAL, "torch._utils._rebuild_tensor_v2"),
            nullptr);
  EXPECT_EQ(PickleBehaviour(cut_sink), want);
}

// Legacy files above the lazy threshold (issue 10): with an 11-byte
// threshold three of legacy.pt's four storages (48, 12, 12 bytes) are meta
// and skipped, the 4-byte one between them is read; the loaded value is the
// one the zip save of the same state dict loads to (same value digest, lazy
// storages by size), and so it is with every storage read (-1). The
// pickle's behaviour is the same either way, lazy marks aside; cut in its
// storage data, the file fails with torch's error after the whole pickle.
TEST(EmbedLoaderTest, LegacyStoragesAboveTheThresholdStayLazy) {
  auto behaviour = [](const hooks::MemoryEventSink& sink) {
    std::vector<std::string> out = PickleBehaviour(sink);
    for (std::string& line : out) {
      const size_t at = line.find(" lazy=meta");
      if (at != std::string::npos) line.erase(at, 10);
    }
    return out;
  };
  for (int64_t threshold : {int64_t{11}, int64_t{-1}}) {
    SCOPED_TRACE(threshold);
    LoadOptions o;
    o.lazy_storage_bytes = threshold;
    hooks::MemoryEventSink legacy_sink, zip_sink, full_sink, cut_sink;
    LoadResult legacy = MustLoad("legacy.pt", "torch.load", legacy_sink, o);
    LoadResult zip = MustLoad("state_dict.pt", "torch.load", zip_sink, o);
    ASSERT_TRUE(legacy.loaded) << legacy.error_message;
    ASSERT_TRUE(zip.loaded) << zip.error_message;
    EXPECT_EQ(legacy.loaded_type, zip.loaded_type);
    EXPECT_FALSE(legacy.loaded_digest.empty());
    EXPECT_EQ(legacy.loaded_digest, zip.loaded_digest);
    int lazy = 0, read = 0;
    for (const Event* e : OfKind(legacy_sink, Event::PICKLE_CALL)) {
      if (e->name() != "persistent_load") continue;
      (Arg(*e, "lazy") == "meta" ? lazy : read)++;
    }
    EXPECT_EQ(lazy, threshold < 0 ? 0 : 3);
    EXPECT_EQ(read, threshold < 0 ? 4 : 1);
    LoadOptions full;
    full.lazy_storage_bytes = -1;
    MustLoad("legacy.pt", "torch.load", full_sink, full);
    EXPECT_EQ(behaviour(legacy_sink), behaviour(full_sink));
    LoadResult cut = MustLoad("legacy_truncated.pt", "torch.load", cut_sink, o);
    EXPECT_FALSE(cut.loaded);
    EXPECT_EQ(cut.error_type, "builtins.RuntimeError");
    EXPECT_NE(cut.error_message.find("unexpected EOF"), std::string::npos)
        << cut.error_message;
    EXPECT_EQ(behaviour(cut_sink), behaviour(full_sink));
  }
}

TEST(EmbedLoaderTest, AuditRecordingOnlyDuringLoad) {
  hooks::MemoryEventSink sink;
  LoadResult r = MustLoad("plain_p4.pkl", "pickle.load", sink);
  ASSERT_TRUE(r.loaded);
  int opens = 0;
  for (const Event* e : OfKind(sink, Event::AUDIT)) {
    if (e->name() != "open") continue;
    // The first load in a process also imports stdlib modules it needs.
    if (Arg(*e, "path") == "python-lib") continue;
    ++opens;
    EXPECT_EQ(Arg(*e, "path"), "model-file");
    EXPECT_EQ(Arg(*e, "mode"), "r");  // FileIO reports the raw mode
  }
  EXPECT_EQ(opens, 1);
  size_t n = sink.events().size();
  // After the load nothing reaches the sink any more.
  ASSERT_TRUE(SharedInterpreter().Exec("open('/dev/null').close()").ok());
  EXPECT_EQ(sink.events().size(), n);
  // No event carries the host directory of the fixtures.
  for (const Event& e : sink.events()) {
    for (const auto& a : e.args()) {
      EXPECT_EQ(a.value().find(FixtureDir()), std::string::npos) << a.value();
    }
  }
}

// Stepping mode emits exactly pickletools.genops' opcodes, in order, at the
// same offsets (for torch: inside data.pkl / across the legacy streams).
TEST(EmbedLoaderTest, OpcodeSteppingMatchesGenops) {
  struct Case {
    const char* file;
    const char* loader;
  } cases[] = {{"plain_p0.pkl", "pickle.load"},
               {"plain_p1.pkl", "pickle.load"},
               {"plain_p2.pkl", "pickle.load"},
               {"plain_p3.pkl", "pickle.load"},
               {"plain_p4.pkl", "pickle.load"},
               {"plain_p5.pkl", "pickle.load"},
               {"inst.pkl", "pickle.load"},
               {"obj.pkl", "pickle.load"},
               {"missing_module.pkl", "pickle.load"},
               {"state_dict.pt", "torch.load"},
               {"legacy.pt", "torch.load"}};
  for (const Case& c : cases) {
    hooks::MemoryEventSink sink;
    LoadOptions o;
    o.opcodes = true;
    LoadResult r = MustLoad(c.file, c.loader, sink, o);
    ASSERT_TRUE(r.loaded) << c.file << ": " << r.error_message;
    std::vector<std::string> got;
    for (const Event* e : OfKind(sink, Event::OPCODE)) {
      got.push_back(std::to_string(e->pickle_offset()) + "\t" + e->name());
    }
    std::vector<std::string> want =
        ReadLines(Fixture(std::string(c.file) + ".genops"));
    ASSERT_FALSE(want.empty());
    EXPECT_EQ(got, want) << c.file;
    // Interleaving: the GLOBAL for an opcode follows its OPCODE event.
    uint64_t last_opcode_offset = 0;
    bool seen_opcode = false;
    for (const Event& e : sink.events()) {
      if (e.kind() == Event::OPCODE) {
        last_opcode_offset = e.pickle_offset();
        seen_opcode = true;
      } else if (e.kind() == Event::GLOBAL) {
        EXPECT_TRUE(seen_opcode);
        EXPECT_EQ(e.pickle_offset(), last_opcode_offset) << e.name();
      }
    }
  }
}

}  // namespace
}  // namespace dynahug::runtime

namespace dynahug::runtime {
namespace {

TEST(EmbedLoaderFastTest, CUnpicklerRecordsGlobalsAndPersistentIdsOnly) {
  // As in the zygote, torch is imported before the measured load (otherwise
  // the bounded profile fills up with torch's import-time calls).
  hooks::MemoryEventSink warm;
  MustLoad("state_dict.pt", "torch.load", warm);
  hooks::MemoryEventSink sink;
  LoadOptions o;
  o.record_calls = false;
  LoadResult r = MustLoad("state_dict.pt", "torch.load", sink, o);
  ASSERT_TRUE(r.loaded);
  const Event* g = Find(sink, Event::GLOBAL, "torch._utils._rebuild_tensor_v2");
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(g->has_pickle_offset());
  // Also the storage types torch's own find_class resolves.
  EXPECT_NE(Find(sink, Event::GLOBAL, "torch.FloatStorage"), nullptr);
  EXPECT_NE(Find(sink, Event::PICKLE_CALL, "persistent_load"), nullptr);
  EXPECT_EQ(Find(sink, Event::PICKLE_CALL, "torch._utils._rebuild_tensor_v2"),
            nullptr);
  // The profiler still sees the rebuild calls made by the C unpickler.
  bool profiled = false;
  for (const Event* e : OfKind(sink, Event::PYTHON_CALL)) {
    profiled |= e->name() == "torch._utils._rebuild_tensor_v2";
  }
  EXPECT_TRUE(profiled);
  hooks::MemoryEventSink stub_sink;
  LoadResult s = MustLoad("missing_module.pkl", "pickle.load", stub_sink, o);
  ASSERT_TRUE(s.loaded);
  const Event* stub = Find(stub_sink, Event::GLOBAL,
                           "transformers.training_args.TrainingArguments");
  ASSERT_NE(stub, nullptr);
  EXPECT_EQ(Arg(*stub, "resolved"), "stub");
}

// 700k opcodes of plain data (no GLOBAL, no call) load in both modes, and
// without opcode stepping none of them becomes an event: what is recorded
// does not grow with the opcode count. (Timings: bench/embed_bench.cc.)
TEST(EmbedLoaderFastTest, OpcodeHeavyPlainDataLoadsWithoutPerOpcodeEvents) {
  for (bool record_calls : {true, false}) {
    SCOPED_TRACE(record_calls ? "record_calls" : "C unpickler");
    hooks::MemoryEventSink sink;
    LoadOptions o;
    o.record_calls = record_calls;
    o.profile_calls = false;
    LoadResult r = MustLoad("many_ops.pkl", "pickle.load", sink, o);
    ASSERT_TRUE(r.loaded) << r.error_message;
    EXPECT_EQ(r.loaded_type, "builtins.list");
    EXPECT_LT(sink.events().size(), 100u);
    EXPECT_TRUE(OfKind(sink, Event::OPCODE).empty());
    EXPECT_TRUE(OfKind(sink, Event::GLOBAL).empty());
  }
}

}  // namespace
}  // namespace dynahug::runtime

namespace dynahug::runtime {
namespace {

// Forwards the loader's events to the production channel writer, as the
// sandboxed child does (runtime/trace/trace_runner.cc's ChannelSink).
class WriterSink final : public hooks::EventSink {
 public:
  explicit WriterSink(sandbox::EventWriter& writer) : writer_(writer) {}
  void Emit(proto::Event event) override { writer_.Write(std::move(event)); }

 private:
  sandbox::EventWriter& writer_;
};

std::multiset<std::string> GlobalNames(const std::vector<proto::Event>& all) {
  std::multiset<std::string> names;
  for (const proto::Event& e : all) {
    if (e.kind() == Event::GLOBAL) names.insert(e.name());
  }
  return names;
}

// The zygote shape: interpreter, libraries and loader initialised once in
// the parent, one forked child per file runs the load and exits. Its events
// reach the parent through the production channel (sandbox::MakeChannel,
// EventWriter in the child, EventReader in the parent) whole, in order, with
// the end marker, and say what the same load in process says.
// (Per-file cost of fork + load + exit: bench/embed_bench.cc.)
TEST(EmbedLoaderForkTest, LoadInForkedChildStreamsEventsThroughTheChannel) {
  hooks::MemoryEventSink warm;
  MustLoad("state_dict.pt", "torch.load", warm);  // warm, as the zygote
  MustLoad("model.joblib", "joblib.load", warm);
  for (bool zygote_baseline : {false, true}) {
    // false: per-child integrity snapshot; true: taken once in the parent.
    std::optional<hooks::IntegritySnapshot> baseline;
    if (zygote_baseline) {
      absl::StatusOr<hooks::IntegritySnapshot> s =
          hooks::IntegritySnapshot::Take();
      ASSERT_TRUE(s.ok()) << s.status();
      baseline = std::move(*s);
    }
    for (const auto& [file, loader] :
         std::vector<std::pair<std::string, std::string>>{
             {"state_dict.pt", "torch.load"},
             {"model.joblib", "joblib.load"},
             {"plain_p4.pkl", "pickle.load"}}) {
      SCOPED_TRACE(file + (zygote_baseline ? " [zygote baseline]" : ""));
      LoadOptions o;
      o.loader = loader;
      if (baseline.has_value()) o.integrity_baseline = &*baseline;
      hooks::MemoryEventSink direct;
      absl::StatusOr<LoadResult> want =
          SharedLoader().Load(Fixture(file), o, direct);
      ASSERT_TRUE(want.ok() && want->loaded);

      sandbox::UniqueFd ends[2];
      ASSERT_TRUE(sandbox::MakeChannel(ends, 1 << 20).ok());
      Interpreter::BeforeFork();
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        Interpreter::AfterForkChild();
        ends[0].reset();
        sandbox::EventWriter writer(std::move(ends[1]), {});
        WriterSink sink(writer);
        absl::StatusOr<LoadResult> r =
            SharedLoader().Load(Fixture(file), o, sink);
        writer.Close(absl::Seconds(30));
        _exit(r.ok() && r->loaded && writer.dropped() == 0 ? 0 : 1);
      }
      Interpreter::AfterForkParent();
      ends[1].reset();
      sandbox::EventReader reader({});
      for (;;) {
        pollfd pfd = {ends[0].get(), POLLIN, 0};
        ASSERT_GE(poll(&pfd, 1, -1), 0) << strerror(errno);
        absl::StatusOr<bool> eof = reader.ReadFrom(ends[0].get());
        ASSERT_TRUE(eof.ok()) << eof.status();
        if (*eof) break;
      }
      reader.Finish();
      int status = 0;
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

      const sandbox::ChannelStats& st = reader.stats();
      EXPECT_TRUE(st.end_marker);
      EXPECT_EQ(st.corrupt_records, 0u);
      EXPECT_EQ(st.dropped_by_child, 0u);
      EXPECT_EQ(st.dropped_by_reader, 0u);
      EXPECT_EQ(st.torn_bytes, 0u);
      EXPECT_EQ(st.out_of_sequence, 0u);
      EXPECT_EQ(st.after_end, 0u);
      EXPECT_EQ(st.error, "");
      const std::vector<proto::Event>& got = reader.events();
      ASSERT_FALSE(got.empty());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].sequence(), i) << "events lost or reordered";
      }
      EXPECT_FALSE(GlobalNames(got).empty());
      EXPECT_EQ(GlobalNames(got), GlobalNames(direct.events()));
    }
  }
}

// A pickle in a fresh temporary file (removed by the destructor).
class TempPickle {
 public:
  explicit TempPickle(const std::string& bytes) {
    char tmpl[] = "/tmp/dynahug-embed-XXXXXX";
    const int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    path_ = tmpl;
    EXPECT_EQ(write(fd, bytes.data(), bytes.size()),
              static_cast<ssize_t>(bytes.size()));
    close(fd);
  }
  ~TempPickle() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Stubs stand in for third-party modules only. A standard-library module
// the platform lacks (nt: Windows) fails as in a plain load (checked
// against /usr/bin/python3), and the split-out stdlib packages resolve for
// real. Harmless callees only.
TEST(EmbedLoaderStubPolicyTest, OnlyMissingThirdPartyModulesAreStubbed) {
  const std::string nt_pickle = "cnt\ngetcwd\n)R.";
  std::string plain;
  const int rc = dynahug::testing::RunCommand(
      "/usr/bin/python3 -c \"import pickle\n"
      "try:\n    pickle.loads(b'cnt\\\\ngetcwd\\\\n)R.')\n"
      "except Exception as e:\n    print(type(e).__name__, e.name)\" 2>&1",
      &plain);
  ASSERT_EQ(rc, 0) << plain;
  EXPECT_EQ(plain, "ModuleNotFoundError nt\n");
  for (const char* loader : {"pickle.load", "torch.load"}) {
    TempPickle nt(nt_pickle);
    hooks::MemoryEventSink sink;
    LoadOptions o;
    o.loader = loader;
    absl::StatusOr<LoadResult> r = SharedLoader().Load(nt.path(), o, sink);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->loaded) << loader << ": " << r->loaded_type;
    EXPECT_EQ(r->error_type, "builtins.ModuleNotFoundError") << loader;
    for (const Event& e : sink.events()) {
      EXPECT_NE(Arg(e, "resolved"), "stub") << loader << " " << e.name();
    }
  }

  // A third-party module that is not installed: a stub, and its call is
  // recorded with its arguments.
  TempPickle absent("cdynahug_absent_pkg.tools\nrun\n(V--flag\nI42\ntR.");
  hooks::MemoryEventSink sink;
  LoadResult r = [&] {
    LoadOptions o;
    o.loader = "pickle.load";
    absl::StatusOr<LoadResult> got = SharedLoader().Load(absent.path(), o, sink);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : LoadResult{};
  }();
  EXPECT_TRUE(r.loaded) << r.error_type << " " << r.error_message;
  EXPECT_TRUE(r.loaded_type_is_stub);
  const Event* g = Find(sink, Event::GLOBAL, "dynahug_absent_pkg.tools.run");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(Arg(*g, "resolved"), "stub");
  const Event* call =
      Find(sink, Event::PICKLE_CALL, "dynahug_absent_pkg.tools.run");
  ASSERT_NE(call, nullptr);
  EXPECT_EQ(Arg(*call, "stub"), "true");
  EXPECT_NE(Arg(*call, "0").find("--flag"), std::string::npos)
      << Arg(*call, "0");
  EXPECT_NE(Arg(*call, "1").find("42"), std::string::npos) << Arg(*call, "1");

  // Standard-library modules Debian ships in separate packages are present.
  for (const char* global :
       {"cidlelib.run\nExecutive\n.", "clib2to3.main\nmain\n.",
        "cdistutils.spawn\nspawn\n.", "censurepip\nbootstrap\n.",
        "cvenv\nEnvBuilder\n.", "ctkinter\nTk\n.", "cdbm.gnu\nopen\n."}) {
    TempPickle p(global);
    hooks::MemoryEventSink s2;
    LoadOptions o;
    o.loader = "pickle.load";
    absl::StatusOr<LoadResult> got = SharedLoader().Load(p.path(), o, s2);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->loaded) << global << ": " << got->error_type << " "
                             << got->error_message;
    EXPECT_FALSE(got->loaded_type_is_stub) << global;
    for (const Event* e : OfKind(s2, Event::GLOBAL)) {
      EXPECT_EQ(Arg(*e, "resolved"), "real") << e->name();
    }
  }
}

// The shutdown phase costs nothing and records nothing when the load left
// nothing to run.
TEST(EmbedLoaderShutdownTest, NothingPendingRunsNothing) {
  Loader& loader = SharedLoader();
  const DeferredWork before = loader.CaptureDeferred();
  hooks::MemoryEventSink load_sink;
  MustLoad("plain_p2.pkl", "pickle.load", load_sink);
  hooks::MemoryEventSink sink;
  absl::StatusOr<ShutdownResult> r =
      loader.RunShutdown(before, ShutdownOptions{}, sink);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ran);
  EXPECT_TRUE(sink.events().empty());
}

// What a load left behind (an atexit handler, a daemon thread that acts
// after 50 ms, a SIGALRM handler with an alarm 30 s away) runs in the
// shutdown phase, recorded between shutdown.begin and shutdown.end; the
// alarm is brought forward. Harmless probes: compile() of constants.
TEST(EmbedLoaderShutdownTest, RunsWhatTheLoadLeftBehindAndRecordsIt) {
  Loader& loader = SharedLoader();
  runtime::Interpreter& py = SharedInterpreter();
  const DeferredWork before = loader.CaptureDeferred();
  ASSERT_TRUE(py.Exec("import atexit, signal, threading, time\n"
                      "def _dh_exit():\n"
                      "    compile('1', '<dh-atexit>', 'eval')\n"
                      "atexit.register(_dh_exit)\n"
                      "def _dh_thread():\n"
                      "    time.sleep(0.05)\n"
                      "    compile('2', '<dh-thread>', 'eval')\n"
                      "threading.Thread(target=_dh_thread, daemon=True)"
                      ".start()\n"
                      "def _dh_alarm(*a):\n"
                      "    compile('3', '<dh-alarm>', 'eval')\n"
                      "signal.signal(signal.SIGALRM, _dh_alarm)\n"
                      "signal.alarm(30)\n")
                  .ok());
  hooks::MemoryEventSink sink;
  ShutdownOptions options;
  options.grace_ms = 2000;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ShutdownResult> r = loader.RunShutdown(before, options, sink);
  const double ms = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start)
                        .count();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ran);
  EXPECT_EQ(r->atexit_added, 1);
  EXPECT_EQ(r->threads_added, 1);
  EXPECT_EQ(r->timers_armed, 1);
  EXPECT_EQ(r->threads_left, 0);
  // Done when nothing is pending any more, well before the grace period.
  EXPECT_LT(ms, 1000);
  const std::vector<Event>& events = sink.events();
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.front().kind(), Event::LOG);
  EXPECT_EQ(events.front().name(), "shutdown.begin");
  EXPECT_EQ(Arg(events.front(), "atexit"), "1");
  EXPECT_EQ(events.back().name(), "shutdown.end");
  std::set<std::string> ran;
  for (const Event& e : events) {
    if (e.kind() == Event::AUDIT && e.name() == "compile") {
      ran.insert(Arg(e, "filename"));
    }
  }
  EXPECT_EQ(ran, (std::set<std::string>{"<dh-atexit>", "<dh-thread>",
                                        "<dh-alarm>"}));
  ASSERT_TRUE(py.Exec("import signal\n"
                      "signal.signal(signal.SIGALRM, signal.SIG_DFL)\n")
                  .ok());
}

// The grace period bounds the wait for a thread that does not finish.
TEST(EmbedLoaderShutdownTest, GracePeriodBoundsTheWait) {
  Loader& loader = SharedLoader();
  runtime::Interpreter& py = SharedInterpreter();
  const DeferredWork before = loader.CaptureDeferred();
  ASSERT_TRUE(py.Exec("import threading\n"
                      "_dh_stop = threading.Event()\n"
                      "threading.Thread(target=_dh_stop.wait, args=(30,),"
                      " daemon=True).start()\n"
                      "import sys\nsys._dh_stop = _dh_stop\n")
                  .ok());
  hooks::MemoryEventSink sink;
  ShutdownOptions options;
  options.grace_ms = 100;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ShutdownResult> r = loader.RunShutdown(before, options, sink);
  const double ms = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start)
                        .count();
  ASSERT_TRUE(py.Exec("import sys\nsys._dh_stop.set()\n").ok());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ran);
  EXPECT_EQ(r->threads_left, 1);
  EXPECT_GE(ms, 100);
  EXPECT_LT(ms, 1000);
  ASSERT_FALSE(sink.events().empty());
  EXPECT_EQ(Arg(sink.events().back(), "threads_left"), "1");
}

}  // namespace
}  // namespace dynahug::runtime

// Hand-built traces for the model tests: two task families shaped like real
// loads (a torch state dict, a scikit-learn estimator), with per-model
// variation, and a payload that can be injected into either. Deterministic:
// the same arguments give the same trace.
#ifndef DYNAHUG_TESTS_FEATURES_SYNTHETIC_TRACES_H_
#define DYNAHUG_TESTS_FEATURES_SYNTHETIC_TRACES_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>

#include "proto/dynahug.pb.h"

namespace dynahug::features::testing {

using Args = std::initializer_list<std::pair<std::string, std::string>>;

// A name of letters only for model `m` (the extractor folds digit runs, so
// "block7" and "block8" would be one token).
inline std::string LetterName(int m) {
  std::string s = "m";
  do {
    s.push_back(static_cast<char>('a' + m % 26));
    m /= 26;
  } while (m > 0);
  return s;
}

inline proto::Event* AddEvent(proto::Trace& t, proto::Event::Kind kind,
                              const std::string& name, Args args = {},
                              std::optional<uint64_t> offset = std::nullopt,
                              uint64_t count = 1) {
  proto::Event* e = t.add_events();
  e->set_kind(kind);
  e->set_name(name);
  for (const auto& [k, v] : args) {
    proto::Argument* a = e->add_args();
    a->set_key(k);
    a->set_value(v);
  }
  if (offset.has_value()) e->set_pickle_offset(*offset);
  e->set_count(count);
  return e;
}

inline void AddSyscall(proto::Trace& t, const std::string& name, uint64_t count,
                       uint64_t denied = 0) {
  proto::SyscallCount* s = t.add_syscalls();
  s->set_name(name);
  s->set_count(count);
  s->set_denied(denied);
}

// A global resolved by the unpickler at `offset`, with its static twin.
inline void AddGlobal(proto::Trace& t, const std::string& module,
                      const std::string& name, uint64_t offset) {
  AddEvent(t, proto::Event::AUDIT, "pickle.find_class",
           {{"module", module}, {"name", name}}, offset);
  AddEvent(t, proto::Event::GLOBAL, module + "." + name,
           {{"module", module},
            {"name", name},
            {"resolved", "real"},
            {"type", "builtins.type"}},
           offset);
  proto::GlobalRef* g = t.mutable_root()->mutable_pickles(0)->add_globals();
  g->set_module(module);
  g->set_name(name);
  g->set_offset(offset);
  g->set_opcode("GLOBAL");
  g->set_source("inline");
}

inline proto::Trace BaseTrace(const std::string& path, const char* loader,
                              proto::ContainerFormat format) {
  proto::Trace t;
  t.mutable_file()->set_path(path);
  t.set_loader(loader);
  t.mutable_root()->set_format(format);
  proto::PickleSummary* p = t.mutable_root()->add_pickles();
  p->set_length(400);
  p->set_protocol(2);
  p->set_complete(true);
  (*p->mutable_opcode_histogram())["REDUCE"] = 3;
  (*p->mutable_opcode_histogram())["GLOBAL"] = 2;
  t.mutable_exit()->set_status(proto::ChildExit::OK);
  AddEvent(t, proto::Event::AUDIT, "open",
           {{"path", "model-file"}, {"mode", "r"}});
  return t;
}

// A torch state dict of model `model` (architecture model % 4), saved as
// variant `variant` (extra tensors).
inline proto::Trace TorchTrace(int model, int variant) {
  static const char* kArch[] = {"resnet.ResNet", "vgg.VGG", "vit.ViT",
                                "mobilenet.MobileNet"};
  proto::Trace t = BaseTrace(
      "torch-" + std::to_string(model) + "-" + std::to_string(variant) + ".pt",
      "torch.load", proto::TORCH_ZIP);
  AddGlobal(t, "collections", "OrderedDict", 2);
  AddGlobal(t, "torch._utils", "_rebuild_tensor_v2", 40);
  AddGlobal(t, "torch", "FloatStorage", 60);
  if (model % 2 == 0) {
    AddGlobal(t, "torchvision.models", kArch[model % 4], 80);
  }
  const uint64_t tensors = 4 + (model * 7 + variant) % 9;
  AddEvent(t, proto::Event::PICKLE_CALL, "torch._utils._rebuild_tensor_v2",
           {{"op", "REDUCE"}, {"0", "obj:torch.storage.TypedStorage"}}, 100,
           tensors);
  AddEvent(t, proto::Event::PICKLE_CALL, "collections.OrderedDict",
           {{"op", "REDUCE"}}, 120, tensors);
  // Parameter names are the model's own: a token no other model has.
  AddEvent(t, proto::Event::PICKLE_CALL, "collections.OrderedDict.__dict__",
           {{"op", "BUILD"},
            {"kw:" + LetterName(model) + "_weight", "obj:torch.Tensor"}},
           380);
  AddEvent(t, proto::Event::PYTHON_CALL, "torch.serialization._load",
           {{"caller", "torch.serialization.load"}});
  AddEvent(t, proto::Event::LOG, "dynahug.load_result",
           {{"loaded", "true"}, {"type", "collections.OrderedDict"}});
  t.set_loaded_type("collections.OrderedDict");
  AddSyscall(t, "openat", 8 + model % 5);
  AddSyscall(t, "read", 20 + (model * 3 + variant) % 17);
  AddSyscall(t, "mmap", 3 + variant % 3);
  AddSyscall(t, "close", 8 + model % 5);
  return t;
}

// A scikit-learn estimator `model` (estimator model % 5) pickled as variant
// `variant`.
inline proto::Trace SklearnTrace(int model, int variant) {
  static const char* kEstimator[][2] = {
      {"sklearn.linear_model._logistic", "LogisticRegression"},
      {"sklearn.ensemble._forest", "RandomForestClassifier"},
      {"sklearn.svm._classes", "SVC"},
      {"sklearn.tree._classes", "DecisionTreeClassifier"},
      {"sklearn.preprocessing._data", "StandardScaler"}};
  proto::Trace t = BaseTrace(
      "sk-" + std::to_string(model) + "-" + std::to_string(variant) + ".pkl",
      "pickle.load", proto::RAW_PICKLE);
  const auto& est = kEstimator[model % 5];
  AddGlobal(t, est[0], est[1], 2);
  AddGlobal(t, "numpy.core.multiarray", "_reconstruct", 50);
  AddGlobal(t, "numpy", "ndarray", 70);
  AddGlobal(t, "numpy", "dtype", 90);
  const uint64_t arrays = 2 + (model * 5 + variant) % 6;
  AddEvent(t, proto::Event::PICKLE_CALL, "numpy.core.multiarray._reconstruct",
           {{"op", "REDUCE"}, {"0", "type:numpy.ndarray"}}, 110, arrays);
  AddEvent(t, proto::Event::PICKLE_CALL, std::string(est[0]) + "." + est[1],
           {{"op", "NEWOBJ"}}, 130);
  // Feature names fitted on: the model's own.
  AddEvent(t, proto::Event::PICKLE_CALL,
           std::string(est[0]) + "." + est[1] + ".__dict__",
           {{"op", "BUILD"},
            {"kw:feature_" + LetterName(model), "obj:numpy.ndarray"}},
           380);
  AddEvent(t, proto::Event::LOG, "dynahug.load_result",
           {{"loaded", "true"}, {"type", std::string(est[0]) + "." + est[1]}});
  t.set_loaded_type(std::string(est[0]) + "." + est[1]);
  AddSyscall(t, "openat", 2 + model % 3);
  AddSyscall(t, "read", 4 + (model + variant) % 7);
  AddSyscall(t, "close", 2 + model % 3);
  return t;
}

// Injects `os.system('/bin/true')` by REDUCE at offset 3 (before the host
// stream), with the clone the sandbox blocks.
inline proto::Trace WithPayload(proto::Trace t) {
  proto::Trace out = t;
  out.clear_events();
  AddEvent(out, proto::Event::AUDIT, "pickle.find_class",
           {{"module", "posix"}, {"name", "system"}}, 3);
  AddEvent(out, proto::Event::GLOBAL, "posix.system",
           {{"module", "posix"},
            {"name", "system"},
            {"resolved", "real"},
            {"type", "builtins.builtin_function_or_method"}},
           3);
  AddEvent(out, proto::Event::PICKLE_CALL, "posix.system",
           {{"op", "REDUCE"}, {"0", "str:/bin/true"}}, 28)
      ->set_member("archive/data.pkl");
  AddEvent(out, proto::Event::BLOCKED, "clone", {{"errno", "EPERM"}})
      ->set_blocked(true);
  AddEvent(out, proto::Event::AUDIT, "os.system", {{"executable", "/bin/true"}},
           28);
  for (const proto::Event& e : t.events()) *out.add_events() = e;
  AddSyscall(out, "clone", 1, 1);
  return out;
}

}  // namespace dynahug::features::testing

#endif  // DYNAHUG_TESTS_FEATURES_SYNTHETIC_TRACES_H_

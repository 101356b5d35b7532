// Trace -> sparse vector of named features (features/feature_space.h).
//
// FeatureExtractor reads a proto::Trace only: it builds and runs without an
// interpreter, and it never looks at the scanned file. Each family turns
// trace content into readable tokens (the grammar is in features/README.md),
// each token is hashed into its family's block, and its accumulated mass is
// scaled:
//   - count tokens: value = log1p(mass), where mass is the number of
//     occurrences (Event.count, SyscallCount.count, opcode counts...) times
//     the token's weight;
//   - presence tokens (syscall present, exit status, loader): value = the
//     largest weight seen (1 unless the token is a name-hierarchy level).
// Name hierarchies (module paths of globals, callees, imports, integrity
// finding names, loaded types) emit one token per level with weights of unit
// L2 norm decaying by ExtractOptions::hierarchy_decay per level.
//
// Example:
//   FeatureExtractor extractor({.families = FamilySet::SyscallOnly()});
//   SparseVector v = extractor.Extract(trace);
//   for (const Feature& f : v.entries()) use(v.Name(f.index), f.value);
//
// Thread safety: Extract is const and may be called from several threads.
#ifndef DYNAHUG_FEATURES_FEATURE_EXTRACTOR_H_
#define DYNAHUG_FEATURES_FEATURE_EXTRACTOR_H_

#include "features/feature_space.h"
#include "proto/dynahug.pb.h"

namespace dynahug::features {

struct ExtractOptions {
  // Families to extract; the others stay zero.
  FamilySet families = FamilySet::All();
  // Weight ratio between consecutive levels of a name hierarchy, in (0, 1].
  // 1 spreads a name's mass evenly over its levels; smaller values put more
  // of it on the top-level module (see features/README.md for what 0.5
  // means for unseen names). Values outside (0, 1] are clamped into it.
  double hierarchy_decay = 0.5;
  // Keep the readable tokens in Feature::tokens. Off saves memory when only
  // the numbers are needed (training on many traces).
  bool keep_names = true;
};

class FeatureExtractor {
 public:
  explicit FeatureExtractor(ExtractOptions options = {});

  // The feature vector of `trace`. Never fails: missing parts (no dynamic
  // part, no container tree) contribute nothing.
  SparseVector Extract(const proto::Trace& trace) const;

  const ExtractOptions& options() const { return options_; }

 private:
  ExtractOptions options_;
};

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_FEATURE_EXTRACTOR_H_

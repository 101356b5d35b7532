#include "runtime/scanner/precheck.h"

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "features/detector.h"
#include "runtime/container/inert_formats.h"

namespace dynahug::runtime {

proto::Verdict SkippedVerdict(std::string reason) {
  proto::Verdict v;
  v.set_label(proto::Verdict::SKIPPED);
  v.set_skip_reason(std::move(reason));
  return v;
}

std::optional<proto::Verdict> VerdictWithoutLoad(const std::string& path,
                                                 bool strict) {
  absl::StatusOr<InertCheck> check = CheckInertFile(path);
  if (!check.ok()) {
    return features::Detector::ErrorVerdict(
        std::string(check.status().message()));
  }
  if (check->kind == InertCheck::kSkip) {
    // strict: what dynahug cannot vouch for is not skipped but an error.
    return strict && !check->no_code_path
               ? features::Detector::ErrorVerdict(
                     absl::StrCat("--strict: ", check->reason))
               : SkippedVerdict(check->reason);
  }
  if (check->kind == InertCheck::kInvalid) {
    return features::Detector::ErrorVerdict(
        absl::StrCat(path, ": ", check->reason));
  }
  return std::nullopt;
}

const char* LabelName(proto::Verdict::Label label) {
  switch (label) {
    case proto::Verdict::BENIGN:
      return "benign";
    case proto::Verdict::MALICIOUS:
      return "malicious";
    case proto::Verdict::SKIPPED:
      return "skipped";
    default:
      return "error";
  }
}

}  // namespace dynahug::runtime

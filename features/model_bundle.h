// Model bundle files (proto/model_bundle.proto): one versioned,
// checksummed protobuf file holding a proto::ModelBundle.
//
// The file is a proto::ModelBundleFile: magic "dynahug-model-bundle",
// format_version, the serialized bundle and its SHA-256 (OpenSSL
// libcrypto). Serialization is deterministic (same bundle -> same bytes).
// Reading checks, in order, and fails with an absl::Status naming the file:
//   missing or unreadable file   NotFound / PermissionDenied / Internal
//   not a bundle envelope        DataLoss ("... is not a dynahug model bundle")
//   other format_version         FailedPrecondition ("format version 7, this
//                                dynahug reads version 1")
//   checksum mismatch            DataLoss ("... SHA-256 mismatch ...: the
//                                file is truncated or corrupted")
//   bundle does not parse        DataLoss
//   other feature-space version  FailedPrecondition
//   inconsistent contents        DataLoss (ValidateModelBundle)
//
// Thread safety: pure functions.
#ifndef DYNAHUG_FEATURES_MODEL_BUNDLE_H_
#define DYNAHUG_FEATURES_MODEL_BUNDLE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/model_bundle.pb.h"

namespace dynahug::features {

// Version of ModelBundleFile.bundle's meaning; bumped on any change of
// proto/model_bundle.proto semantics or of how the detector reads it.
inline constexpr uint32_t kModelBundleFormatVersion = 1;
inline constexpr std::string_view kModelBundleMagic = "dynahug-model-bundle";

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// The bytes of the bundle file for `bundle` (deterministic).
std::string SerializeModelBundle(const proto::ModelBundle& bundle);

// Parses file bytes; `name` is the file name used in error messages.
absl::StatusOr<proto::ModelBundle> ParseModelBundle(std::string_view bytes,
                                                    std::string_view name);

// Checks that a bundle is usable: feature-space version, at least one
// cluster, vocabulary sorted with one scale each, novelty scales complete,
// SVM arrays consistent, finite numbers. `name` is used in messages.
absl::Status ValidateModelBundle(const proto::ModelBundle& bundle,
                                 std::string_view name);

// Writes SerializeModelBundle(bundle) to `path` (through a temporary file
// and rename, so readers never see half a bundle).
absl::Status WriteModelBundle(const proto::ModelBundle& bundle,
                              const std::string& path);

// Reads and checks the bundle file at `path`.
absl::StatusOr<proto::ModelBundle> ReadModelBundle(const std::string& path);

}  // namespace dynahug::features

#endif  // DYNAHUG_FEATURES_MODEL_BUNDLE_H_

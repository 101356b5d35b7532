#include "features/model_bundle.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "features/feature_space.h"
#include "features/internal/str.h"
#include "features/novelty.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace dynahug::features {
namespace {

using internal::Cat;

constexpr size_t kSha256Bytes = 32;

std::string Sha256Raw(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

std::string Hex(std::string_view raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string SerializeDeterministic(const google::protobuf::MessageLite& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

bool AllFinite(const google::protobuf::RepeatedField<double>& values) {
  return std::all_of(values.begin(), values.end(),
                     [](double v) { return std::isfinite(v); });
}

absl::Status Bad(std::string_view name, std::string_view what) {
  return absl::DataLossError(Cat("model bundle ", name, ": ", what,
                                 " (retrain with `dynahug train`)"));
}

absl::Status ValidateCluster(const proto::TaskCluster& c,
                             std::string_view name) {
  const std::string where = Cat("cluster \"", c.name(), "\"");
  if (c.centroid_index_size() != c.centroid_value_size()) {
    return Bad(name, Cat(where, ": centroid arrays differ in length"));
  }
  if (!std::is_sorted(c.vocabulary().begin(), c.vocabulary().end()) ||
      std::adjacent_find(c.vocabulary().begin(), c.vocabulary().end()) !=
          c.vocabulary().end()) {
    return Bad(name, Cat(where, ": vocabulary is not sorted and unique"));
  }
  if (c.vocabulary_size() != c.scale_size()) {
    return Bad(name,
               Cat(where, ": ", c.vocabulary_size(), " vocabulary indices but ",
                   c.scale_size(), " scales"));
  }
  if (c.novelty_scale_size() != kNoveltyFeatureCount) {
    return Bad(name, Cat(where, ": ", c.novelty_scale_size(),
                         " novelty scales, expected ", kNoveltyFeatureCount));
  }
  if (c.novelty_reference_width() == 0 ||
      c.novelty_reference().size() !=
          static_cast<int64_t>(c.novelty_reference_width()) *
              kNoveltyFeatureCount) {
    return Bad(name, Cat(where, ": novelty reference table has ",
                         c.novelty_reference().size(), " values, expected ",
                         kNoveltyFeatureCount, " rows of ",
                         c.novelty_reference_width()));
  }
  for (int k = 0; k < kNoveltyFeatureCount; ++k) {
    const double* row =
        c.novelty_reference().data() + size_t(k) * c.novelty_reference_width();
    if (!std::is_sorted(row, row + c.novelty_reference_width())) {
      return Bad(name,
                 Cat(where, ": novelty reference row ", k, " is not sorted"));
    }
  }
  const proto::OneClassSvm& svm = c.svm();
  if (svm.coef_size() == 0 || svm.sv_start_size() != svm.coef_size() + 1 ||
      svm.index_size() != svm.value_size() || svm.sv_start(0) != 0 ||
      svm.sv_start(svm.sv_start_size() - 1) !=
          static_cast<uint32_t>(svm.index_size()) ||
      !std::is_sorted(svm.sv_start().begin(), svm.sv_start().end())) {
    return Bad(name, Cat(where, ": support vector arrays are inconsistent"));
  }
  if (!(svm.gamma() > 0) || !std::isfinite(svm.rho()) ||
      !std::isfinite(c.threshold()) || !AllFinite(svm.coef()) ||
      !AllFinite(svm.value()) || !AllFinite(c.scale()) ||
      !AllFinite(c.novelty_scale()) || !AllFinite(c.centroid_value()) ||
      !AllFinite(c.novelty_reference())) {
    return Bad(name, Cat(where, ": non-finite or invalid numbers"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Sha256Hex(std::string_view data) { return Hex(Sha256Raw(data)); }

std::string SerializeModelBundle(const proto::ModelBundle& bundle) {
  proto::ModelBundleFile file;
  file.set_magic(std::string(kModelBundleMagic));
  file.set_format_version(kModelBundleFormatVersion);
  file.set_bundle(SerializeDeterministic(bundle));
  file.set_sha256(Sha256Raw(file.bundle()));
  return SerializeDeterministic(file);
}

absl::Status ValidateModelBundle(const proto::ModelBundle& bundle,
                                 std::string_view name) {
  if (bundle.feature_space_version() != kFeatureSpaceVersion) {
    return absl::FailedPreconditionError(
        Cat("model bundle ", name, ": trained with feature space version ",
            bundle.feature_space_version(), ", this dynahug extracts version ",
            kFeatureSpaceVersion, " (retrain with `dynahug train`)"));
  }
  if (FamilySet::FromBits(bundle.extraction().families()).empty()) {
    return Bad(name, "no feature family selected");
  }
  if (bundle.clusters_size() == 0) return Bad(name, "no task cluster");
  for (const proto::TaskCluster& c : bundle.clusters()) {
    if (absl::Status s = ValidateCluster(c, name); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<proto::ModelBundle> ParseModelBundle(std::string_view bytes,
                                                    std::string_view name) {
  proto::ModelBundleFile file;
  if (!file.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      file.magic() != kModelBundleMagic) {
    return absl::DataLossError(
        Cat("model bundle ", name, ": not a dynahug model bundle (",
            bytes.size(), " bytes, no \"", kModelBundleMagic,
            "\" envelope): truncated, corrupted or another kind of file"));
  }
  if (file.format_version() != kModelBundleFormatVersion) {
    return absl::FailedPreconditionError(
        Cat("model bundle ", name, ": format version ", file.format_version(),
            ", this dynahug reads version ", kModelBundleFormatVersion));
  }
  if (file.sha256().size() != kSha256Bytes ||
      Sha256Raw(file.bundle()) != file.sha256()) {
    return absl::DataLossError(
        Cat("model bundle ", name, ": SHA-256 mismatch (stored ",
            Hex(file.sha256()), ", computed ", Sha256Hex(file.bundle()),
            "): the file is truncated or corrupted"));
  }
  proto::ModelBundle bundle;
  if (!bundle.ParseFromString(file.bundle())) {
    return Bad(name, "the checksummed bundle does not parse");
  }
  if (absl::Status s = ValidateModelBundle(bundle, name); !s.ok()) return s;
  return bundle;
}

absl::Status WriteModelBundle(const proto::ModelBundle& bundle,
                              const std::string& path) {
  const std::string bytes = SerializeModelBundle(bundle);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      return absl::PermissionDeniedError(Cat("model bundle ", path,
                                             ": cannot create ", tmp, ": ",
                                             std::strerror(errno)));
    }
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      const int err = errno;
      std::remove(tmp.c_str());
      return absl::InternalError(Cat("model bundle ", path, ": writing ", tmp,
                                     " failed: ", std::strerror(err)));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(Cat("model bundle ", path, ": rename from ", tmp,
                                   " failed: ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<proto::ModelBundle> ReadModelBundle(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string msg =
        Cat("model bundle ", path, ": cannot open: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::InternalError(Cat("model bundle ", path, ": read failed"));
  }
  return ParseModelBundle(buffer.str(), path);
}

}  // namespace dynahug::features

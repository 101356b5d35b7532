// libFuzzer target: reading a model bundle file (checksum, version and
// consistency checks of features/model_bundle.h) from arbitrary bytes; a
// bundle that passes must also load into a Detector. Seeds:
// corpus/model_bundle/.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "features/detector.h"
#include "features/model_bundle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bundle = dynahug::features::ParseModelBundle(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.dhm");
  if (bundle.ok()) {
    (void)dynahug::features::Detector::FromBundle(std::move(*bundle), "fuzz");
  }
  return 0;
}

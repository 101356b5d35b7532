// Test helpers that compress bytes with the system libraries.
#ifndef DYNAHUG_TESTS_RUNTIME_COMPRESS_UTIL_H_
#define DYNAHUG_TESTS_RUNTIME_COMPRESS_UTIL_H_

#include <bzlib.h>
#include <lzma.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/container/decompress.h"

namespace dynahug::runtime::testing {

inline std::vector<uint8_t> Compress(Codec codec, const std::string& in) {
  std::vector<uint8_t> out(in.size() * 2 + 1024);
  if (codec == Codec::kBzip2) {
    unsigned len = static_cast<unsigned>(out.size());
    BZ2_bzBuffToBuffCompress(reinterpret_cast<char*>(out.data()), &len,
                             const_cast<char*>(in.data()),
                             static_cast<unsigned>(in.size()), 9, 0, 0);
    out.resize(len);
    return out;
  }
  if (codec == Codec::kXz || codec == Codec::kLzmaAlone) {
    lzma_stream ls = LZMA_STREAM_INIT;
    if (codec == Codec::kXz) {
      if (lzma_easy_encoder(&ls, 6, LZMA_CHECK_CRC64) != LZMA_OK) return {};
    } else {
      lzma_options_lzma opt;
      lzma_lzma_preset(&opt, 6);
      if (lzma_alone_encoder(&ls, &opt) != LZMA_OK) return {};
    }
    ls.next_in = reinterpret_cast<const uint8_t*>(in.data());
    ls.avail_in = in.size();
    ls.next_out = out.data();
    ls.avail_out = out.size();
    if (lzma_code(&ls, LZMA_FINISH) != LZMA_STREAM_END) out.clear();
    out.resize(out.size() - ls.avail_out);
    lzma_end(&ls);
    return out;
  }
  int window = codec == Codec::kDeflateRaw ? -15
               : codec == Codec::kGzip     ? 31
                                           : 15;
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, window, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

inline uint32_t Crc32(const std::string& s) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(s.data()),
            static_cast<uInt>(s.size())));
}

}  // namespace dynahug::runtime::testing

#endif  // DYNAHUG_TESTS_RUNTIME_COMPRESS_UTIL_H_

#include "runtime/container/decompress.h"

#include <bzlib.h>
#include <lzma.h>
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dynahug::runtime {
namespace {

constexpr size_t kChunk = size_t{1} << 16;
constexpr uint64_t kMaxInitialReserve = uint64_t{64} << 20;

// Output sink shared by the codecs: grows `data` chunk by chunk, never past
// `max_output`.
class Output {
 public:
  Output(uint64_t max_output, uint64_t size_hint) : max_(max_output) {
    uint64_t reserve = std::min({size_hint, max_output, kMaxInitialReserve});
    data_.reserve(static_cast<size_t>(reserve));
  }
  // Prepares room for up to kChunk more bytes; returns the writable size
  // (0 when the limit is reached).
  size_t Prepare() {
    uint64_t room = max_ - used_;
    size_t want = static_cast<size_t>(std::min<uint64_t>(room, kChunk));
    if (data_.size() < used_ + want) data_.resize(used_ + want);
    return want;
  }
  uint8_t* write_ptr() { return data_.data() + used_; }
  void Commit(size_t n) { used_ += n; }
  bool full() const { return used_ >= max_; }
  uint64_t used() const { return used_; }
  std::vector<uint8_t> Take() {
    data_.resize(used_);
    data_.shrink_to_fit();
    return std::move(data_);
  }

 private:
  uint64_t max_;
  uint64_t used_ = 0;
  std::vector<uint8_t> data_;
};

absl::Status TooBig(Codec codec, uint64_t max_output) {
  return absl::ResourceExhaustedError(
      absl::StrCat(std::string(CodecName(codec)), ": would expand past ", max_output,
                   " bytes"));
}

absl::Status Corrupt(Codec codec, uint64_t offset, std::string_view what) {
  return absl::DataLossError(absl::StrCat(std::string(CodecName(codec)),
                                          ": corrupt data at input offset ",
                                          offset, ": ", std::string(what)));
}

absl::Status Truncated(Codec codec, uint64_t consumed, uint64_t produced) {
  return absl::DataLossError(absl::StrCat(std::string(CodecName(codec)),
                                          ": input truncated after ", consumed,
                                          " bytes (", produced,
                                          " bytes produced)"));
}

// Common ending: decide between limit / truncation / success.
absl::StatusOr<Decompressed> Finish(Codec codec, Output& out, bool ended,
                                    bool limit_reached, uint64_t consumed,
                                    uint64_t max_output, bool stop_at_limit) {
  if (limit_reached && !ended) {
    if (!stop_at_limit) return TooBig(codec, max_output);
    Decompressed d;
    d.consumed = consumed;
    d.hit_limit = true;
    d.data = out.Take();
    return d;
  }
  if (!ended && !stop_at_limit) return Truncated(codec, consumed, out.used());
  Decompressed d;
  d.consumed = consumed;
  d.complete = ended;
  d.data = out.Take();
  return d;
}

absl::StatusOr<Decompressed> RunZlib(Codec codec,
                                     std::span<const uint8_t> input,
                                     uint64_t max_output, bool stop_at_limit,
                                     uint64_t size_hint) {
  int window = codec == Codec::kDeflateRaw ? -15
               : codec == Codec::kGzip     ? 15 + 16
                                           : 15;
  z_stream zs{};
  if (inflateInit2(&zs, window) != Z_OK) {
    return absl::InternalError("zlib: inflateInit2 failed");
  }
  struct Guard {
    z_stream* zs;
    ~Guard() { inflateEnd(zs); }
  } guard{&zs};
  Output out(max_output, size_hint);
  uint64_t in_pos = 0;
  bool ended = false;
  bool limit_reached = false;
  for (;;) {
    if (zs.avail_in == 0 && in_pos < input.size()) {
      size_t take =
          static_cast<size_t>(std::min<uint64_t>(input.size() - in_pos, UINT_MAX));
      zs.next_in = const_cast<Bytef*>(input.data() + in_pos);
      zs.avail_in = static_cast<uInt>(take);
      in_pos += take;
    }
    size_t room = out.Prepare();
    if (room == 0) {
      // Limit reached: is there more output? Probe with one byte.
      uint8_t probe;
      zs.next_out = &probe;
      zs.avail_out = 1;
      int rc = inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_STREAM_END && zs.avail_out == 1) {
        ended = true;
      } else if (zs.avail_out == 0 || rc == Z_OK) {
        limit_reached = true;
      } else if (rc == Z_BUF_ERROR) {
        // No more input: truncated at exactly the limit.
      } else {
        return Corrupt(codec, in_pos - zs.avail_in,
                       zs.msg ? zs.msg : "inflate failed");
      }
      break;
    }
    zs.next_out = out.write_ptr();
    zs.avail_out = static_cast<uInt>(room);
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.Commit(room - zs.avail_out);
    if (rc == Z_STREAM_END) {
      uint64_t consumed_now = in_pos - zs.avail_in;
      // Concatenated gzip members, as Python's gzip module reads them.
      if (codec == Codec::kGzip && consumed_now + 2 <= input.size() &&
          input[consumed_now] == 0x1f && input[consumed_now + 1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      ended = true;
      break;
    }
    if (rc == Z_BUF_ERROR) {
      if (zs.avail_in == 0 && in_pos >= input.size()) break;  // truncated
      continue;
    }
    if (rc != Z_OK) {
      return Corrupt(codec, in_pos - zs.avail_in,
                     zs.msg ? zs.msg : "inflate failed");
    }
    if (zs.avail_in == 0 && in_pos >= input.size() && zs.avail_out != 0) {
      break;  // all input used, stream not ended: truncated
    }
  }
  return Finish(codec, out, ended, limit_reached, in_pos - zs.avail_in,
                max_output, stop_at_limit);
}

absl::StatusOr<Decompressed> RunBzip2(std::span<const uint8_t> input,
                                      uint64_t max_output, bool stop_at_limit,
                                      uint64_t size_hint) {
  const Codec codec = Codec::kBzip2;
  Output out(max_output, size_hint);
  uint64_t stream_start = 0;
  bool ended = false;
  bool limit_reached = false;
  uint64_t consumed = 0;
  // One bz_stream per concatenated stream.
  while (stream_start < input.size()) {
    bz_stream bs{};
    if (BZ2_bzDecompressInit(&bs, 0, 0) != BZ_OK) {
      return absl::InternalError("bzip2: BZ2_bzDecompressInit failed");
    }
    struct Guard {
      bz_stream* bs;
      ~Guard() { BZ2_bzDecompressEnd(bs); }
    } guard{&bs};
    uint64_t in_pos = stream_start;
    ended = false;
    for (;;) {
      if (bs.avail_in == 0 && in_pos < input.size()) {
        size_t take = static_cast<size_t>(
            std::min<uint64_t>(input.size() - in_pos, UINT_MAX));
        bs.next_in = reinterpret_cast<char*>(
            const_cast<uint8_t*>(input.data() + in_pos));
        bs.avail_in = static_cast<unsigned>(take);
        in_pos += take;
      }
      size_t room = out.Prepare();
      uint8_t probe;
      bool probing = room == 0;
      bs.next_out = probing ? reinterpret_cast<char*>(&probe)
                            : reinterpret_cast<char*>(out.write_ptr());
      bs.avail_out = probing ? 1 : static_cast<unsigned>(room);
      int rc = BZ2_bzDecompress(&bs);
      if (!probing) out.Commit(room - bs.avail_out);
      if (rc == BZ_STREAM_END) {
        if (probing && bs.avail_out == 0) limit_reached = true;
        ended = !limit_reached;
        break;
      }
      if (rc != BZ_OK) {
        return Corrupt(codec, in_pos - bs.avail_in,
                       absl::StrCat("BZ2_bzDecompress returned ", rc));
      }
      if (probing) {
        if (bs.avail_out == 0) limit_reached = true;
        break;
      }
      if (bs.avail_in == 0 && in_pos >= input.size() && bs.avail_out != 0) {
        break;  // truncated
      }
    }
    consumed = in_pos - bs.avail_in;
    if (!ended || limit_reached) break;
    // Another stream follows only if it starts with the bzip2 magic.
    if (consumed + 3 <= input.size() && input[consumed] == 'B' &&
        input[consumed + 1] == 'Z' && input[consumed + 2] == 'h') {
      stream_start = consumed;
      continue;
    }
    break;
  }
  return Finish(codec, out, ended, limit_reached, consumed, max_output,
                stop_at_limit);
}

absl::StatusOr<Decompressed> RunLzma(Codec codec,
                                     std::span<const uint8_t> input,
                                     uint64_t max_output, bool stop_at_limit,
                                     uint64_t size_hint) {
  // Memory limit for the decoder's dictionary: 1 GiB is far beyond what
  // any real preset needs, and bounds hostile headers.
  constexpr uint64_t kMemLimit = uint64_t{1} << 30;
  static constexpr uint8_t kXzMagic[6] = {0xFD, '7', 'z', 'X', 'Z', 0};
  Output out(max_output, size_hint);
  bool ended = false;
  bool limit_reached = false;
  uint64_t stream_start = 0;
  uint64_t consumed = 0;
  // One decoder per concatenated xz stream (stream padding skipped), so
  // that trailing non-xz bytes end the data instead of failing it.
  for (;;) {
    lzma_stream ls = LZMA_STREAM_INIT;
    lzma_ret init = codec == Codec::kXz
                        ? lzma_stream_decoder(&ls, kMemLimit, 0)
                        : lzma_alone_decoder(&ls, kMemLimit);
    if (init != LZMA_OK) {
      return absl::InternalError(absl::StrCat(std::string(CodecName(codec)),
                                              ": decoder init failed (",
                                              static_cast<int>(init), ")"));
    }
    struct Guard {
      lzma_stream* ls;
      ~Guard() { lzma_end(ls); }
    } guard{&ls};
    ls.next_in = input.data() + stream_start;
    ls.avail_in = input.size() - stream_start;
    ended = false;
    for (;;) {
      size_t room = out.Prepare();
      uint8_t probe;
      bool probing = room == 0;
      ls.next_out = probing ? &probe : out.write_ptr();
      ls.avail_out = probing ? 1 : room;
      lzma_ret rc = lzma_code(&ls, LZMA_FINISH);
      if (!probing) out.Commit(room - ls.avail_out);
      if (probing) {
        if (ls.avail_out == 0) {
          limit_reached = true;
        } else if (rc == LZMA_STREAM_END) {
          ended = true;
        } else if (rc != LZMA_OK && rc != LZMA_BUF_ERROR) {
          return Corrupt(codec, stream_start + ls.total_in,
                         absl::StrCat("lzma_code returned ",
                                      static_cast<int>(rc)));
        }
        break;
      }
      if (rc == LZMA_STREAM_END) {
        ended = true;
        break;
      }
      if (rc == LZMA_BUF_ERROR) break;  // truncated
      if (rc == LZMA_MEMLIMIT_ERROR) {
        return absl::ResourceExhaustedError(
            absl::StrCat(std::string(CodecName(codec)),
                         ": decoder needs more than ", kMemLimit,
                         " bytes of memory"));
      }
      if (rc != LZMA_OK) {
        const char* what = rc == LZMA_FORMAT_ERROR   ? "not in this format"
                           : rc == LZMA_DATA_ERROR   ? "data error"
                           : rc == LZMA_OPTIONS_ERROR ? "unsupported options"
                                                      : "decoder error";
        return Corrupt(codec, stream_start + ls.total_in, what);
      }
      if (ls.avail_in == 0 && ls.avail_out != 0) break;  // truncated
    }
    consumed = stream_start + ls.total_in;
    if (!ended || limit_reached || codec != Codec::kXz) break;
    uint64_t next = consumed;
    while (next + 4 <= input.size() && input[next] == 0 &&
           input[next + 1] == 0 && input[next + 2] == 0 &&
           input[next + 3] == 0) {
      next += 4;
    }
    if (input.size() - next >= sizeof(kXzMagic) &&
        std::memcmp(input.data() + next, kXzMagic, sizeof(kXzMagic)) == 0) {
      stream_start = next;
      continue;
    }
    consumed = next;
    break;
  }
  return Finish(codec, out, ended, limit_reached, consumed, max_output,
                stop_at_limit);
}

}  // namespace

std::string_view CodecName(Codec codec) {
  switch (codec) {
    case Codec::kDeflateRaw:
      return "deflate";
    case Codec::kZlib:
      return "zlib";
    case Codec::kGzip:
      return "gzip";
    case Codec::kBzip2:
      return "bzip2";
    case Codec::kXz:
      return "xz";
    case Codec::kLzmaAlone:
      return "lzma";
  }
  return "unknown";
}

absl::StatusOr<Decompressed> Decompress(Codec codec,
                                        std::span<const uint8_t> input,
                                        uint64_t max_output,
                                        bool stop_at_limit,
                                        uint64_t size_hint) {
  switch (codec) {
    case Codec::kDeflateRaw:
    case Codec::kZlib:
    case Codec::kGzip:
      return RunZlib(codec, input, max_output, stop_at_limit, size_hint);
    case Codec::kBzip2:
      return RunBzip2(input, max_output, stop_at_limit, size_hint);
    case Codec::kXz:
    case Codec::kLzmaAlone:
      return RunLzma(codec, input, max_output, stop_at_limit, size_hint);
  }
  return absl::InvalidArgumentError("unknown codec");
}

}  // namespace dynahug::runtime

#include "runtime/trace/static_trace.h"

#include "hooks/pickle_opcodes.h"

namespace dynahug::runtime {

proto::ContainerFormat ToProto(Format format) {
  switch (format) {
    case Format::kData:
      return proto::DATA;
    case Format::kRawPickle:
      return proto::RAW_PICKLE;
    case Format::kTorchZip:
      return proto::TORCH_ZIP;
    case Format::kTorchScriptZip:
      return proto::TORCHSCRIPT_ZIP;
    case Format::kTorchLegacy:
      return proto::TORCH_LEGACY;
    case Format::kTorchLegacyTar:
      return proto::TORCH_LEGACY_TAR;
    case Format::kJoblib:
      return proto::JOBLIB;
    case Format::kNumpyNpy:
      return proto::NUMPY_NPY;
    case Format::kNumpyNpz:
      return proto::NUMPY_NPZ;
    case Format::kZip:
      return proto::ZIP;
    case Format::kSevenZip:
      return proto::SEVEN_ZIP;
    case Format::kTar:
      return proto::TAR;
    case Format::kGzip:
      return proto::GZIP;
    case Format::kBzip2:
      return proto::BZIP2;
    case Format::kXz:
      return proto::XZ;
    case Format::kLzma:
      return proto::LZMA;
    case Format::kZlib:
      return proto::ZLIB;
  }
  return proto::FORMAT_UNSPECIFIED;
}

proto::PickleSummary ToProto(const hooks::PickleStream& stream,
                             const std::vector<std::string>& member_path) {
  proto::PickleSummary summary;
  for (const auto& name : member_path) {
    summary.mutable_location()->add_member_path(name);
  }
  summary.mutable_location()->set_offset(stream.offset);
  summary.set_length(stream.length);
  summary.set_protocol(static_cast<uint32_t>(stream.stats.protocol));
  summary.set_opcode_count(stream.stats.opcode_count);
  auto& histogram = *summary.mutable_opcode_histogram();
  for (int code = 0; code < 256; ++code) {
    const uint64_t n = stream.stats.histogram[static_cast<size_t>(code)];
    if (n == 0) continue;
    histogram[std::string(hooks::OpcodeName(static_cast<hooks::Opcode>(code)))] =
        n;
  }
  summary.set_max_stack_depth(stream.stats.max_stack_depth);
  summary.set_memo_size(stream.stats.memo_size);
  summary.set_call_count(stream.stats.call_count);
  for (const auto& g : stream.globals) {
    proto::GlobalRef* ref = summary.add_globals();
    ref->set_module(g.module);
    ref->set_name(g.name);
    ref->set_offset(g.offset);
    ref->set_opcode(std::string(hooks::OpcodeName(g.opcode)));
    ref->set_source(std::string(hooks::SourceName(g.source)));
  }
  summary.set_complete(stream.complete);
  if (stream.error) {
    summary.set_error(stream.error->message);
    summary.set_error_offset(stream.error->offset);
  }
  for (const auto& nested : stream.nested) {
    *summary.add_nested() = ToProto(nested, member_path);
  }
  return summary;
}

proto::Member ToProto(const Member& member,
                      std::vector<std::string>& member_path) {
  proto::Member out;
  out.set_name(member.name);
  out.set_format(ToProto(member.format));
  out.set_size(member.size);
  out.set_stored_size(member.stored_size);
  for (const auto& note : member.notes) out.add_notes(note);
  out.set_error(member.error);
  for (const auto& stream : member.pickles) {
    *out.add_pickles() = ToProto(stream, member_path);
  }
  for (const auto& child : member.children) {
    member_path.push_back(child.name);
    *out.add_children() = ToProto(child, member_path);
    member_path.pop_back();
  }
  return out;
}

proto::Trace StaticTrace(const AnalyzedFile& file) {
  proto::Trace trace;
  trace.set_version(kTraceVersion);
  trace.mutable_file()->set_path(file.path());
  trace.mutable_file()->set_size(file.size());
  trace.mutable_file()->set_sha256(file.sha256());
  trace.mutable_file()->set_content_key(file.content_key());
  trace.mutable_file()->set_unread_bytes(file.unread_bytes());
  std::vector<std::string> path;
  *trace.mutable_root() = ToProto(file.root(), path);
  return trace;
}

}  // namespace dynahug::runtime

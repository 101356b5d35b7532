#include "hooks/pickle_decoder.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>

#include "hooks/internal/py_literals.h"

namespace dynahug::hooks {
namespace {

constexpr uint8_t kHighestProtocol = 5;
// Dict items remembered per dict (only small state dicts matter to the
// symbolic model: joblib wrapper states and numpy dtype metadata).
constexpr uint32_t kMaxTrackedDictItems = 64;
constexpr uint32_t kNoIndex = std::numeric_limits<uint32_t>::max();

// ---------------------------------------------------------------------------
// Small readers.

inline uint16_t Le16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t Le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t Le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

using internal::AppendUtf8;
using internal::EscapeDecode;
using internal::IsAscii;
using internal::IsUtf8Surrogatepass;
using internal::Latin1ToUtf8;
using internal::ParsePyDecimal;
using internal::ParsePyFloat;
using internal::RawUnicodeEscape;
using internal::StripPySpace;

// Printable, bounded rendering of untrusted text for error messages.
std::string Printable(std::string_view s, size_t max = 40) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// The distance in bytes from `from` to `to` (>= from).
template <typename T>
inline size_t ByteDistance(const T* from, const T* to) {
  return static_cast<size_t>(reinterpret_cast<const char*>(to) -
                             reinterpret_cast<const char*>(from));
}

// ---------------------------------------------------------------------------
// Symbolic values.

enum class VKind : uint8_t {
  kUnset,  // memo sentinel
  kNone,
  kBool,
  kInt,     // payload = int64
  kBigInt,
  kFloat,
  kStr,     // payload = position in data, aux = length, flags: StrEnc
  kBytes,   // payload = position, aux = length
  kGlobal,  // payload = index into PickleStream::globals, aux = Special
  kTuple,   // payload = index into tuple_items_, aux = count
  kList,
  kDict,    // payload = index into dicts_
  kSet,
  kFrozenSet,
  kObject,  // payload = index into objects_
  kOpaque,
};

// How a kStr's bytes encode the Python str.
enum StrEnc : uint8_t {
  kEncUtf8 = 0,        // BINUNICODE*, SHORT_BINUNICODE
  kEncRawUnicode = 1,  // UNICODE
  kEncQuoted = 2,      // STRING: the quoted repr, quotes included
  kEncLatin1 = 3,      // BINSTRING, SHORT_BINSTRING
  kEncMask = 3,
};
constexpr uint8_t kViaMemo = 0x80;  // flags bit: value came from a memo GET

// Globals the symbolic model knows about.
enum Special : uint32_t {
  kSpecialNone = 0,
  kSpecialArrayWrapper = 1,  // joblib.numpy_pickle.NumpyArrayWrapper
  kSpecialDtype = 2,         // numpy.dtype
  kSpecialReconstructor = 3, // copyreg._reconstructor
  kSpecialCodecsEncode = 4,  // _codecs.encode: protocol-2 bytes
};

struct Value {
  VKind kind = VKind::kNone;
  uint8_t flags = 0;
  uint16_t reserved = 0;
  uint32_t aux = 0;
  uint64_t payload = 0;
};
static_assert(sizeof(Value) == 16);

// What a memo GET of a slot that holds only a kind (Memo::kKindTag) yields,
// by kind: no contents, a payload that is no side-table index.
constexpr int kNumKinds = static_cast<int>(VKind::kOpaque) + 1;
static_assert(kNumKinds == 16);  // indexed with kind & 0xF
constexpr std::array<Value, kNumKinds> kMemoKindValues = [] {
  std::array<Value, kNumKinds> values{};
  for (int k = 0; k < kNumKinds; ++k) {
    values[k].kind = static_cast<VKind>(k);
    values[k].flags = kViaMemo;
    values[k].payload = kNoIndex;
  }
  return values;
}();

struct DictRec {
  uint32_t head = kNoIndex;
  uint32_t tail = kNoIndex;
  uint32_t count = 0;
};
struct DictItem {
  Value key;
  Value value;
  uint32_t next = kNoIndex;
};
struct ObjectRec {
  uint32_t special = kSpecialNone;
  Value args;   // REDUCE arguments (a tuple) when known
  Value state;  // last BUILD state
  bool has_state = false;
};

// ---------------------------------------------------------------------------
// A stack of trivially copyable T whose hot operations are always inlined
// (std::vector's push_back/resize are not, at -O2, in the decoder's large
// loop). Only ever shrinks through resize().
template <typename T>
class RawStack {
 public:
  RawStack() = default;
  RawStack(const RawStack&) = delete;
  RawStack& operator=(const RawStack&) = delete;
  ~RawStack() { std::free(data_); }

  [[gnu::always_inline]] size_t size() const { return size_; }
  [[gnu::always_inline]] bool empty() const { return size_ == 0; }
  [[gnu::always_inline]] T& back() { return data_[size_ - 1]; }
  [[gnu::always_inline]] const T& back() const { return data_[size_ - 1]; }
  [[gnu::always_inline]] T& operator[](size_t i) { return data_[i]; }
  [[gnu::always_inline]] const T& operator[](size_t i) const {
    return data_[i];
  }
  [[gnu::always_inline]] T* data() { return data_; }
  [[gnu::always_inline]] size_t capacity() const { return capacity_; }
  // Sets the size to n <= capacity(); the items up to n must have been
  // written through data().
  [[gnu::always_inline]] void set_size(size_t n) { size_ = n; }
  [[gnu::always_inline]] const T* begin() const { return data_; }
  [[gnu::always_inline]] const T* end() const { return data_ + size_; }
  [[gnu::always_inline]] void pop_back() { --size_; }
  [[gnu::always_inline]] void resize(size_t n) { size_ = n; }  // shrink only
  [[gnu::always_inline]] void push_back(const T& v) {
    if (size_ == capacity_) [[unlikely]] Grow();
    data_[size_++] = v;
  }
  // Grows to n >= size() items; the new ones are zero bytes.
  void ResizeZeroed(size_t n) {
    while (capacity_ < n) Grow();
    std::memset(static_cast<void*>(data_ + size_), 0, (n - size_) * sizeof(T));
    size_ = n;
  }

 private:
  [[gnu::noinline]] void Grow() {
    const size_t cap = capacity_ == 0 ? 256 : capacity_ * 2;
    void* p = std::realloc(data_, cap * sizeof(T));
    if (p == nullptr) std::abort();  // out of memory, like std::vector
    data_ = static_cast<T*>(p);
    capacity_ = cap;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// ---------------------------------------------------------------------------
// Memo: dense table for small indices, hash map for sparse huge ones. The
// dense part never grows past 2 * entries + 4096 slots, so its size is
// bounded by the number of PUTs actually present. A dense slot is 4 bytes:
// 0 = unset, otherwise an index into values_ (values that matter to the
// symbolic model) or, for values whose contents never matter (None, lists,
// floats... outside joblib tracking), just their kind.
class Memo {
 public:
  static constexpr uint32_t kKindTag = 0x80000000u;

  [[gnu::always_inline]] void Put(uint64_t idx, const Value& v,
                                  bool keep_value) {
    const uint32_t slot = Encode(v, keep_value);
    if (idx < dense_.size()) {
      if (dense_[idx] == 0) ++count_;
      dense_[idx] = slot;
      return;
    }
    if (idx == dense_.size()) {  // MEMOIZE and sequential PUTs
      dense_.push_back(slot);
      ++count_;
      return;
    }
    if (idx < 2 * count_ + 4096) {
      dense_.ResizeZeroed(idx + 1);
      dense_[idx] = slot;
      ++count_;
      return;
    }
    auto [it, inserted] = sparse_.try_emplace(idx, v);
    if (inserted) {
      ++count_;
    } else {
      it->second = v;
    }
  }
  // Copies the value at idx into *out; false when the slot is unset.
  bool Get(uint64_t idx, Value* out) const {
    if (idx < dense_.size()) {
      const uint32_t slot = dense_[idx];
      if (slot == 0) return false;
      if (slot & kKindTag) {
        // Kind only: no contents. payload must not look like an index into
        // any side table (dicts_, objects_, ...), aux like a length.
        *out = Value();
        out->kind = static_cast<VKind>(slot & 0xFF);
        out->payload = kNoIndex;
      } else {
        *out = values_[slot - 1];
      }
      return true;
    }
    if (sparse_.empty()) return false;
    auto it = sparse_.find(idx);
    if (it == sparse_.end()) return false;
    *out = it->second;
    return true;
  }
  uint64_t size() const { return count_; }

  // Fast paths for the decoder's hot loop, done only when they need no
  // allocation; false means nothing was done. TryPutKind is Put(idx, v,
  // false) for a value v of kind `kind`, TryAppendKind is the same with
  // idx = size() (MEMOIZE).
  [[gnu::always_inline]] bool TryAppendKind(VKind kind) {
    const size_t size = dense_.size();
    if (count_ != size || size == dense_.capacity()) return false;
    dense_.push_back(kKindTag | static_cast<uint32_t>(kind));
    ++count_;
    return true;
  }
  [[gnu::always_inline]] bool TryPutKind(uint64_t idx, VKind kind) {
    const uint32_t slot = kKindTag | static_cast<uint32_t>(kind);
    const size_t size = dense_.size();
    if (idx < size) {
      count_ += dense_[idx] == 0;
      dense_[idx] = slot;
      return true;
    }
    if (idx != size || size == dense_.capacity()) return false;
    dense_.push_back(slot);
    ++count_;
    return true;
  }
  // The dense slot of idx (0 when unset or not dense), and the value a
  // non-zero slot without kKindTag stands for.
  [[gnu::always_inline]] uint32_t DenseSlot(uint64_t idx) const {
    return idx < dense_.size() ? dense_[idx] : 0;
  }
  [[gnu::always_inline]] const Value& SlotValue(uint32_t slot) const {
    return values_[slot - 1];
  }

 private:
  uint32_t Encode(const Value& v, bool keep_value) {
    if (!keep_value || values_.size() >= kKindTag - 1) {
      return kKindTag | static_cast<uint32_t>(v.kind);
    }
    values_.push_back(v);
    return static_cast<uint32_t>(values_.size());
  }

  // Grown with realloc (large buffers are remapped, not copied and
  // faulted in again), like the value stack.
  RawStack<uint32_t> dense_;
  std::vector<Value> values_;
  std::unordered_map<uint64_t, Value> sparse_;
  uint64_t count_ = 0;
};

// ---------------------------------------------------------------------------
// The decoder proper.

class Decoder {
 public:
  Decoder(std::span<const uint8_t> data, const DecodeOptions& options,
          PickleStream* out)
      : d_(data.data()),
        n_(data.size()),
        options_(options),
        base_(options.base_offset),
        out_(out) {
    out_->offset = base_;
  }

  // Decodes until STOP, an error, or (max_ops != 0) max_ops opcodes.
  template <bool kKeep, bool kLimited = false>
  void Run(uint64_t max_ops);
  // Run<false>(0), faster: the common opcodes are decoded inline.
  void RunFast();

 private:
  enum class StepResult : uint8_t { kContinue, kStop, kError };
  // Decodes the opcode at pos_ and counts it in hist[] when it succeeds.
  template <bool kKeep>
  StepResult Step(uint64_t* hist);
  [[gnu::noinline]] StepResult SlowStep(uint64_t* hist) {
    return Step<false>(hist);
  }
  // Fills the stats from the decoder state and adds `hist` (the opcodes
  // decoded since the last call) to the histogram and count. Called when
  // decoding has ended, and once more when Run<true> hands over to RunFast.
  void Finish(const std::array<uint64_t, 256>& hist);

  uint64_t Abs(size_t pos) const { return base_ + pos; }

  // Records an error at the opcode starting at op_pos.
  void Fail(size_t op_pos, std::string message) {
    DecodeError err;
    err.message = std::move(message);
    err.offset = Abs(op_pos);
    out_->error = std::move(err);
    out_->length = op_pos;
  }
  template <typename... Args>
  void Failf(size_t op_pos, const char* fmt, Args... args) {
    char buf[512];
    std::snprintf(buf, sizeof(buf), fmt, args...);
    Fail(op_pos, std::string("pickle: ") + buf);
  }

  std::string_view Name(uint8_t code) const {
    return GetOpcodeInfo(code).name;
  }
  const char* CName(uint8_t code) const {
    return GetOpcodeInfo(code).name.data();  // names are NUL-terminated
  }
  unsigned long long U(uint64_t v) const {
    return static_cast<unsigned long long>(v);
  }

  [[gnu::always_inline]] bool Need(size_t op_pos, uint8_t code,
                                   size_t bytes) {
    if (n_ - pos_ >= bytes) [[likely]] return true;
    return NeedFail(op_pos, code, bytes);
  }
  [[gnu::noinline, gnu::cold]] bool NeedFail(size_t op_pos, uint8_t code,
                                             size_t bytes) {
    Failf(op_pos,
          "%s argument at offset %llu is truncated (needs %zu bytes, %zu "
          "remain)",
          CName(code), U(Abs(op_pos)), bytes, n_ - pos_);
    return false;
  }
  [[gnu::always_inline]] bool NeedLength(size_t op_pos, uint8_t code,
                                         uint64_t len) {
    if (len <= n_ - pos_) [[likely]] return true;
    return NeedLengthFail(op_pos, code, len);
  }
  [[gnu::noinline, gnu::cold]] bool NeedLengthFail(size_t op_pos,
                                                   uint8_t code,
                                                   uint64_t len) {
    Failf(op_pos,
          "%s length %llu at offset %llu runs past end of stream (size %llu)",
          CName(code), U(len), U(Abs(op_pos)), U(Abs(n_)));
    return false;
  }
  bool ReadLine(size_t op_pos, uint8_t code, std::string_view* line) {
    const void* nl = std::memchr(d_ + pos_, '\n', n_ - pos_);
    if (nl == nullptr) {
      Failf(op_pos, "%s argument at offset %llu has no terminating newline",
            CName(code), U(Abs(op_pos)));
      return false;
    }
    const size_t end = static_cast<const uint8_t*>(nl) - d_;
    *line = std::string_view(reinterpret_cast<const char*>(d_ + pos_),
                             end - pos_);
    pos_ = end + 1;
    return true;
  }

  // Stack helpers. The stack is segmented by marks: like CPython's
  // unpickler, an opcode cannot reach items below the topmost MARK.
  size_t Avail() const { return stack_.size() - fence_; }
  [[gnu::always_inline]] bool NeedStack(size_t op_pos, uint8_t code,
                                        size_t k) {
    if (Avail() >= k) [[likely]] return true;
    return NeedStackFail(op_pos, code, k);
  }
  [[gnu::noinline, gnu::cold]] bool NeedStackFail(size_t op_pos,
                                                  uint8_t code, size_t k) {
    Failf(op_pos,
          "stack underflow: %s at offset %llu needs %zu item%s above the "
          "mark, found %zu",
          CName(code), U(Abs(op_pos)), k, k == 1 ? "" : "s", Avail());
    return false;
  }
  // The maximum depth (values + marks) is only sampled where the depth is
  // about to drop (and at the end), which is where its peaks are: cheaper
  // than a compare on every push.
  [[gnu::always_inline]] void NoteDepth() {
    const size_t depth = stack_.size() + marks_.size();
    max_depth_ = depth > max_depth_ ? depth : max_depth_;
  }
  [[gnu::always_inline]] void Push(const Value& v) { stack_.push_back(v); }
  [[gnu::always_inline]] void PushKind(VKind k) {
    Value v;
    v.kind = k;
    Push(v);
  }
  // Pops the topmost mark; returns its stack position through *mark.
  bool PopMark(size_t op_pos, uint8_t code, size_t* mark) {
    if (marks_.empty()) {
      Failf(op_pos, "%s at offset %llu without a MARK", CName(code),
            U(Abs(op_pos)));
      return false;
    }
    *mark = marks_.back();
    NoteDepth();
    marks_.pop_back();
    fence_ = marks_.empty() ? 0 : marks_.back();
    return true;
  }

  // Resolves a string value to UTF-8 text. Returns false for non-strings.
  bool StrText(const Value& v, std::string* out) const {
    if (v.kind != VKind::kStr) return false;
    const std::string_view raw(reinterpret_cast<const char*>(d_ + v.payload),
                               v.aux);
    switch (v.flags & kEncMask) {
      case kEncUtf8:
        out->assign(raw);
        return true;
      case kEncRawUnicode: {
        auto s = DecodeRawUnicodeEscape(raw);
        if (!s) return false;
        *out = std::move(*s);
        return true;
      }
      case kEncQuoted: {
        auto s = UnquoteStringArg(raw);
        if (!s) return false;
        *out = Latin1ToUtf8(*s);
        return true;
      }
      case kEncLatin1:
        *out = Latin1ToUtf8(raw);
        return true;
    }
    return false;
  }
  bool StrEquals(const Value& v, std::string_view want) const {
    if (v.kind != VKind::kStr) return false;
    if ((v.flags & kEncMask) == kEncUtf8) {
      return std::string_view(reinterpret_cast<const char*>(d_ + v.payload),
                              v.aux) == want;
    }
    std::string s;
    return StrText(v, &s) && s == want;
  }

  Value MakeStr(size_t pos, uint64_t len, uint8_t enc) const {
    Value v;
    if (len > std::numeric_limits<uint32_t>::max()) {
      v.kind = VKind::kOpaque;
      return v;
    }
    v.kind = VKind::kStr;
    v.flags = enc;
    v.payload = pos;
    v.aux = static_cast<uint32_t>(len);
    return v;
  }
  Value MakeBytes(size_t pos, uint64_t len) const {
    Value v;
    v.kind = VKind::kBytes;
    v.payload = pos;
    v.aux = len > std::numeric_limits<uint32_t>::max()
                ? std::numeric_limits<uint32_t>::max()
                : static_cast<uint32_t>(len);
    return v;
  }
  static Value MakeInt(int64_t x) {
    Value v;
    v.kind = VKind::kInt;
    v.payload = static_cast<uint64_t>(x);
    return v;
  }

  uint32_t SpecialOf(std::string_view module, std::string_view name) const {
    if (name == "NumpyArrayWrapper" &&
        (module == "joblib.numpy_pickle" ||
         module == "sklearn.externals.joblib.numpy_pickle"))
      return kSpecialArrayWrapper;
    if (name == "dtype" && module == "numpy") return kSpecialDtype;
    if (name == "_reconstructor" &&
        (module == "copyreg" || module == "copy_reg"))
      return kSpecialReconstructor;
    if (name == "encode" && module == "_codecs") return kSpecialCodecsEncode;
    return kSpecialNone;
  }

  Value AddGlobal(std::string module, std::string name, size_t op_pos,
                  uint8_t code, GlobalReference::Source source) {
    Value v;
    v.kind = VKind::kGlobal;
    v.aux = source == GlobalReference::Source::kUnknown
                ? kSpecialNone
                : SpecialOf(module, name);
    if (options_.joblib_arrays &&
        (v.aux == kSpecialArrayWrapper || v.aux == kSpecialDtype)) {
      track_ = true;
    }
    v.payload = out_->globals.size();
    GlobalReference ref;
    ref.module = std::move(module);
    ref.name = std::move(name);
    ref.offset = Abs(op_pos);
    ref.opcode = static_cast<Opcode>(code);
    ref.source = source;
    out_->globals.push_back(std::move(ref));
    return v;
  }

  // The Special of the class a value denotes (a global, possibly).
  static uint32_t ClassSpecial(const Value& v) {
    return v.kind == VKind::kGlobal ? v.aux : kSpecialNone;
  }

  Value MakeObject(uint32_t special, const Value& args) {
    Value v;
    v.kind = VKind::kObject;
    v.payload = objects_.size();
    ObjectRec rec;
    rec.special = special;
    rec.args = args;
    objects_.push_back(rec);
    return v;
  }

  Value MakeTuple(size_t from) {
    Value v;
    const size_t count = stack_.size() - from;
    if (count > std::numeric_limits<uint32_t>::max()) {
      v.kind = VKind::kOpaque;
      return v;
    }
    v.kind = VKind::kTuple;
    if (!track_) {  // contents not recorded: no items, not an index
      v.payload = kNoIndex;
      return v;
    }
    v.payload = tuple_items_.size();
    v.aux = static_cast<uint32_t>(count);
    tuple_items_.insert(tuple_items_.end(), stack_.begin() + from,
                        stack_.end());
    return v;
  }
  const Value* TupleItem(const Value& t, size_t i) const {
    if (t.kind != VKind::kTuple || i >= t.aux) return nullptr;
    return &tuple_items_[t.payload + i];
  }

  Value MakeDict() {
    Value v;
    v.kind = VKind::kDict;
    if (!track_ || dicts_.size() >= kNoIndex) {
      v.payload = kNoIndex;  // contents not recorded
      return v;
    }
    v.payload = dicts_.size();
    dicts_.emplace_back();
    return v;
  }
  // Adds key/value pairs stack_[from..] to dict `d` (if it is one we track).
  void DictAdd(const Value& d, size_t from) {
    if (d.kind != VKind::kDict || d.payload == kNoIndex) return;
    DictRec& rec = dicts_[d.payload];
    for (size_t i = from; i + 1 < stack_.size(); i += 2) {
      if (rec.count >= kMaxTrackedDictItems ||
          dict_items_.size() >= kNoIndex)
        return;
      const uint32_t idx = static_cast<uint32_t>(dict_items_.size());
      dict_items_.push_back(DictItem{stack_[i], stack_[i + 1], kNoIndex});
      if (rec.tail == kNoIndex) {
        rec.head = idx;
      } else {
        dict_items_[rec.tail].next = idx;
      }
      rec.tail = idx;
      ++rec.count;
    }
  }
  // Last value stored under string key `key` in dict `d`, or nullptr.
  const Value* DictLookup(const Value& d, std::string_view key) const {
    if (d.kind != VKind::kDict || d.payload == kNoIndex) return nullptr;
    const Value* found = nullptr;
    for (uint32_t i = dicts_[d.payload].head; i != kNoIndex;
         i = dict_items_[i].next) {
      if (StrEquals(dict_items_[i].key, key)) found = &dict_items_[i].value;
    }
    return found;
  }

  // Whether the memo must keep a value's contents, not just its kind:
  // strings and globals always (STACK_GLOBAL operands, classes), the rest
  // only while joblib arrays are being tracked.
  bool KeepInMemo(const Value& v) const {
    return track_ || v.kind == VKind::kStr || v.kind == VKind::kGlobal;
  }

  // joblib: BUILD applied to a NumpyArrayWrapper; `state` is its state.
  // Skips the inline array data (or decodes it as a nested pickle).
  bool JoblibArray(size_t op_pos, const Value& state);

  // Opcode handlers that need more than a few lines.
  template <bool kKeep>
  bool DecodeNewlineArg(size_t op_pos, uint8_t code, DecodedOp* rec);

  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const DecodeOptions& options_;
  uint64_t base_;
  PickleStream* out_;

  RawStack<Value> stack_;
  RawStack<size_t> marks_;
  size_t fence_ = 0;
  size_t max_depth_ = 0;
  Memo memo_;
  std::vector<Value> tuple_items_;
  std::vector<DictRec> dicts_;
  std::vector<DictItem> dict_items_;
  std::vector<ObjectRec> objects_;
  size_t frame_end_ = 0;  // end of the current FRAME (0: none)
  // Whether tuple and dict contents are recorded. They only matter for
  // joblib array wrappers, so recording starts when the stream first
  // resolves NumpyArrayWrapper or numpy.dtype (both always precede the
  // tuples and dicts that describe an array); before that, tuples read as
  // empty and dicts as unknown, which keeps plain pickles cheap.
  bool track_ = false;
  int protocol_ = 0;
};

// Opcodes whose argument is newline-terminated text: INT, LONG, FLOAT,
// STRING, UNICODE, PERSID, GET, PUT, GLOBAL, INST.
template <bool kKeep>
bool Decoder::DecodeNewlineArg(size_t op_pos, uint8_t code, DecodedOp* rec) {
  std::string_view line;
  if (!ReadLine(op_pos, code, &line)) return false;
  switch (static_cast<Opcode>(code)) {
    case Opcode::kInt:
    case Opcode::kLong: {
      std::string_view text = line;
      if (code == static_cast<uint8_t>(Opcode::kLong) && !text.empty() &&
          text.back() == 'L')
        text.remove_suffix(1);
      bool fits = false;
      int64_t v = 0;
      if (!ParsePyDecimal(text, &fits, &v)) {
        Failf(op_pos, "%s argument '%s' at offset %llu is not an integer",
              CName(code), Printable(line).c_str(), U(Abs(op_pos)));
        return false;
      }
      const bool is_bool =
          code == static_cast<uint8_t>(Opcode::kInt) && (line == "00" ||
                                                         line == "01");
      Value val;
      if (is_bool) {
        val.kind = VKind::kBool;
        val.payload = line[1] == '1';
      } else if (fits) {
        val = MakeInt(v);
      } else {
        val.kind = VKind::kBigInt;
      }
      Push(val);
      if constexpr (kKeep) {
        if (is_bool) {
          rec->arg.kind = OpArg::Kind::kBool;
          rec->arg.int_value = line[1] == '1';
        } else if (fits) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = v;
        } else {
          const std::string_view t = StripPySpace(text);
          rec->arg.kind = OpArg::Kind::kBigInt;
          rec->arg.bytes = std::span<const uint8_t>(
              reinterpret_cast<const uint8_t*>(t.data()), t.size());
        }
      }
      return true;
    }
    case Opcode::kFloat: {
      double v;
      if (!ParsePyFloat(line, &v)) {
        Failf(op_pos, "FLOAT argument '%s' at offset %llu is not a float",
              Printable(line).c_str(), U(Abs(op_pos)));
        return false;
      }
      PushKind(VKind::kFloat);
      if constexpr (kKeep) {
        rec->arg.kind = OpArg::Kind::kFloat;
        rec->arg.float_value = v;
      }
      return true;
    }
    case Opcode::kString: {
      const size_t len = line.size();
      if (len < 2 || line.front() != line.back() ||
          (line.front() != '\'' && line.front() != '"')) {
        Failf(op_pos, "STRING argument '%s' at offset %llu is not quoted",
              Printable(line).c_str(), U(Abs(op_pos)));
        return false;
      }
      if (!EscapeDecode(line.substr(1, len - 2), nullptr)) {
        Failf(op_pos,
              "STRING argument '%s' at offset %llu has an invalid escape",
              Printable(line).c_str(), U(Abs(op_pos)));
        return false;
      }
      Push(MakeStr(line.data() - reinterpret_cast<const char*>(d_), len,
                   kEncQuoted));
      if constexpr (kKeep) {
        rec->arg.kind = OpArg::Kind::kQuoted;
        rec->arg.text = line;
      }
      return true;
    }
    case Opcode::kUnicode: {
      if (!RawUnicodeEscape(line, nullptr)) {
        Failf(op_pos,
              "UNICODE argument '%s' at offset %llu has a truncated or "
              "out-of-range \\u escape",
              Printable(line).c_str(), U(Abs(op_pos)));
        return false;
      }
      Push(MakeStr(line.data() - reinterpret_cast<const char*>(d_),
                   line.size(), kEncRawUnicode));
      if constexpr (kKeep) {
        rec->arg.kind = OpArg::Kind::kText;
        rec->arg.needs_unescape = true;
        rec->arg.text = line;
      }
      return true;
    }
    case Opcode::kPersid: {
      if (!IsAscii(line)) {
        Failf(op_pos, "PERSID argument at offset %llu is not ASCII",
              U(Abs(op_pos)));
        return false;
      }
      PushKind(VKind::kOpaque);
      if constexpr (kKeep) {
        rec->arg.kind = OpArg::Kind::kText;
        rec->arg.text = line;
      }
      return true;
    }
    case Opcode::kGet:
    case Opcode::kPut: {
      bool fits = false;
      int64_t v = 0;
      if (!ParsePyDecimal(line, &fits, &v)) {
        Failf(op_pos, "%s argument '%s' at offset %llu is not an integer",
              CName(code), Printable(line).c_str(), U(Abs(op_pos)));
        return false;
      }
      if (!fits || v < 0) {
        Failf(op_pos, "%s index '%s' at offset %llu is out of range",
              CName(code), Printable(line).c_str(), U(Abs(op_pos)));
        return false;
      }
      const uint64_t idx = static_cast<uint64_t>(v);
      if (code == static_cast<uint8_t>(Opcode::kGet)) {
        Value copy;
        if (!memo_.Get(idx, &copy)) {
          Failf(op_pos, "GET at offset %llu reads memo slot %llu, which was "
                        "never set",
                U(Abs(op_pos)), U(idx));
          return false;
        }
        copy.flags |= kViaMemo;
        Push(copy);
      } else {
        if (!NeedStack(op_pos, code, 1)) return false;
        memo_.Put(idx, stack_.back(), KeepInMemo(stack_.back()));
      }
      if constexpr (kKeep) {
        rec->arg.kind = OpArg::Kind::kInt;
        rec->arg.int_value = v;
        rec->memo.kind = code == static_cast<uint8_t>(Opcode::kGet)
                             ? MemoEffect::Kind::kGet
                             : MemoEffect::Kind::kPut;
        rec->memo.index = idx;
      }
      return true;
    }
    case Opcode::kGlobal:
    case Opcode::kInst: {
      std::string_view name;
      if (!ReadLine(op_pos, code, &name)) return false;
      if (!IsUtf8Surrogatepass(reinterpret_cast<const uint8_t*>(line.data()),
                               line.size()) ||
          !IsUtf8Surrogatepass(reinterpret_cast<const uint8_t*>(name.data()),
                               name.size())) {
        Failf(op_pos, "%s argument at offset %llu is not valid UTF-8",
              CName(code), U(Abs(op_pos)));
        return false;
      }
      size_t mark = 0;
      if (code == static_cast<uint8_t>(Opcode::kInst)) {
        if (!PopMark(op_pos, code, &mark)) return false;
      }
      Value g = AddGlobal(std::string(line), std::string(name), op_pos, code,
                          GlobalReference::Source::kInline);
      if (code == static_cast<uint8_t>(Opcode::kInst)) {
        const Value args = MakeTuple(mark);
        NoteDepth();
        stack_.resize(mark);
        Push(MakeObject(ClassSpecial(g), args));
        ++out_->stats.call_count;
      } else {
        Push(g);
      }
      if constexpr (kKeep) {
        rec->arg.kind = OpArg::Kind::kGlobal;
        rec->arg.text = line;
        rec->arg.text2 = name;
      }
      return true;
    }
    default:
      break;
  }
  Failf(op_pos, "internal error: %s at offset %llu", CName(code),
        U(Abs(op_pos)));
  return false;
}

bool Decoder::JoblibArray(size_t op_pos, const Value& state) {
  const uint64_t at = Abs(op_pos);
  auto fail = [&](const char* what) {
    Failf(op_pos, "joblib NumpyArrayWrapper BUILD at offset %llu: %s", U(at),
          what);
    return false;
  };
  if (frame_end_ > pos_) {
    return fail("the current FRAME does not end at the BUILD");
  }
  if (state.kind != VKind::kDict) return fail("state is not a dict");
  const Value* shape = DictLookup(state, "shape");
  const Value* dtype = DictLookup(state, "dtype");
  const Value* order = DictLookup(state, "order");
  const Value* align = DictLookup(state, "numpy_array_alignment_bytes");
  if (shape == nullptr || shape->kind != VKind::kTuple ||
      shape->payload == kNoIndex) {
    return fail("cannot determine the array shape");
  }
  InlineArray array;
  uint64_t count = 1;
  bool overflow = false;
  for (uint32_t i = 0; i < shape->aux; ++i) {
    const Value& dim = tuple_items_[shape->payload + i];
    if (dim.kind != VKind::kInt || static_cast<int64_t>(dim.payload) < 0) {
      return fail("array shape is not a tuple of non-negative ints");
    }
    array.shape.push_back(dim.payload);
    if (dim.payload != 0 &&
        count > std::numeric_limits<uint64_t>::max() / dim.payload) {
      overflow = true;
    }
    count *= dim.payload;
  }
  if (overflow && count != 0) return fail("array element count overflows");
  if (order != nullptr && !StrEquals(*order, "C") && !StrEquals(*order, "F")) {
    return fail("array order is neither 'C' nor 'F'");
  }
  if (dtype == nullptr || dtype->kind != VKind::kObject ||
      dtype->payload >= objects_.size() ||
      objects_[dtype->payload].special != kSpecialDtype) {
    return fail("cannot determine the array dtype");
  }
  const ObjectRec& dt = objects_[dtype->payload];
  const Value* type_str = TupleItem(dt.args, 0);
  std::string type;
  if (type_str == nullptr || !StrText(*type_str, &type) || type.empty()) {
    return fail("dtype arguments do not start with a type string");
  }
  // State: (version, byteorder, subarray, names, fields, elsize, alignment,
  // flags[, metadata]).
  std::string byteorder = "|";
  int64_t elsize = -1;
  int64_t flags = 0;
  if (dt.has_state) {
    const Value* bo = TupleItem(dt.state, 1);
    std::string s;
    if (bo != nullptr && StrText(*bo, &s) && s.size() == 1) byteorder = s;
    const Value* es = TupleItem(dt.state, 5);
    if (es != nullptr && es->kind == VKind::kInt) {
      elsize = static_cast<int64_t>(es->payload);
    }
    const Value* fl = TupleItem(dt.state, 7);
    if (fl != nullptr && fl->kind == VKind::kInt) {
      flags = static_cast<int64_t>(fl->payload);
    }
  }
  const char kind = type[0];
  uint64_t itemsize = 0;
  if (elsize > 0) {
    itemsize = static_cast<uint64_t>(elsize);
  } else {
    size_t i = 1;
    uint64_t digits = 0;
    bool any = false;
    while (i < type.size() && type[i] >= '0' && type[i] <= '9' &&
           digits < (1ULL << 40)) {
      digits = digits * 10 + static_cast<uint64_t>(type[i] - '0');
      ++i;
      any = true;
    }
    if (any && i == type.size()) {
      itemsize = kind == 'U' ? digits * 4 : digits;
    }
  }
  const bool has_object = kind == 'O' || (flags & 1) != 0;
  if (itemsize == 0 && !has_object && count != 0) {
    return fail("cannot determine the dtype item size");
  }
  array.dtype = byteorder + (kind == 'O' ? std::string("O") : type);
  if (kind == 'M' || kind == 'm') {
    // datetime unit from the metadata: (..., ({}, (b'ns', 1, 1, 1))).
    const Value* meta = TupleItem(dt.state, 8);
    const Value* unit_tuple = meta ? TupleItem(*meta, 1) : nullptr;
    const Value* unit = unit_tuple ? TupleItem(*unit_tuple, 0) : nullptr;
    if (unit != nullptr && unit->kind == VKind::kObject &&
        unit->payload < objects_.size() &&
        objects_[unit->payload].special == kSpecialCodecsEncode) {
      // Protocol 2 writes bytes as _codecs.encode('ns', 'latin1').
      unit = TupleItem(objects_[unit->payload].args, 0);
    }
    if (unit != nullptr && (unit->kind == VKind::kBytes ||
                            (unit->kind == VKind::kStr &&
                             (unit->flags & kEncMask) == kEncUtf8))) {
      array.dtype += "[";
      array.dtype.append(reinterpret_cast<const char*>(d_ + unit->payload),
                         std::min<size_t>(unit->aux, 16));
      array.dtype += "]";
    }
  }
  array.offset = Abs(pos_);
  if (has_object) {
    // The array was written with pickle.dump(protocol=2) and is read back
    // with a plain pickle.load: a nested stream without joblib handling.
    if (options_.max_nesting <= 0) {
      return fail("object array nesting limit reached");
    }
    DecodeOptions nested_options = options_;
    nested_options.base_offset = Abs(pos_);
    nested_options.joblib_arrays = false;
    nested_options.max_nesting = options_.max_nesting - 1;
    PickleStream nested =
        DecodePickle(std::span<const uint8_t>(d_ + pos_, n_ - pos_),
                     nested_options);
    const bool ok = nested.complete && !nested.error;
    const uint64_t len = nested.length;
    std::string nested_error = ok ? "" : nested.error->message;
    out_->nested.push_back(std::move(nested));
    if (!ok) {
      Failf(op_pos,
            "joblib object array after BUILD at offset %llu: nested %s",
            U(at), nested_error.c_str());
      return false;
    }
    array.length = len;
    pos_ += len;
    out_->arrays.push_back(std::move(array));
    return true;
  }
  uint64_t skip = 0;
  if (align != nullptr && align->kind == VKind::kInt) {
    // One padding-length byte, then that many padding bytes.
    if (n_ - pos_ < 1) return fail("array padding byte runs past end of stream");
    skip = 1 + d_[pos_];
  }
  if (itemsize != 0 && count > std::numeric_limits<uint64_t>::max() / itemsize) {
    return fail("array byte size overflows");
  }
  const uint64_t nbytes = count * itemsize;
  if (skip > n_ - pos_ || nbytes > n_ - pos_ - skip) {
    Failf(op_pos,
          "joblib array of %llu bytes after BUILD at offset %llu runs past "
          "end of stream (size %llu)",
          U(nbytes), U(at), U(Abs(n_)));
    return false;
  }
  array.length = skip + nbytes;
  pos_ += array.length;
  out_->arrays.push_back(std::move(array));
  return true;
}

template <bool kKeep>
Decoder::StepResult Decoder::Step(uint64_t* hist) {
  PickleStats& stats = out_->stats;
  const size_t op_pos = pos_;
  if (op_pos >= n_) [[unlikely]] {
    Failf(pos_, "stream ends at offset %llu without STOP", U(Abs(pos_)));
    return StepResult::kError;
  }
  const uint8_t code = d_[op_pos];
  pos_ = op_pos + 1;
  DecodedOp* rec = nullptr;
  if constexpr (kKeep) {
    rec = &out_->ops.emplace_back();
    rec->offset = Abs(op_pos);
    rec->opcode = static_cast<Opcode>(code);
  }
  {
    bool ok = true;
    bool stop = false;
    switch (static_cast<Opcode>(code)) {
      // ----- constants
      case Opcode::kNone:
        PushKind(VKind::kNone);
        break;
      case Opcode::kNewtrue:
      case Opcode::kNewfalse: {
        Value v;
        v.kind = VKind::kBool;
        v.payload = code == static_cast<uint8_t>(Opcode::kNewtrue);
        Push(v);
        break;
      }
      case Opcode::kBinint1: {
        if (!(ok = Need(op_pos, code, 1))) break;
        const int64_t x = d_[pos_];
        pos_ += 1;
        Push(MakeInt(x));
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = x;
        }
        break;
      }
      case Opcode::kBinint2: {
        if (!(ok = Need(op_pos, code, 2))) break;
        const int64_t x = Le16(d_ + pos_);
        pos_ += 2;
        Push(MakeInt(x));
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = x;
        }
        break;
      }
      case Opcode::kBinint: {
        if (!(ok = Need(op_pos, code, 4))) break;
        const int64_t x = static_cast<int32_t>(Le32(d_ + pos_));
        pos_ += 4;
        Push(MakeInt(x));
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = x;
        }
        break;
      }
      case Opcode::kLong1:
      case Opcode::kLong4: {
        uint64_t len;
        if (code == static_cast<uint8_t>(Opcode::kLong1)) {
          if (!(ok = Need(op_pos, code, 1))) break;
          len = d_[pos_];
          pos_ += 1;
        } else {
          if (!(ok = Need(op_pos, code, 4))) break;
          const int32_t sl = static_cast<int32_t>(Le32(d_ + pos_));
          pos_ += 4;
          if (sl < 0) {
            Failf(op_pos, "LONG4 length %d at offset %llu is negative", sl,
                  U(Abs(op_pos)));
            ok = false;
            break;
          }
          len = static_cast<uint64_t>(sl);
        }
        if (!(ok = NeedLength(op_pos, code, len))) break;
        const uint8_t* p = d_ + pos_;
        pos_ += len;
        Value v;
        if (len <= 8) {
          uint64_t u = 0;
          for (uint64_t i = 0; i < len; ++i) u |= static_cast<uint64_t>(p[i]) << (8 * i);
          if (len > 0 && len < 8 && (p[len - 1] & 0x80)) {
            u |= ~0ULL << (8 * len);  // sign-extend
          }
          v = MakeInt(static_cast<int64_t>(u));
        } else {
          v.kind = VKind::kBigInt;
        }
        Push(v);
        if constexpr (kKeep) {
          if (v.kind == VKind::kInt) {
            rec->arg.kind = OpArg::Kind::kInt;
            rec->arg.int_value = static_cast<int64_t>(v.payload);
          } else {
            rec->arg.kind = OpArg::Kind::kBigInt;
            rec->arg.bytes = std::span<const uint8_t>(p, len);
          }
        }
        break;
      }
      case Opcode::kBinfloat: {
        if (!(ok = Need(op_pos, code, 8))) break;
        uint64_t be;
        std::memcpy(&be, d_ + pos_, 8);
        pos_ += 8;
        PushKind(VKind::kFloat);
        if constexpr (kKeep) {
          const uint64_t bits = __builtin_bswap64(be);
          double f;
          std::memcpy(&f, &bits, 8);
          rec->arg.kind = OpArg::Kind::kFloat;
          rec->arg.float_value = f;
        }
        break;
      }
      // ----- counted strings and bytes
      case Opcode::kShortBinunicode:
      case Opcode::kBinunicode:
      case Opcode::kBinunicode8:
      case Opcode::kShortBinbytes:
      case Opcode::kBinbytes:
      case Opcode::kBinbytes8:
      case Opcode::kBytearray8:
      case Opcode::kShortBinstring:
      case Opcode::kBinstring: {
        const ArgKind ak = GetOpcodeInfo(code).arg;
        uint64_t len;
        switch (ak) {
          case ArgKind::kUnicodeString1:
          case ArgKind::kBytes1:
          case ArgKind::kString1:
            if (!(ok = Need(op_pos, code, 1))) break;
            len = d_[pos_];
            pos_ += 1;
            break;
          case ArgKind::kString4: {
            if (!(ok = Need(op_pos, code, 4))) break;
            const int32_t sl = static_cast<int32_t>(Le32(d_ + pos_));
            pos_ += 4;
            if (sl < 0) {
              Failf(op_pos, "BINSTRING length %d at offset %llu is negative",
                    sl, U(Abs(op_pos)));
              ok = false;
              break;
            }
            len = static_cast<uint64_t>(sl);
            break;
          }
          case ArgKind::kUnicodeString4:
          case ArgKind::kBytes4:
            if (!(ok = Need(op_pos, code, 4))) break;
            len = Le32(d_ + pos_);
            pos_ += 4;
            break;
          default:  // 8-byte lengths
            if (!(ok = Need(op_pos, code, 8))) break;
            len = Le64(d_ + pos_);
            pos_ += 8;
            break;
        }
        if (!ok) break;
        if (!(ok = NeedLength(op_pos, code, len))) break;
        const size_t start = pos_;
        pos_ += len;
        Value v;
        if (ak == ArgKind::kUnicodeString1 || ak == ArgKind::kUnicodeString4 ||
            ak == ArgKind::kUnicodeString8) {
          if (!IsUtf8Surrogatepass(d_ + start, len)) {
            Failf(op_pos, "%s at offset %llu is not valid UTF-8", CName(code),
                  U(Abs(op_pos)));
            ok = false;
            break;
          }
          v = MakeStr(start, len, kEncUtf8);
          if constexpr (kKeep) {
            rec->arg.kind = OpArg::Kind::kText;
            rec->arg.text = std::string_view(
                reinterpret_cast<const char*>(d_ + start), len);
          }
        } else if (ak == ArgKind::kString1 || ak == ArgKind::kString4) {
          v = MakeStr(start, len, kEncLatin1);
          if constexpr (kKeep) {
            rec->arg.kind = OpArg::Kind::kBytes;
            rec->arg.bytes = std::span<const uint8_t>(d_ + start, len);
          }
        } else {
          v = MakeBytes(start, len);
          if constexpr (kKeep) {
            rec->arg.kind = OpArg::Kind::kBytes;
            rec->arg.bytes = std::span<const uint8_t>(d_ + start, len);
          }
        }
        Push(v);
        break;
      }
      // ----- newline-terminated arguments
      case Opcode::kInt:
      case Opcode::kLong:
      case Opcode::kFloat:
      case Opcode::kString:
      case Opcode::kUnicode:
      case Opcode::kPersid:
      case Opcode::kGet:
      case Opcode::kPut:
      case Opcode::kGlobal:
      case Opcode::kInst:
        ok = DecodeNewlineArg<kKeep>(op_pos, code, rec);
        break;
      // ----- containers
      case Opcode::kEmptyList:
        PushKind(VKind::kList);
        break;
      case Opcode::kEmptyDict:
        Push(MakeDict());
        break;
      case Opcode::kEmptySet:
        PushKind(VKind::kSet);
        break;
      case Opcode::kEmptyTuple: {
        Value v;
        v.kind = VKind::kTuple;
        v.payload = tuple_items_.size();
        Push(v);
        break;
      }
      case Opcode::kTuple1:
      case Opcode::kTuple2:
      case Opcode::kTuple3: {
        const size_t k = code - static_cast<uint8_t>(Opcode::kTuple1) + 1;
        if (!(ok = NeedStack(op_pos, code, k))) break;
        const size_t from = stack_.size() - k;
        const Value t = MakeTuple(from);
        NoteDepth();
        stack_.resize(from);
        Push(t);
        break;
      }
      case Opcode::kTuple:
      case Opcode::kList:
      case Opcode::kDict:
      case Opcode::kFrozenset: {
        size_t mark;
        if (!(ok = PopMark(op_pos, code, &mark))) break;
        Value v;
        if (code == static_cast<uint8_t>(Opcode::kTuple)) {
          v = MakeTuple(mark);
        } else if (code == static_cast<uint8_t>(Opcode::kDict)) {
          if ((stack_.size() - mark) % 2 != 0) {
            Failf(op_pos, "DICT at offset %llu has an odd number of items "
                          "(%zu)",
                  U(Abs(op_pos)), stack_.size() - mark);
            ok = false;
            break;
          }
          v = MakeDict();
          DictAdd(v, mark);
        } else {
          v.kind = code == static_cast<uint8_t>(Opcode::kList)
                       ? VKind::kList
                       : VKind::kFrozenSet;
        }
        NoteDepth();
        stack_.resize(mark);
        Push(v);
        break;
      }
      case Opcode::kAppend:
        if (!(ok = NeedStack(op_pos, code, 2))) break;
        NoteDepth();
        stack_.pop_back();
        break;
      case Opcode::kSetitem: {
        if (!(ok = NeedStack(op_pos, code, 3))) break;
        const size_t from = stack_.size() - 2;
        DictAdd(stack_[from - 1], from);
        NoteDepth();
        stack_.resize(from);
        break;
      }
      case Opcode::kAppends:
      case Opcode::kSetitems:
      case Opcode::kAdditems: {
        size_t mark;
        if (!(ok = PopMark(op_pos, code, &mark))) break;
        // The container sits just below the mark, above the new fence.
        if (mark <= fence_) {
          Failf(op_pos,
                "stack underflow: %s at offset %llu has no container below "
                "its MARK",
                CName(code), U(Abs(op_pos)));
          ok = false;
          break;
        }
        if (code == static_cast<uint8_t>(Opcode::kSetitems)) {
          if ((stack_.size() - mark) % 2 != 0) {
            Failf(op_pos,
                  "SETITEMS at offset %llu has an odd number of items (%zu)",
                  U(Abs(op_pos)), stack_.size() - mark);
            ok = false;
            break;
          }
          DictAdd(stack_[mark - 1], mark);
        }
        NoteDepth();
        stack_.resize(mark);
        break;
      }
      // ----- stack manipulation
      case Opcode::kMark:
        marks_.push_back(stack_.size());
        fence_ = stack_.size();
        break;
      case Opcode::kPop:
        if (!marks_.empty() && marks_.back() == stack_.size()) {
          NoteDepth();
          marks_.pop_back();
          fence_ = marks_.empty() ? 0 : marks_.back();
        } else {
          if (!(ok = NeedStack(op_pos, code, 1))) break;
          NoteDepth();
          stack_.pop_back();
        }
        break;
      case Opcode::kPopMark: {
        size_t mark;
        if (!(ok = PopMark(op_pos, code, &mark))) break;
        NoteDepth();
        stack_.resize(mark);
        break;
      }
      case Opcode::kDup:
        if (!(ok = NeedStack(op_pos, code, 1))) break;
        Push(Value(stack_.back()));
        break;
      // ----- memo
      case Opcode::kBinget:
      case Opcode::kLongBinget: {
        uint64_t idx;
        if (code == static_cast<uint8_t>(Opcode::kBinget)) {
          if (!(ok = Need(op_pos, code, 1))) break;
          idx = d_[pos_];
          pos_ += 1;
        } else {
          if (!(ok = Need(op_pos, code, 4))) break;
          idx = Le32(d_ + pos_);
          pos_ += 4;
        }
        Value copy;
        if (!memo_.Get(idx, &copy)) {
          Failf(op_pos,
                "%s at offset %llu reads memo slot %llu, which was never set",
                CName(code), U(Abs(op_pos)), U(idx));
          ok = false;
          break;
        }
        copy.flags |= kViaMemo;
        Push(copy);
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = static_cast<int64_t>(idx);
          rec->memo.kind = MemoEffect::Kind::kGet;
          rec->memo.index = idx;
        }
        break;
      }
      case Opcode::kBinput:
      case Opcode::kLongBinput: {
        uint64_t idx;
        if (code == static_cast<uint8_t>(Opcode::kBinput)) {
          if (!(ok = Need(op_pos, code, 1))) break;
          idx = d_[pos_];
          pos_ += 1;
        } else {
          if (!(ok = Need(op_pos, code, 4))) break;
          idx = Le32(d_ + pos_);
          pos_ += 4;
        }
        if (!(ok = NeedStack(op_pos, code, 1))) break;
        memo_.Put(idx, stack_.back(), KeepInMemo(stack_.back()));
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = static_cast<int64_t>(idx);
          rec->memo.kind = MemoEffect::Kind::kPut;
          rec->memo.index = idx;
        }
        break;
      }
      case Opcode::kMemoize: {
        if (!(ok = NeedStack(op_pos, code, 1))) break;
        const uint64_t idx = memo_.size();
        memo_.Put(idx, stack_.back(), KeepInMemo(stack_.back()));
        if constexpr (kKeep) {
          rec->memo.kind = MemoEffect::Kind::kMemoize;
          rec->memo.index = idx;
        }
        break;
      }
      // ----- globals and calls
      case Opcode::kStackGlobal: {
        if (!(ok = NeedStack(op_pos, code, 2))) break;
        const Value& mv = stack_[stack_.size() - 2];
        const Value& nv = stack_[stack_.size() - 1];
        std::string module, name;
        GlobalReference::Source source = GlobalReference::Source::kUnknown;
        if (StrText(mv, &module) && StrText(nv, &name)) {
          source = ((mv.flags | nv.flags) & kViaMemo)
                       ? GlobalReference::Source::kMemo
                       : GlobalReference::Source::kStack;
        } else {
          module.clear();
          name.clear();
        }
        const Value g =
            AddGlobal(std::move(module), std::move(name), op_pos, code, source);
        NoteDepth();
        stack_.resize(stack_.size() - 2);
        Push(g);
        break;
      }
      case Opcode::kExt1:
      case Opcode::kExt2:
      case Opcode::kExt4: {
        int64_t ext;
        if (code == static_cast<uint8_t>(Opcode::kExt1)) {
          if (!(ok = Need(op_pos, code, 1))) break;
          ext = d_[pos_];
          pos_ += 1;
        } else if (code == static_cast<uint8_t>(Opcode::kExt2)) {
          if (!(ok = Need(op_pos, code, 2))) break;
          ext = Le16(d_ + pos_);
          pos_ += 2;
        } else {
          if (!(ok = Need(op_pos, code, 4))) break;
          ext = static_cast<int32_t>(Le32(d_ + pos_));
          pos_ += 4;
        }
        if (ext <= 0) {
          Failf(op_pos, "%s code %lld at offset %llu is not positive",
                CName(code), static_cast<long long>(ext), U(Abs(op_pos)));
          ok = false;
          break;
        }
        Push(AddGlobal(std::string(), "ext:" + std::to_string(ext), op_pos,
                       code, GlobalReference::Source::kUnknown));
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = ext;
        }
        break;
      }
      case Opcode::kReduce: {
        if (!(ok = NeedStack(op_pos, code, 2))) break;
        const Value callable = stack_[stack_.size() - 2];
        const Value args = stack_[stack_.size() - 1];
        uint32_t special = ClassSpecial(callable);
        if (special == kSpecialReconstructor) {
          const Value* cls = TupleItem(args, 0);
          special = cls ? ClassSpecial(*cls) : kSpecialNone;
        }
        NoteDepth();
        stack_.resize(stack_.size() - 2);
        Push(MakeObject(special, args));
        ++stats.call_count;
        break;
      }
      case Opcode::kNewobj:
      case Opcode::kNewobjEx: {
        const size_t k = code == static_cast<uint8_t>(Opcode::kNewobj) ? 2 : 3;
        if (!(ok = NeedStack(op_pos, code, k))) break;
        const Value cls = stack_[stack_.size() - k];
        const Value args = stack_[stack_.size() - k + 1];
        NoteDepth();
        stack_.resize(stack_.size() - k);
        Push(MakeObject(ClassSpecial(cls), args));
        ++stats.call_count;
        break;
      }
      case Opcode::kObj: {
        size_t mark;
        if (!(ok = PopMark(op_pos, code, &mark))) break;
        if (stack_.size() - mark < 1) {
          Failf(op_pos, "stack underflow: OBJ at offset %llu has no class "
                        "after its MARK",
                U(Abs(op_pos)));
          ok = false;
          break;
        }
        const Value cls = stack_[mark];
        const Value args = MakeTuple(mark + 1);
        NoteDepth();
        stack_.resize(mark);
        Push(MakeObject(ClassSpecial(cls), args));
        ++stats.call_count;
        break;
      }
      case Opcode::kBuild: {
        if (!(ok = NeedStack(op_pos, code, 2))) break;
        const Value state = stack_.back();
        NoteDepth();
        stack_.pop_back();
        const Value& obj = stack_.back();
        ++stats.call_count;
        if (obj.kind == VKind::kObject && obj.payload < objects_.size()) {
          ObjectRec& rec_obj = objects_[obj.payload];
          rec_obj.state = state;
          rec_obj.has_state = true;
          if (rec_obj.special == kSpecialArrayWrapper &&
              options_.joblib_arrays) {
            ok = JoblibArray(op_pos, state);
          }
        }
        break;
      }
      case Opcode::kBinpersid:
        if (!(ok = NeedStack(op_pos, code, 1))) break;
        stack_.back() = Value{VKind::kOpaque};
        break;
      case Opcode::kNextBuffer:
        PushKind(VKind::kOpaque);
        break;
      case Opcode::kReadonlyBuffer:
        ok = NeedStack(op_pos, code, 1);
        break;
      // ----- framing and protocol
      case Opcode::kProto: {
        if (!(ok = Need(op_pos, code, 1))) break;
        const uint8_t proto = d_[pos_];
        pos_ += 1;
        if (proto > kHighestProtocol) {
          Failf(op_pos, "unsupported protocol %u at offset %llu", proto,
                U(Abs(op_pos)));
          ok = false;
          break;
        }
        protocol_ = proto;
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = proto;
        }
        break;
      }
      case Opcode::kFrame: {
        if (!(ok = Need(op_pos, code, 8))) break;
        const uint64_t len = Le64(d_ + pos_);
        pos_ += 8;
        if (!(ok = NeedLength(op_pos, code, len))) break;
        frame_end_ = pos_ + len;
        if constexpr (kKeep) {
          rec->arg.kind = OpArg::Kind::kInt;
          rec->arg.int_value = static_cast<int64_t>(len);
        }
        break;
      }
      case Opcode::kStop:
        if (!(ok = NeedStack(op_pos, code, 1))) break;
        stop = true;
        break;
      default:
        Failf(op_pos, "unknown opcode 0x%02x at offset %llu", code,
              U(Abs(op_pos)));
        ok = false;
        break;
    }
    if (!ok) {
      if constexpr (kKeep) out_->ops.pop_back();
      return StepResult::kError;
    }
    ++hist[code];
    if (stop) {
      out_->complete = true;
      out_->length = pos_;
      return StepResult::kStop;
    }
    return StepResult::kContinue;
  }
}

template <bool kKeep, bool kLimited>
void Decoder::Run(uint64_t max_ops) {
  // A local histogram: nothing else can alias it, so it stays cheap to
  // update in the hot loop.
  std::array<uint64_t, 256> hist{};
  // max_ops is only used by LooksLikePickle; a huge limit otherwise.
  uint64_t budget =
      max_ops == 0 ? std::numeric_limits<uint64_t>::max() : max_ops;
  while (true) {
    if constexpr (kLimited) {
      if (budget == 0) break;
    }
    if constexpr (kKeep) {
      if (out_->ops.size() >= options_.max_kept_ops) [[unlikely]] {
        // Enough records: count what was kept, then decode the rest of the
        // stream without records (the decoder state is all in members).
        Finish(hist);
        RunFast();
        out_->ops_omitted = out_->stats.opcode_count - out_->ops.size();
        return;
      }
    }
    if (Step<kKeep>(hist.data()) != StepResult::kContinue) break;
    --budget;
  }
  Finish(hist);
}

// The decode loop without keep_ops. The common opcodes are decoded here,
// with the read position, the value and mark stacks and the depth maximum in
// locals (stores into the value stack may alias any member, so members would
// be reloaded on every opcode) and with threaded dispatch: each handler ends
// with its own indirect jump through a table indexed by the opcode byte.
// Everything else goes through the general Step() with the locals written
// back before and reloaded after: rare opcodes, every error (a handler takes
// the slow path, before changing anything, whenever a check fails), stack
// and memo growth, the last kFastArgMax bytes of the input, and the
// opcodes whose effect depends on joblib tracking once it has started.
void Decoder::RunFast() {
  std::array<uint64_t, 256> hist{};
  // No handler reads more than kFastArgMax argument bytes, so an opcode that
  // starts before safe_end has its fixed-size argument in bounds.
  constexpr size_t kFastArgMax = 8;
  const uint8_t* const data = d_;
  const uint8_t* const safe_end =
      n_ > kFastArgMax ? data + (n_ - kFastArgMax) : data;

  const void* dispatch[256];
  for (const void*& target : dispatch) target = &&slow;
  const std::pair<Opcode, const void*> handlers[] = {
      {Opcode::kNone, &&op_none},
      {Opcode::kNewtrue, &&op_newtrue},
      {Opcode::kNewfalse, &&op_newfalse},
      {Opcode::kBinint1, &&op_binint1},
      {Opcode::kBinint2, &&op_binint2},
      {Opcode::kBinint, &&op_binint},
      {Opcode::kBinfloat, &&op_binfloat},
      {Opcode::kShortBinunicode, &&op_short_binunicode},
      {Opcode::kEmptyList, &&op_empty_list},
      {Opcode::kEmptyDict, &&op_empty_dict},
      {Opcode::kEmptyTuple, &&op_empty_tuple},
      {Opcode::kEmptySet, &&op_empty_set},
      {Opcode::kMark, &&op_mark},
      {Opcode::kTuple1, &&op_tuple1},
      {Opcode::kTuple2, &&op_tuple2},
      {Opcode::kTuple3, &&op_tuple3},
      {Opcode::kTuple, &&op_tuple},
      {Opcode::kList, &&op_list},
      {Opcode::kDict, &&op_dict},
      {Opcode::kAppend, &&op_append},
      {Opcode::kSetitem, &&op_setitem},
      {Opcode::kAppends, &&op_appends},
      {Opcode::kAdditems, &&op_additems},
      {Opcode::kSetitems, &&op_setitems},
      {Opcode::kPop, &&op_pop},
      {Opcode::kDup, &&op_dup},
      {Opcode::kBinget, &&op_binget},
      {Opcode::kLongBinget, &&op_long_binget},
      {Opcode::kMemoize, &&op_memoize},
      {Opcode::kBinput, &&op_binput},
      {Opcode::kLongBinput, &&op_long_binput},
  };
  for (const auto& [op, target] : handlers) {
    dispatch[static_cast<uint8_t>(op)] = target;
  }
  // While joblib contents are tracked, tuples, dicts and memo values carry
  // contents: the general path records them. (Dicts that record their items
  // exist only then, so SETITEM(S) here need not call DictAdd.)
  static constexpr Opcode kTrackedOps[] = {
      Opcode::kEmptyDict, Opcode::kTuple1,    Opcode::kTuple2,
      Opcode::kTuple3,    Opcode::kTuple,     Opcode::kDict,
      Opcode::kSetitem,   Opcode::kSetitems,  Opcode::kMemoize,
      Opcode::kBinput,    Opcode::kLongBinput};
  if (track_) {
    for (Opcode op : kTrackedOps) dispatch[static_cast<uint8_t>(op)] = &&slow;
  }

  // The decoder state in locals, (re)loaded by DYNAHUG_LOAD_STATE.
  const uint8_t* p;  // the opcode being decoded
  Value* base;       // stack_: base, top (one past), capacity end
  Value* sp;
  Value* cap;
  Value* fence;  // base + fence_
  size_t* mp;    // marks_: top (one past), capacity end
  size_t* mcap;
  size_t max_depth16;  // 16 * max_depth_, see DYNAHUG_NOTE_DEPTH
  // Scratch for the handlers (a jump may not skip an initialization).
  size_t len;
  size_t mark;
  size_t below;

#define DYNAHUG_LOAD_STATE()                  \
  do {                                        \
    p = data + pos_;                          \
    base = stack_.data();                     \
    sp = base + stack_.size();                \
    cap = base + stack_.capacity();           \
    fence = base + fence_;                    \
    mp = marks_.data() + marks_.size();       \
    mcap = marks_.data() + marks_.capacity(); \
    max_depth16 = max_depth_ * 16;            \
  } while (0)
#define DYNAHUG_STORE_STATE()                                 \
  do {                                                        \
    pos_ = static_cast<size_t>(p - data);                     \
    stack_.set_size(static_cast<size_t>(sp - base));          \
    fence_ = static_cast<size_t>(fence - base);               \
    marks_.set_size(static_cast<size_t>(mp - marks_.data())); \
    max_depth_ = max_depth16 / 16;                            \
  } while (0)
#define DYNAHUG_DISPATCH()          \
  do {                              \
    if (p >= safe_end) [[unlikely]] \
      goto slow;                    \
    goto* dispatch[*p];             \
  } while (0)
  // Ends the handler of opcode `op` (an Opcode enumerator), which succeeded
  // and took `size` bytes with its argument.
#define DYNAHUG_NEXT(op, size)                \
  do {                                        \
    ++hist[static_cast<uint8_t>(Opcode::op)]; \
    p += (size);                              \
    DYNAHUG_DISPATCH();                       \
  } while (0)
#define DYNAHUG_PUSH(value)   \
  do {                        \
    if (sp == cap) goto slow; \
    *sp++ = (value);          \
  } while (0)
  // NoteDepth() on the locals, on 16 * depth: the bytes of values plus twice
  // the bytes of marks, which take no shifts to compute.
  static_assert(sizeof(Value) == 16 && sizeof(size_t) == 8);
#define DYNAHUG_NOTE_DEPTH()                                          \
  do {                                                                \
    const size_t depth16 =                                            \
        ByteDistance(base, sp) + 2 * ByteDistance(marks_.data(), mp); \
    max_depth16 = depth16 > max_depth16 ? depth16 : max_depth16;      \
  } while (0)
  // TUPLE1..3 when not tracking: MakeTuple() records no contents.
#define DYNAHUG_TUPLE_N(op, k)                       \
  do {                                               \
    if (sp - fence < (k)) goto slow;                 \
    DYNAHUG_NOTE_DEPTH();                            \
    sp -= (k);                                       \
    *sp++ = Value{VKind::kTuple, 0, 0, 0, kNoIndex}; \
    DYNAHUG_NEXT(op, 1);                             \
  } while (0)
  // Pops the topmost mark (at stack position `mark`) and the values above
  // it; the caller has checked that there is a mark. `below` is the stack
  // position of the mark below it, 0 if none: the new fence.
#define DYNAHUG_POP_MARK_TO(mark, below) \
  do {                                   \
    const size_t new_top = (mark);       \
    const size_t new_fence = (below);    \
    DYNAHUG_NOTE_DEPTH();                \
    --mp;                                \
    fence = base + new_fence;            \
    sp = base + new_top;                 \
  } while (0)
#define DYNAHUG_MARK_BELOW() (mp - 1 == marks_.data() ? 0 : mp[-2])
  // MEMOIZE, BINPUT, LONG_BINPUT when not tracking: KeepInMemo() is true
  // only for strings and globals.
#define DYNAHUG_MEMO_PUT(op, size, idx)                  \
  do {                                                   \
    if (sp == fence) goto slow;                          \
    const VKind kind = sp[-1].kind;                      \
    if (kind == VKind::kStr || kind == VKind::kGlobal || \
        !memo_.TryPutKind((idx), kind)) {                \
      goto slow;                                         \
    }                                                    \
    DYNAHUG_NEXT(op, size);                              \
  } while (0)
#define DYNAHUG_MEMO_GET(op, size, idx)         \
  do {                                          \
    const uint32_t slot = memo_.DenseSlot(idx); \
    if (slot == 0 || sp == cap) goto slow;      \
    if (slot & Memo::kKindTag) {                \
      *sp = kMemoKindValues[slot & 0xF];        \
    } else {                                    \
      *sp = memo_.SlotValue(slot);              \
      sp->flags |= kViaMemo;                    \
    }                                           \
    ++sp;                                       \
    DYNAHUG_NEXT(op, size);                     \
  } while (0)

  DYNAHUG_LOAD_STATE();
  DYNAHUG_DISPATCH();

slow:
  DYNAHUG_STORE_STATE();
  if (SlowStep(hist.data()) != StepResult::kContinue) {
    Finish(hist);
    return;
  }
  if (track_) {
    for (Opcode op : kTrackedOps) dispatch[static_cast<uint8_t>(op)] = &&slow;
  }
  DYNAHUG_LOAD_STATE();
  DYNAHUG_DISPATCH();

  // ----- constants
op_none:
  DYNAHUG_PUSH(Value{VKind::kNone});
  DYNAHUG_NEXT(kNone, 1);
op_newtrue:
  DYNAHUG_PUSH((Value{VKind::kBool, 0, 0, 0, 1}));
  DYNAHUG_NEXT(kNewtrue, 1);
op_newfalse:
  DYNAHUG_PUSH(Value{VKind::kBool});
  DYNAHUG_NEXT(kNewfalse, 1);
op_binint1:
  DYNAHUG_PUSH(MakeInt(p[1]));
  DYNAHUG_NEXT(kBinint1, 2);
op_binint2:
  DYNAHUG_PUSH(MakeInt(Le16(p + 1)));
  DYNAHUG_NEXT(kBinint2, 3);
op_binint:
  DYNAHUG_PUSH(MakeInt(static_cast<int32_t>(Le32(p + 1))));
  DYNAHUG_NEXT(kBinint, 5);
op_binfloat:
  DYNAHUG_PUSH(Value{VKind::kFloat});
  DYNAHUG_NEXT(kBinfloat, 9);
op_short_binunicode:
  len = p[1];
  if (len > static_cast<size_t>(data + n_ - (p + 2)) ||
      !IsUtf8Surrogatepass(p + 2, len)) {
    goto slow;
  }
  DYNAHUG_PUSH(MakeStr(static_cast<size_t>(p + 2 - data), len, kEncUtf8));
  DYNAHUG_NEXT(kShortBinunicode, 2 + len);

  // ----- containers
op_empty_list:
  DYNAHUG_PUSH(Value{VKind::kList});
  DYNAHUG_NEXT(kEmptyList, 1);
op_empty_set:
  DYNAHUG_PUSH(Value{VKind::kSet});
  DYNAHUG_NEXT(kEmptySet, 1);
op_empty_dict:  // MakeDict() when not tracking
  DYNAHUG_PUSH((Value{VKind::kDict, 0, 0, 0, kNoIndex}));
  DYNAHUG_NEXT(kEmptyDict, 1);
op_empty_tuple:
  DYNAHUG_PUSH((Value{VKind::kTuple, 0, 0, 0, tuple_items_.size()}));
  DYNAHUG_NEXT(kEmptyTuple, 1);
op_tuple1:
  DYNAHUG_TUPLE_N(kTuple1, 1);
op_tuple2:
  DYNAHUG_TUPLE_N(kTuple2, 2);
op_tuple3:
  DYNAHUG_TUPLE_N(kTuple3, 3);
op_tuple:  // when not tracking
  if (mp == marks_.data()) goto slow;
  mark = mp[-1];
  if (base + mark == cap ||
      sp - (base + mark) > std::numeric_limits<uint32_t>::max()) {
    goto slow;
  }
  DYNAHUG_POP_MARK_TO(mark, DYNAHUG_MARK_BELOW());
  *sp++ = Value{VKind::kTuple, 0, 0, 0, kNoIndex};
  DYNAHUG_NEXT(kTuple, 1);
op_list:
  if (mp == marks_.data()) goto slow;
  mark = mp[-1];
  if (base + mark == cap) goto slow;
  DYNAHUG_POP_MARK_TO(mark, DYNAHUG_MARK_BELOW());
  *sp++ = Value{VKind::kList};
  DYNAHUG_NEXT(kList, 1);
op_dict:  // when not tracking
  if (mp == marks_.data()) goto slow;
  mark = mp[-1];
  if (base + mark == cap || ((sp - (base + mark)) & 1) != 0) goto slow;
  DYNAHUG_POP_MARK_TO(mark, DYNAHUG_MARK_BELOW());
  *sp++ = Value{VKind::kDict, 0, 0, 0, kNoIndex};
  DYNAHUG_NEXT(kDict, 1);
op_append:
  if (sp - fence < 2) goto slow;
  DYNAHUG_NOTE_DEPTH();
  --sp;
  DYNAHUG_NEXT(kAppend, 1);
op_setitem:
  if (sp - fence < 3) goto slow;
  DYNAHUG_NOTE_DEPTH();
  sp -= 2;
  DYNAHUG_NEXT(kSetitem, 1);
  // APPENDS, ADDITEMS, SETITEMS: the container sits just below the mark,
  // above the next mark down.
op_appends:
  if (mp == marks_.data()) goto slow;
  mark = mp[-1];
  below = DYNAHUG_MARK_BELOW();
  if (mark <= below) goto slow;
  DYNAHUG_POP_MARK_TO(mark, below);
  DYNAHUG_NEXT(kAppends, 1);
op_additems:
  if (mp == marks_.data()) goto slow;
  mark = mp[-1];
  below = DYNAHUG_MARK_BELOW();
  if (mark <= below) goto slow;
  DYNAHUG_POP_MARK_TO(mark, below);
  DYNAHUG_NEXT(kAdditems, 1);
op_setitems:
  if (mp == marks_.data()) goto slow;
  mark = mp[-1];
  below = DYNAHUG_MARK_BELOW();
  if (mark <= below || ((sp - (base + mark)) & 1) != 0) goto slow;
  DYNAHUG_POP_MARK_TO(mark, below);
  DYNAHUG_NEXT(kSetitems, 1);

  // ----- stack manipulation
op_mark:
  if (mp == mcap) goto slow;
  *mp++ = static_cast<size_t>(sp - base);
  fence = sp;
  DYNAHUG_NEXT(kMark, 1);
op_pop:
  if (mp != marks_.data() && base + mp[-1] == sp) {  // pops the mark
    DYNAHUG_POP_MARK_TO(sp - base, DYNAHUG_MARK_BELOW());
  } else {
    if (sp == fence) goto slow;
    DYNAHUG_NOTE_DEPTH();
    --sp;
  }
  DYNAHUG_NEXT(kPop, 1);
op_dup:
  if (sp == fence || sp == cap) goto slow;
  *sp = sp[-1];
  ++sp;
  DYNAHUG_NEXT(kDup, 1);

  // ----- memo
op_binget:
  DYNAHUG_MEMO_GET(kBinget, 2, p[1]);
op_long_binget:
  DYNAHUG_MEMO_GET(kLongBinget, 5, Le32(p + 1));
op_memoize:
  if (sp == fence || sp[-1].kind == VKind::kStr ||
      sp[-1].kind == VKind::kGlobal || !memo_.TryAppendKind(sp[-1].kind)) {
    goto slow;
  }
  DYNAHUG_NEXT(kMemoize, 1);
op_binput:
  DYNAHUG_MEMO_PUT(kBinput, 2, p[1]);
op_long_binput:
  DYNAHUG_MEMO_PUT(kLongBinput, 5, Le32(p + 1));

#undef DYNAHUG_LOAD_STATE
#undef DYNAHUG_STORE_STATE
#undef DYNAHUG_DISPATCH
#undef DYNAHUG_NEXT
#undef DYNAHUG_PUSH
#undef DYNAHUG_NOTE_DEPTH
#undef DYNAHUG_TUPLE_N
#undef DYNAHUG_POP_MARK_TO
#undef DYNAHUG_MARK_BELOW
#undef DYNAHUG_MEMO_PUT
#undef DYNAHUG_MEMO_GET
}

void Decoder::Finish(const std::array<uint64_t, 256>& hist) {
  PickleStats& stats = out_->stats;
  if (!out_->complete && !out_->error) out_->length = pos_;
  uint64_t decoded = 0;
  for (size_t i = 0; i < hist.size(); ++i) {
    stats.histogram[i] += hist[i];
    decoded += hist[i];
  }
  stats.opcode_count += decoded;
  stats.protocol = protocol_;
  stats.memo_size = memo_.size();
  const size_t depth = stack_.size() + marks_.size();
  stats.max_stack_depth = static_cast<uint32_t>(
      std::min<size_t>(std::max(max_depth_, depth),
                       std::numeric_limits<uint32_t>::max()));
}

}  // namespace

PickleStream DecodePickle(std::span<const uint8_t> data,
                          const DecodeOptions& options) {
  PickleStream out;
  Decoder decoder(data, options, &out);
  if (options.keep_ops) {
    decoder.Run<true>(0);
  } else {
    decoder.RunFast();
  }
  return out;
}

bool LooksLikePickle(std::span<const uint8_t> data) {
  if (data.empty()) return false;
  const OpcodeInfo& info = GetOpcodeInfo(data[0]);
  if (!info.known) return false;
  if (data[0] == static_cast<uint8_t>(Opcode::kProto)) {
    return data.size() >= 2 && data[1] <= kHighestProtocol;
  }
  if (info.min_protocol > 1) return false;
  PickleStream out;
  DecodeOptions options;
  options.joblib_arrays = false;
  Decoder decoder(data, options, &out);
  decoder.Run<false, true>(1);
  return !out.error.has_value() && out.stats.opcode_count == 1;
}

std::optional<std::string> UnquoteStringArg(std::string_view quoted) {
  if (quoted.size() < 2 || quoted.front() != quoted.back() ||
      (quoted.front() != '\'' && quoted.front() != '"'))
    return std::nullopt;
  std::string out;
  if (!EscapeDecode(quoted.substr(1, quoted.size() - 2), &out)) {
    return std::nullopt;
  }
  return out;
}

std::optional<std::string> DecodeRawUnicodeEscape(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  if (!RawUnicodeEscape(raw, &out)) return std::nullopt;
  return out;
}

std::string FormatBigInt(std::span<const uint8_t> le, size_t max_bytes) {
  if (le.size() > max_bytes) {
    return "<int of " + std::to_string(le.size()) + " bytes>";
  }
  if (le.empty()) return "0";
  const bool negative = (le.back() & 0x80) != 0;
  // Magnitude as little-endian 32-bit limbs.
  std::vector<uint32_t> limbs((le.size() + 3) / 4, 0);
  for (size_t i = 0; i < le.size(); ++i) {
    limbs[i / 4] |= static_cast<uint32_t>(le[i]) << (8 * (i % 4));
  }
  if (negative) {
    // Sign-extend the top limb, then negate (two's complement).
    const size_t used = le.size() % 4;
    if (used != 0) limbs.back() |= ~0U << (8 * used);
    uint64_t carry = 1;
    for (uint32_t& limb : limbs) {
      const uint64_t v = static_cast<uint64_t>(~limb) + carry;
      limb = static_cast<uint32_t>(v);
      carry = v >> 32;
    }
  }
  std::string digits;
  while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  while (!limbs.empty()) {
    uint64_t rem = 0;
    for (size_t i = limbs.size(); i-- > 0;) {
      const uint64_t cur = (rem << 32) | limbs[i];
      limbs[i] = static_cast<uint32_t>(cur / 1000000000);
      rem = cur % 1000000000;
    }
    while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
    for (int k = 0; k < 9; ++k) {
      digits.push_back(static_cast<char>('0' + rem % 10));
      rem /= 10;
      if (limbs.empty() && rem == 0) break;
    }
  }
  if (digits.empty()) digits = "0";
  if (negative) digits.push_back('-');
  std::reverse(digits.begin(), digits.end());
  return digits;
}

}  // namespace dynahug::hooks

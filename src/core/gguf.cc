#include "tokenmill/core/gguf.h"

#include <cstring>
#include <limits>
#include <optional>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace tokenmill {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kDefaultAlignment = 32;
constexpr int kMaxGgmlDims = 4;  // GGML_MAX_DIMS

// GGUF metadata value types (gguf.h's enum gguf_type).
enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// Block geometry of every ggml type, so that the byte size (and thus the bounds) of a
// tensor we cannot compute with is still checked. Ids left out were removed from ggml.
struct GgmlTypeTraits {
  uint32_t id;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
};

constexpr GgmlTypeTraits kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const GgmlTypeTraits* FindGgmlType(uint32_t id) {
  for (const GgmlTypeTraits& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

std::optional<DType> DTypeOfGgmlType(uint32_t id) {
  switch (id) {
    case ggml_type::kF32:
      return DType::kF32;
    case ggml_type::kF16:
      return DType::kF16;
    case ggml_type::kBF16:
      return DType::kBF16;
    case ggml_type::kQ8_0:
      return DType::kQ8_0;
    case ggml_type::kI32:
      return DType::kI32;
    case ggml_type::kI8:
      return DType::kI8;
    default:
      return std::nullopt;
  }
}

// Sequential little-endian reads over the map; every read is bounds-checked, so a
// truncated or lying file ends in a Status naming what was being read and where.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  absl::Status Read(void* dst, size_t n, std::string_view what) {
    if (n > remaining()) {
      return absl::DataLossError(absl::StrCat(path_, ": GGUF file truncated at offset ", pos_,
                                              " reading ", std::string(what), " (", n,
                                              " bytes needed, ", remaining(), " left)"));
    }
    if (n > 0) std::memcpy(dst, data_ + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<T> Scalar(std::string_view what) {
    T v{};
    TM_RETURN_IF_ERROR(Read(&v, sizeof(T), what));
    return v;
  }

  absl::StatusOr<std::string> String(std::string_view what) {
    TM_ASSIGN_OR_RETURN(const uint64_t len, Scalar<uint64_t>(what));
    if (len > remaining()) {
      return absl::DataLossError(absl::StrCat(path_, ": GGUF ", std::string(what), " at offset ",
                                              pos_ - 8, " claims ", len, " bytes but only ",
                                              remaining(), " remain"));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

const char* ValueTypeName(uint32_t type) {
  static constexpr const char* kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                           "int32",  "float32", "bool",   "string", "array",
                                           "uint64", "int64",   "float64"};
  return type <= kF64 ? kNames[type] : "unknown";
}

// Bytes one array element of `type` takes at least (strings: their length prefix).
size_t MinElementBytes(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    default:
      return 8;  // u64, i64, f64, string length
  }
}

absl::StatusOr<GgufValue> ReadScalarValue(Reader& r, uint32_t type, const std::string& what) {
  switch (type) {
    case kU8: {
      TM_ASSIGN_OR_RETURN(uint8_t v, r.Scalar<uint8_t>(what));
      return uint64_t{v};
    }
    case kI8: {
      TM_ASSIGN_OR_RETURN(int8_t v, r.Scalar<int8_t>(what));
      return int64_t{v};
    }
    case kU16: {
      TM_ASSIGN_OR_RETURN(uint16_t v, r.Scalar<uint16_t>(what));
      return uint64_t{v};
    }
    case kI16: {
      TM_ASSIGN_OR_RETURN(int16_t v, r.Scalar<int16_t>(what));
      return int64_t{v};
    }
    case kU32: {
      TM_ASSIGN_OR_RETURN(uint32_t v, r.Scalar<uint32_t>(what));
      return uint64_t{v};
    }
    case kI32: {
      TM_ASSIGN_OR_RETURN(int32_t v, r.Scalar<int32_t>(what));
      return int64_t{v};
    }
    case kU64: {
      TM_ASSIGN_OR_RETURN(uint64_t v, r.Scalar<uint64_t>(what));
      return v;
    }
    case kI64: {
      TM_ASSIGN_OR_RETURN(int64_t v, r.Scalar<int64_t>(what));
      return v;
    }
    case kF32: {
      TM_ASSIGN_OR_RETURN(float v, r.Scalar<float>(what));
      return double{v};
    }
    case kF64: {
      TM_ASSIGN_OR_RETURN(double v, r.Scalar<double>(what));
      return v;
    }
    case kBool: {
      TM_ASSIGN_OR_RETURN(uint8_t v, r.Scalar<uint8_t>(what));
      return v != 0;
    }
    case kString: {
      TM_ASSIGN_OR_RETURN(std::string v, r.String(what));
      return v;
    }
    default:
      return absl::InternalError("not a scalar GGUF type");
  }
}

// Appends one element to the vector of the variant alternative matching `v`.
template <typename T>
void PushAs(GgufArray& array, T v) {
  std::get<std::vector<T>>(array).push_back(std::move(v));
}

absl::StatusOr<GgufArray> ReadArray(Reader& r, const std::string& path, const std::string& key) {
  TM_ASSIGN_OR_RETURN(const uint32_t elem_type, r.Scalar<uint32_t>("array element type"));
  TM_ASSIGN_OR_RETURN(const uint64_t count, r.Scalar<uint64_t>("array length"));
  if (elem_type == kArray || elem_type > kF64) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": GGUF metadata key '", key, "' is an array of ",
                     elem_type == kArray ? "arrays (nested arrays are not supported)"
                                         : absl::StrCat("unknown type ", elem_type)));
  }
  // Checked before any allocation: a hostile count cannot exceed what the file holds.
  if (count > r.remaining() / MinElementBytes(elem_type)) {
    return absl::DataLossError(absl::StrCat(path, ": GGUF metadata key '", key, "' claims ", count,
                                            " elements of ", ValueTypeName(elem_type), " but only ",
                                            r.remaining(), " bytes remain"));
  }
  GgufArray array;
  switch (elem_type) {
    case kI8:
    case kI16:
    case kI32:
    case kI64:
      array = std::vector<int64_t>();
      break;
    case kU8:
    case kU16:
    case kU32:
    case kU64:
      array = std::vector<uint64_t>();
      break;
    case kF32:
    case kF64:
      array = std::vector<double>();
      break;
    case kBool:
      array = std::vector<bool>();
      break;
    default:
      array = std::vector<std::string>();
      break;
  }
  std::visit([&](auto& vec) { vec.reserve(count); }, array);
  const std::string what = absl::StrCat("element of metadata key '", key, "'");
  for (uint64_t i = 0; i < count; ++i) {
    TM_ASSIGN_OR_RETURN(GgufValue v, ReadScalarValue(r, elem_type, what));
    std::visit(
        [&](auto&& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (!std::is_same_v<T, GgufArray>) PushAs<T>(array, std::move(x));
        },
        v);
  }
  return array;
}

bool CheckedMul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace

std::string GgmlTypeName(uint32_t ggml_type) {
  const GgmlTypeTraits* t = FindGgmlType(ggml_type);
  return t != nullptr ? t->name : absl::StrCat("type#", ggml_type);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  TM_ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  TM_RETURN_IF_ERROR(f->Parse());
  return f;
}

namespace {

absl::Status ParseMetadata(Reader& r, uint64_t num_kv, const std::string& path,
                           std::map<std::string, GgufValue>* metadata) {
  constexpr size_t kMinKvBytes = 8 + 4 + 1;  // key length, value type, smallest value
  if (num_kv > r.remaining() / kMinKvBytes) {
    return absl::DataLossError(absl::StrCat(path, ": GGUF header claims ", num_kv,
                                            " metadata entries but only ", r.remaining(),
                                            " bytes remain"));
  }
  for (uint64_t i = 0; i < num_kv; ++i) {
    TM_ASSIGN_OR_RETURN(std::string key, r.String("metadata key"));
    TM_ASSIGN_OR_RETURN(const uint32_t type, r.Scalar<uint32_t>("metadata value type"));
    GgufValue value;
    if (type == kArray) {
      TM_ASSIGN_OR_RETURN(GgufArray array, ReadArray(r, path, key));
      value = std::move(array);
    } else if (type <= kF64) {
      TM_ASSIGN_OR_RETURN(value, ReadScalarValue(r, type, absl::StrCat("value of '", key, "'")));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": GGUF metadata key '", key, "' has unknown value type ", type));
    }
    if (!metadata->emplace(key, std::move(value)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": GGUF metadata key '", key, "' appears twice"));
    }
  }
  return absl::OkStatus();
}

// Reads one tensor info; offset is still relative to the data section.
absl::StatusOr<GgufTensorInfo> ReadTensorInfo(Reader& r, const std::string& path) {
  GgufTensorInfo info;
  TM_ASSIGN_OR_RETURN(info.name, r.String("tensor name"));
  const std::string what = absl::StrCat("info of tensor '", info.name, "'");
  TM_ASSIGN_OR_RETURN(const uint32_t n_dims, r.Scalar<uint32_t>(what));
  if (n_dims > kMaxGgmlDims) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", info.name, "' has ", n_dims, " dimensions (at most 4)"));
  }
  int64_t ne[kMaxGgmlDims] = {1, 1, 1, 1};
  for (uint32_t d = 0; d < n_dims; ++d) {
    TM_ASSIGN_OR_RETURN(const uint64_t n, r.Scalar<uint64_t>(what));
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", info.name, "' has dimension ", d, " = ", n));
    }
    ne[d] = static_cast<int64_t>(n);
  }
  TM_ASSIGN_OR_RETURN(info.ggml_type, r.Scalar<uint32_t>(what));
  TM_ASSIGN_OR_RETURN(info.offset, r.Scalar<uint64_t>(what));

  const GgmlTypeTraits* traits = FindGgmlType(info.ggml_type);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", info.name, "' has unknown ggml type id ", info.ggml_type));
  }
  int64_t num_elems = 1;
  for (int d = 0; d < kMaxGgmlDims; ++d) {
    if (!CheckedMul(num_elems, ne[d], &num_elems)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", info.name, "' has an element count that overflows"));
    }
  }
  if (ne[0] % traits->block_elems != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", info.name, "' of type ", traits->name, " has row length ",
                     ne[0], ", not a multiple of its block size ", traits->block_elems));
  }
  int64_t num_bytes = 0;
  if (!CheckedMul(num_elems / traits->block_elems, traits->block_bytes, &num_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", info.name, "' has a byte size that overflows"));
  }
  info.num_bytes = static_cast<uint64_t>(num_bytes);
  info.shape.rank = static_cast<int>(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) info.shape.dims[d] = ne[n_dims - 1 - d];
  if (std::optional<DType> dtype = DTypeOfGgmlType(info.ggml_type)) {
    info.dtype = *dtype;
  } else {
    info.supported = false;
  }
  return info;
}

}  // namespace

absl::Status GgufFile::Parse() {
  const std::string& p = file_->path();
  Reader r(file_->data(), file_->size(), p);
  TM_ASSIGN_OR_RETURN(const uint32_t magic, r.Scalar<uint32_t>("magic"));
  if (magic != kGgufMagic) {
    return absl::InvalidArgumentError(absl::StrCat(p, ": not a GGUF file (bad magic)"));
  }
  TM_ASSIGN_OR_RETURN(version_, r.Scalar<uint32_t>("version"));
  if (version_ == 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, ": GGUF version 1 is not supported (re-convert it with a current llama.cpp)"));
  }
  if (version_ != 2 && version_ != 3) {
    const bool big_endian = (version_ & 0xffffu) == 0 && version_ != 0;
    return absl::InvalidArgumentError(absl::StrCat(p, ": unsupported GGUF version ", version_,
                                                   big_endian ? " (a big-endian file?)" : "",
                                                   "; supported: 2, 3"));
  }
  TM_ASSIGN_OR_RETURN(const uint64_t num_tensors, r.Scalar<uint64_t>("tensor count"));
  TM_ASSIGN_OR_RETURN(const uint64_t num_kv, r.Scalar<uint64_t>("metadata count"));
  TM_RETURN_IF_ERROR(ParseMetadata(r, num_kv, p, &metadata_));

  alignment_ = kDefaultAlignment;
  if (Has("general.alignment")) {
    absl::StatusOr<int64_t> a = GetInt("general.alignment");
    if (!a.ok() || *a <= 0 || *a > (int64_t{1} << 30) || (*a & (*a - 1)) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, ": general.alignment must be a power of two integer"));
    }
    alignment_ = static_cast<uint32_t>(*a);
  }

  constexpr size_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
  if (num_tensors > r.remaining() / kMinTensorInfoBytes) {
    return absl::DataLossError(absl::StrCat(p, ": GGUF header claims ", num_tensors,
                                            " tensors but only ", r.remaining(), " bytes remain"));
  }
  tensors_.reserve(num_tensors);
  for (uint64_t i = 0; i < num_tensors; ++i) {
    TM_ASSIGN_OR_RETURN(GgufTensorInfo info, ReadTensorInfo(r, p));
    if (!tensor_index_.emplace(info.name, tensors_.size()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, ": tensor '", info.name, "' appears twice"));
    }
    tensors_.push_back(std::move(info));
  }

  const uint64_t size = file_->size();
  data_offset_ = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (GgufTensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": tensor '", t.name, "' offset ", t.offset,
                                                     " is not a multiple of the ", "alignment ",
                                                     alignment_));
    }
    if (data_offset_ > size || t.offset > size - data_offset_ ||
        t.num_bytes > size - data_offset_ - t.offset) {
      return absl::DataLossError(
          absl::StrCat(p, ": tensor '", t.name, "' data (", t.num_bytes, " bytes at data offset ",
                       t.offset, ") lies outside the file of ", size, " bytes (truncated?)"));
    }
    t.offset += data_offset_;
  }
  return absl::OkStatus();
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<TensorView> GgufFile::Tensor(const std::string& name) const {
  const GgufTensorInfo* t = FindTensor(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": tensor '", name, "' not found"));
  }
  if (!t->supported) {
    return absl::InvalidArgumentError(
        absl::StrCat(path(), ": tensor '", name, "' has unsupported type ",
                     GgmlTypeName(t->ggml_type), " (supported: F32, F16, BF16, Q8_0, I32, I8)"));
  }
  TensorView v;
  // The map is read-only; the view's non-const pointer is a TensorView convention.
  v.data = const_cast<uint8_t*>(file_->data() + t->offset);
  v.dtype = t->dtype;
  v.shape = t->shape;
  return v;
}

}  // namespace tokenmill

// Reader for GGUF files (v2 and v3): metadata key/values and tensor descriptors, read
// from a memory map. Shared by model/ (weights, config) and tokenizer/ (vocabulary).
// Every malformed input is an InvalidArgument/DataLoss Status naming the file and the
// key or tensor, never a crash: all offsets and counts are bounds-checked.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/core/mapped_file.h"
#include "tokenmill/core/tensor.h"

namespace tokenmill {

// One metadata value. Arrays hold a homogeneous vector of one scalar kind (or strings).
using GgufArray = std::variant<std::vector<int64_t>, std::vector<uint64_t>,
                               std::vector<double>, std::vector<bool>,
                               std::vector<std::string>>;
using GgufValue = std::variant<int64_t, uint64_t, double, bool, std::string, GgufArray>;

// ggml tensor type ids (ggml.h's enum ggml_type) that tokenmill names in code.
namespace ggml_type {
inline constexpr uint32_t kF32 = 0;
inline constexpr uint32_t kF16 = 1;
inline constexpr uint32_t kQ4_0 = 2;
inline constexpr uint32_t kQ8_0 = 8;
inline constexpr uint32_t kQ4_K = 12;
inline constexpr uint32_t kQ6_K = 14;
inline constexpr uint32_t kI8 = 24;
inline constexpr uint32_t kI16 = 25;
inline constexpr uint32_t kI32 = 26;
inline constexpr uint32_t kI64 = 27;
inline constexpr uint32_t kF64 = 28;
inline constexpr uint32_t kBF16 = 30;
}  // namespace ggml_type

// "Q4_K" for a known ggml type id, "type#<id>" otherwise.
std::string GgmlTypeName(uint32_t ggml_type);

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::kF32;  // only types tokenmill can compute with (see `supported`)
  uint32_t ggml_type = 0;     // the raw ggml type id
  bool supported = true;      // false: a ggml type with no DType (Q4_K...); Tensor() fails
  // Row-major shape, outermost first (the reverse of GGUF's ne[]): a matrix with
  // ne = [in, out] has shape {out, in}.
  Shape shape;
  uint64_t offset = 0;        // from the start of the file
  uint64_t num_bytes = 0;
};

class GgufFile {
 public:
  // Parses the header, metadata and tensor infos. Tensors whose ggml type tokenmill does
  // not support are listed with `supported == false` only as an error at tensor access.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  uint32_t version() const { return version_; }
  // general.alignment (32 when absent); tensor data offsets are multiples of it.
  uint32_t alignment() const { return alignment_; }
  // Start of the tensor data section, from the start of the file.
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return file_->path(); }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  bool Has(const std::string& key) const { return metadata_.count(key) != 0; }

  // Typed accessors: NotFound when absent, InvalidArgument naming the key on a type
  // mismatch. Integer getters accept any integer type that fits.
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  absl::StatusOr<int64_t> GetInt(const std::string& key) const;
  absl::StatusOr<double> GetFloat(const std::string& key) const;  // accepts ints too
  absl::StatusOr<bool> GetBool(const std::string& key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(const std::string& key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(const std::string& key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;
  // A view of the tensor's bytes in the map. NotFound / InvalidArgument (unsupported
  // ggml type, e.g. Q4_K) naming the file and tensor.
  absl::StatusOr<TensorView> Tensor(const std::string& name) const;
  std::shared_ptr<MappedFile> file() const { return file_; }

 private:
  GgufFile() = default;
  absl::Status Parse();  // fills everything below from file_

  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace tokenmill

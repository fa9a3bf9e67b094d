// Reader for Hugging Face safetensors checkpoints, by mmap: a single `*.safetensors` file
// or a sharded checkpoint described by `model.safetensors.index.json`.
//
// Every malformed input (header length past the end, invalid JSON, bad dtype or shape,
// data offsets out of order, overlapping or outside the file, byte count that does not
// match the shape) is an InvalidArgument/DataLoss Status naming the file and tensor.
// Tensors are views into the map (no copy); the reader must outlive them.
//
// Thread-safety: immutable after Open(); any thread may read concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/core/mapped_file.h"
#include "tokenmill/core/tensor.h"

namespace tokenmill {

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype_name;      // as written: "F32", "BF16", "F64", "F8_E4M3", ...
  std::optional<DType> dtype;  // set when tokenmill can compute with it (F32/F16/BF16/I32/I8)
  std::vector<int64_t> dims;   // row-major, outermost first; may exceed kMaxDims
  uint64_t offset = 0;         // of the first byte, from the start of the file
  uint64_t num_bytes = 0;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  std::shared_ptr<MappedFile> file() const { return file_; }
  // Tensors in file order (sorted by offset).
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensorInfo* FindTensor(const std::string& name) const;
  // A view into the map. NotFound, or InvalidArgument naming file, tensor and dtype for a
  // dtype tokenmill cannot compute with (F64, F8...) or more than kMaxDims dimensions.
  absl::StatusOr<TensorView> Tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::shared_ptr<MappedFile> file_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One or more safetensors files seen as one set of named tensors.
class SafetensorsCheckpoint {
 public:
  // `path` is a `.safetensors` file or a `*.safetensors.index.json` whose "weight_map"
  // maps tensor names to shard files in the same directory. Every shard is opened and
  // every mapped tensor must exist in its shard.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // Every tensor name, sorted.
  std::vector<std::string> TensorNames() const;
  bool Has(const std::string& name) const { return where_.count(name) != 0; }
  // The tensor's info and the file holding it; nullptr when absent.
  const SafetensorsTensorInfo* FindTensor(const std::string& name,
                                          const SafetensorsFile** file = nullptr) const;
  absl::StatusOr<TensorView> Tensor(const std::string& name) const;

 private:
  SafetensorsCheckpoint() = default;

  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

}  // namespace tokenmill

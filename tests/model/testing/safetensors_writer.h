// Builds safetensors files in memory for tests, including deliberately broken headers.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tokenmill::testing {

class SafetensorsWriter {
 public:
  // `dtype` is the safetensors name ("F32", "BF16", "F64"...); `data` the exact bytes.
  void AddTensor(const std::string& name, const std::string& dtype,
                 const std::vector<int64_t>& shape, std::string data);
  void SetMetadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  std::vector<std::string> TensorNames() const;

  // 8-byte header length, JSON header padded with spaces to 8 bytes, data in add order.
  std::string Serialize() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string data;
  };
  std::vector<Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A safetensors file from a hand-written JSON header and data bytes.
std::string SafetensorsBytes(const std::string& header_json, const std::string& data);

}  // namespace tokenmill::testing

#include "model/testing/safetensors_writer.h"

#include "model/testing/gguf_writer.h"
#include "nlohmann/json.hpp"

namespace tokenmill::testing {

void SafetensorsWriter::AddTensor(const std::string& name, const std::string& dtype,
                                  const std::vector<int64_t>& shape, std::string data) {
  tensors_.push_back({name, dtype, shape, std::move(data)});
}

std::vector<std::string> SafetensorsWriter::TensorNames() const {
  std::vector<std::string> names;
  for (const Tensor& t : tensors_) names.push_back(t.name);
  return names;
}

std::string SafetensorsWriter::Serialize() const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string data;
  for (const Tensor& t : tensors_) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data += t.data;
  }
  return SafetensorsBytes(header.dump(), data);
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path) const {
  return WriteBytes(path, Serialize());
}

std::string SafetensorsBytes(const std::string& header_json, const std::string& data) {
  std::string header = header_json;
  while ((header.size() + 8) % 8 != 0) header.push_back(' ');
  ByteWriter w;
  w.U64(header.size());
  w.Raw(header.data(), header.size());
  w.Raw(data.data(), data.size());
  return w.bytes();
}

}  // namespace tokenmill::testing

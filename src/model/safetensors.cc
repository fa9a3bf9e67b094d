#include "tokenmill/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

using Json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeEntry {
  const char* name;
  int bits;
  std::optional<DType> dtype;
};

constexpr DTypeEntry kDTypes[] = {
    {"F32", 32, DType::kF32},     {"F16", 16, DType::kF16},     {"BF16", 16, DType::kBF16},
    {"I32", 32, DType::kI32},     {"I8", 8, DType::kI8},        {"F64", 64, std::nullopt},
    {"I64", 64, std::nullopt},    {"U64", 64, std::nullopt},    {"U32", 32, std::nullopt},
    {"I16", 16, std::nullopt},    {"U16", 16, std::nullopt},    {"U8", 8, std::nullopt},
    {"BOOL", 8, std::nullopt},    {"F8_E4M3", 8, std::nullopt}, {"F8_E5M2", 8, std::nullopt},
    {"F8_E8M0", 8, std::nullopt}, {"C64", 64, std::nullopt},    {"F4", 4, std::nullopt},
    {"F6_E2M3", 6, std::nullopt}, {"F6_E3M2", 6, std::nullopt},
};

const DTypeEntry* FindDType(const std::string& name) {
  for (const DTypeEntry& e : kDTypes) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Reads one unsigned integer from a JSON value, refusing floats, negatives and strings.
bool AsUint(const Json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return true;
}

absl::StatusOr<SafetensorsTensorInfo> ParseTensorEntry(const std::string& path,
                                                       const std::string& name, const Json& j,
                                                       uint64_t data_start, uint64_t data_size) {
  const std::string where = absl::StrCat("tensor '", name, "'");
  if (!j.is_object()) return Bad(path, where + " header entry is not an object");
  SafetensorsTensorInfo info;
  info.name = name;
  auto dtype = j.find("dtype");
  if (dtype == j.end() || !dtype->is_string()) return Bad(path, where + " has no string dtype");
  info.dtype_name = dtype->get<std::string>();
  const DTypeEntry* entry = FindDType(info.dtype_name);
  if (entry == nullptr) {
    return Bad(path, absl::StrCat(where, " has unknown dtype '", info.dtype_name, "'"));
  }
  info.dtype = entry->dtype;

  auto shape = j.find("shape");
  if (shape == j.end() || !shape->is_array()) return Bad(path, where + " has no shape array");
  uint64_t num_elems = 1;
  for (const Json& d : *shape) {
    uint64_t n = 0;
    if (!AsUint(d, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(path, absl::StrCat(where, " has an invalid dimension ", d.dump()));
    }
    if (__builtin_mul_overflow(num_elems, n, &num_elems)) {
      return Bad(path, where + " has an element count that overflows");
    }
    info.dims.push_back(static_cast<int64_t>(n));
  }
  uint64_t num_bits = 0;
  if (__builtin_mul_overflow(num_elems, static_cast<uint64_t>(entry->bits), &num_bits)) {
    return Bad(path, where + " has a byte size that overflows");
  }
  const uint64_t expected_bytes = (num_bits + 7) / 8;

  auto offsets = j.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (offsets == j.end() || !offsets->is_array() || offsets->size() != 2 ||
      !AsUint((*offsets)[0], &begin) || !AsUint((*offsets)[1], &end)) {
    return Bad(path, where + " has no data_offsets [begin, end] of unsigned integers");
  }
  if (begin > end) {
    return Bad(path, absl::StrCat(where, " has data_offsets [", begin, ", ", end,
                                  "] with begin after end"));
  }
  if (end > data_size) {
    return absl::DataLossError(absl::StrCat(path, ": ", where, " data_offsets [", begin, ", ", end,
                                            "] lie past the end of the data (", data_size,
                                            " bytes; truncated file?)"));
  }
  if (end - begin != expected_bytes) {
    return Bad(path, absl::StrCat(where, " holds ", end - begin, " bytes but ", info.dtype_name,
                                  " of shape ", shape->dump(), " needs ", expected_bytes));
  }
  info.offset = data_start + begin;
  info.num_bytes = end - begin;
  return info;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  TM_ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  TM_RETURN_IF_ERROR(f->Parse());
  return f;
}

absl::Status SafetensorsFile::Parse() {
  const std::string& p = file_->path();
  const uint64_t size = file_->size();
  if (size < 8) {
    return absl::DataLossError(
        absl::StrCat(p, ": safetensors file too short (", size, " bytes) for its header length"));
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data(), 8);
  if (header_len > size - 8) {
    return absl::DataLossError(absl::StrCat(p, ": safetensors header length ", header_len,
                                            " exceeds the file size ", size, " (truncated?)"));
  }
  if (header_len > kMaxHeaderBytes || header_len < 2) {
    return Bad(p, absl::StrCat("safetensors header length ", header_len, " is implausible"));
  }
  const char* header = reinterpret_cast<const char*>(file_->data() + 8);
  if (header[0] != '{') return Bad(p, "safetensors header does not start with '{'");
  Json root;
  try {
    root = Json::parse(header, header + header_len);
  } catch (const Json::exception& e) {
    return Bad(p, absl::StrCat("safetensors header is not valid JSON: ", e.what()));
  }
  if (!root.is_object()) return Bad(p, "safetensors header is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return Bad(p, "safetensors __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TM_ASSIGN_OR_RETURN(SafetensorsTensorInfo info,
                        ParseTensorEntry(p, it.key(), *it, data_start, data_size));
    tensors_.push_back(std::move(info));
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const auto& a, const auto& b) { return a.offset < b.offset; });
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (i > 0 && tensors_[i].offset < tensors_[i - 1].offset + tensors_[i - 1].num_bytes) {
      return Bad(p, absl::StrCat("tensors '", tensors_[i - 1].name, "' and '", tensors_[i].name,
                                 "' overlap in the data section"));
    }
    index_[tensors_[i].name] = i;
  }
  return absl::OkStatus();
}

const SafetensorsTensorInfo* SafetensorsFile::FindTensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<TensorView> SafetensorsFile::Tensor(const std::string& name) const {
  const SafetensorsTensorInfo* t = FindTensor(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": tensor '", name, "' not found"));
  }
  if (!t->dtype.has_value()) {
    return Bad(path(), absl::StrCat("tensor '", name, "' has unsupported dtype ", t->dtype_name,
                                    " (supported: F32, F16, BF16, I32, I8)"));
  }
  if (t->dims.size() > static_cast<size_t>(kMaxDims)) {
    return Bad(path(), absl::StrCat("tensor '", name, "' has ", t->dims.size(),
                                    " dimensions (at most ", kMaxDims, ")"));
  }
  TensorView v;
  v.data = const_cast<uint8_t*>(file_->data() + t->offset);  // read-only map; see GgufFile
  v.dtype = *t->dtype;
  v.shape.rank = static_cast<int>(t->dims.size());
  for (size_t i = 0; i < t->dims.size(); ++i) v.shape.dims[i] = t->dims[i];
  return v;
}

namespace {

absl::StatusOr<Json> ReadJsonFile(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> f, MappedFile::Open(path));
  const char* begin = reinterpret_cast<const char*>(f->data());
  try {
    return Json::parse(begin, begin + f->size());
  } catch (const Json::exception& e) {
    return Bad(path, absl::StrCat("not valid JSON: ", e.what()));
  }
}

// Shard names come from the index: plain relative names inside the checkpoint directory.
bool IsSafeShardName(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  for (const auto& part : std::filesystem::path(name)) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& path) {
  std::unique_ptr<SafetensorsCheckpoint> c(new SafetensorsCheckpoint());
  c->path_ = path;
  if (!path.ends_with(".json")) {
    TM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(path));
    for (const SafetensorsTensorInfo& t : f->tensors()) c->where_[t.name] = 0;
    c->files_.push_back(std::move(f));
    return c;
  }
  TM_ASSIGN_OR_RETURN(const Json index, ReadJsonFile(path));
  auto map = index.is_object() ? index.find("weight_map") : index.end();
  if (map == index.end() || !map->is_object() || map->empty()) {
    return Bad(path, "safetensors index has no \"weight_map\" object of tensor -> file");
  }
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::map<std::string, size_t> shard_index;  // shard name -> files_ index
  for (auto it = map->begin(); it != map->end(); ++it) {
    if (!it->is_string() || !IsSafeShardName(it->get<std::string>())) {
      return Bad(path, absl::StrCat("weight_map entry for tensor '", it.key(),
                                    "' is not a file name in the checkpoint directory"));
    }
    const std::string shard = it->get<std::string>();
    auto [pos, inserted] = shard_index.emplace(shard, c->files_.size());
    if (inserted) {
      absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
          SafetensorsFile::Open((dir / shard).string());
      if (!f.ok()) {
        return absl::Status(f.status().code(),
                            absl::StrCat(f.status().message(), " (shard of ", path, ")"));
      }
      c->files_.push_back(*std::move(f));
    }
    if (c->files_[pos->second]->FindTensor(it.key()) == nullptr) {
      return absl::NotFoundError(absl::StrCat(path, ": tensor '", it.key(), "' is mapped to ",
                                              shard, " but that shard does not contain it"));
    }
    c->where_[it.key()] = pos->second;
  }
  return c;
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

const SafetensorsTensorInfo* SafetensorsCheckpoint::FindTensor(const std::string& name,
                                                               const SafetensorsFile** file) const {
  auto it = where_.find(name);
  if (it == where_.end()) return nullptr;
  if (file != nullptr) *file = files_[it->second].get();
  return files_[it->second]->FindTensor(name);
}

absl::StatusOr<TensorView> SafetensorsCheckpoint::Tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": tensor '", name, "' not found"));
  }
  return files_[it->second]->Tensor(name);
}

}  // namespace tokenmill

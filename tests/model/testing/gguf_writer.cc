#include "model/testing/gguf_writer.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace tokenmill::testing {

ByteWriter& GgufWriter::Key(const std::string& key, GgufValueType type) {
  Kv* kv = nullptr;
  for (Kv& k : kvs_) {
    if (k.key == key) kv = &k;
  }
  if (kv == nullptr) kv = &kvs_.emplace_back(Kv{key, {}});
  kv->value = ByteWriter();
  kv->value.U32(static_cast<uint32_t>(type));
  return kv->value;
}

void GgufWriter::AddU8(const std::string& k, uint8_t v) { Key(k, GgufValueType::kU8).U8(v); }
void GgufWriter::AddI8(const std::string& k, int8_t v) {
  Key(k, GgufValueType::kI8).U8(static_cast<uint8_t>(v));
}
void GgufWriter::AddU16(const std::string& k, uint16_t v) { Key(k, GgufValueType::kU16).U16(v); }
void GgufWriter::AddI16(const std::string& k, int16_t v) {
  Key(k, GgufValueType::kI16).U16(static_cast<uint16_t>(v));
}
void GgufWriter::AddU32(const std::string& k, uint32_t v) {
  Key(k, GgufValueType::kU32).U32(v);
  if (k == "general.alignment" && v != 0) alignment_ = v;
}
void GgufWriter::AddI32(const std::string& k, int32_t v) {
  Key(k, GgufValueType::kI32).U32(static_cast<uint32_t>(v));
}
void GgufWriter::AddU64(const std::string& k, uint64_t v) { Key(k, GgufValueType::kU64).U64(v); }
void GgufWriter::AddI64(const std::string& k, int64_t v) {
  Key(k, GgufValueType::kI64).U64(static_cast<uint64_t>(v));
}
void GgufWriter::AddF32(const std::string& k, float v) { Key(k, GgufValueType::kF32).F32(v); }
void GgufWriter::AddF64(const std::string& k, double v) { Key(k, GgufValueType::kF64).F64(v); }
void GgufWriter::AddBool(const std::string& k, bool v) { Key(k, GgufValueType::kBool).U8(v); }
void GgufWriter::AddString(const std::string& k, const std::string& v) {
  Key(k, GgufValueType::kString).Str(v);
}

void GgufWriter::AddStringArray(const std::string& k, const std::vector<std::string>& v) {
  ByteWriter& w = Key(k, GgufValueType::kArray);
  w.U32(static_cast<uint32_t>(GgufValueType::kString));
  w.U64(v.size());
  for (const std::string& s : v) w.Str(s);
}

void GgufWriter::AddI32Array(const std::string& k, const std::vector<int32_t>& v) {
  ByteWriter& w = Key(k, GgufValueType::kArray);
  w.U32(static_cast<uint32_t>(GgufValueType::kI32));
  w.U64(v.size());
  for (int32_t x : v) w.U32(static_cast<uint32_t>(x));
}

void GgufWriter::AddF32Array(const std::string& k, const std::vector<float>& v) {
  ByteWriter& w = Key(k, GgufValueType::kArray);
  w.U32(static_cast<uint32_t>(GgufValueType::kF32));
  w.U64(v.size());
  for (float x : v) w.F32(x);
}

void GgufWriter::AddRaw(const std::string& k, GgufValueType type, const std::string& bytes) {
  Key(k, type).Raw(bytes.data(), bytes.size());
}

void GgufWriter::AddTensor(const std::string& name, uint32_t ggml_type,
                           const std::vector<int64_t>& shape, std::string data) {
  tensors_.push_back({name, ggml_type, shape, std::move(data)});
}

std::string GgufWriter::Serialize() const {
  ByteWriter w;
  w.Raw("GGUF", 4);
  w.U32(version_);
  w.U64(tensors_.size());
  w.U64(kvs_.size());
  for (const Kv& kv : kvs_) {
    w.Str(kv.key);
    w.Raw(kv.value.bytes().data(), kv.value.bytes().size());
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    w.Str(t.name);
    w.U32(static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) w.U64(static_cast<uint64_t>(*it));
    w.U32(t.ggml_type);
    w.U64(offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  w.PadTo(alignment_);
  for (const Tensor& t : tensors_) {
    w.Raw(t.data.data(), t.data.size());
    w.PadTo(alignment_);
  }
  return w.bytes();
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  return WriteBytes(path, Serialize());
}

absl::Status WriteBytes(const std::string& path, const std::string& bytes) {
  // A new file, not a truncated one: ext4 (auto_da_alloc) flushes a file rewritten by
  // truncation to disk, which made tests that rewrite files thousands of times I/O-bound.
  std::remove(path.c_str());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

}  // namespace tokenmill::testing

// Builds GGUF files in memory for tests: well-formed ones (tiny models, every metadata
// type) and, through the raw byte helpers, deliberately broken ones.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tokenmill/core/gguf.h"

namespace tokenmill::testing {

// GGUF metadata value type ids (gguf_type).
enum class GgufValueType : uint32_t {
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

// Little-endian byte appender, for hand-made (possibly hostile) files.
class ByteWriter {
 public:
  void U8(uint8_t v) { Raw(&v, 1); }
  void U16(uint16_t v) { Raw(&v, 2); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void F32(float v) { Raw(&v, 4); }
  void F64(double v) { Raw(&v, 8); }
  void Str(const std::string& s) {  // GGUF string: u64 length + bytes
    U64(s.size());
    bytes_ += s;
  }
  void Raw(const void* p, size_t n) { bytes_.append(static_cast<const char*>(p), n); }
  void PadTo(size_t alignment) {
    while (bytes_.size() % alignment != 0) bytes_.push_back('\0');
  }
  const std::string& bytes() const { return bytes_; }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

// Keys are written in first-added order; adding a key again replaces its value, so tests
// can start from a complete model and override one field.
class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  void AddU8(const std::string& key, uint8_t v);
  void AddI8(const std::string& key, int8_t v);
  void AddU16(const std::string& key, uint16_t v);
  void AddI16(const std::string& key, int16_t v);
  void AddU32(const std::string& key, uint32_t v);  // general.alignment also sets alignment
  void AddI32(const std::string& key, int32_t v);
  void AddU64(const std::string& key, uint64_t v);
  void AddI64(const std::string& key, int64_t v);
  void AddF32(const std::string& key, float v);
  void AddF64(const std::string& key, double v);
  void AddBool(const std::string& key, bool v);
  void AddString(const std::string& key, const std::string& v);
  void AddStringArray(const std::string& key, const std::vector<std::string>& v);
  void AddI32Array(const std::string& key, const std::vector<int32_t>& v);
  void AddF32Array(const std::string& key, const std::vector<float>& v);
  // Any key/value with hand-made value bytes (after the type id).
  void AddRaw(const std::string& key, GgufValueType type, const std::string& value_bytes);

  // `shape` is row-major (outermost first), as tokenmill reports it; GGUF stores it
  // reversed. `data` must hold the tensor's exact bytes in `ggml_type`.
  void AddTensor(const std::string& name, uint32_t ggml_type, const std::vector<int64_t>& shape,
                 std::string data);

  // The whole file: header, metadata, tensor infos, aligned data.
  std::string Serialize() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t ggml_type;
    std::vector<int64_t> shape;
    std::string data;
  };
  // Starts (or restarts) entry `key` and returns the writer for its value bytes.
  ByteWriter& Key(const std::string& key, GgufValueType type);

  struct Kv {
    std::string key;
    ByteWriter value;  // type id + value
  };
  uint32_t version_;
  uint32_t alignment_ = 32;
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

// Writes `bytes` to `path` (binary). Failure is a Status naming the file.
absl::Status WriteBytes(const std::string& path, const std::string& bytes);

}  // namespace tokenmill::testing

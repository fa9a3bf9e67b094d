// Element types of weights and activations, and scalar conversions between them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/statusor.h"

namespace tokenmill {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kQ8_0,  // GGUF block quantisation: blocks of 32 int8 with one fp16 scale (34 bytes).
  kI32,
  kI8,
};

inline constexpr int kQ8_0BlockElems = 32;
inline constexpr int kQ8_0BlockBytes = 34;

std::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(std::string_view name);

// Bytes taken by `num_elems` elements. Requires: for kQ8_0, num_elems % 32 == 0.
size_t DTypeBytes(DType dtype, int64_t num_elems);

// IEEE half and bfloat16 conversions (round-to-nearest-even on the way down).
inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

}  // namespace tokenmill

// Non-owning views of tensors. Row-major; shape[0] is the outermost dimension.
// Where the bytes live (host, mmap, device) is the owner's business, not the view's.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "tokenmill/core/dtype.h"
#include "tokenmill/core/status.h"

namespace tokenmill {

inline constexpr int kMaxDims = 4;

struct Shape {
  std::array<int64_t, kMaxDims> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    TM_CHECK(d.size() <= kMaxDims, "rank ", d.size());
    for (int64_t x : d) dims[rank++] = x;
  }
  int64_t operator[](int i) const { return dims[i]; }
  int64_t NumElements() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  std::string ToString() const;
};

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;

  int64_t NumElements() const { return shape.NumElements(); }
  size_t NumBytes() const { return DTypeBytes(dtype, NumElements()); }
  template <typename T>
  T* As() const { return static_cast<T*>(data); }
  // Rows of a 2-D (or flattened leading dims) tensor.
  int64_t Rows() const { return shape.rank == 0 ? 1 : NumElements() / shape[shape.rank - 1]; }
  int64_t Cols() const { return shape.rank == 0 ? 1 : shape[shape.rank - 1]; }
};

}  // namespace tokenmill

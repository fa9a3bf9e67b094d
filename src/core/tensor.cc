#include "tokenmill/core/tensor.h"

#include "absl/strings/str_join.h"

namespace tokenmill {

std::string Shape::ToString() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) absl::StrAppend(&s, i ? ", " : "", dims[i]);
  return s + "]";
}

}  // namespace tokenmill

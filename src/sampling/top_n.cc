#include "sampling/top_n.h"

#include <algorithm>
#include <limits>

#include "sampling/vector_math.h"

namespace tokenmill::sampling_internal {

void TopN(std::span<const float> values, int n, std::vector<Scored>* out) {
  std::vector<Scored>& heap = *out;  // front: the least likely of the best so far
  heap.clear();
  if (n <= 0) return;
  heap.reserve(n);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr size_t kBlock = 16;
  const size_t size = values.size();
  for (size_t begin = 0; begin < size; begin += kBlock) {
    const size_t end = std::min(size, begin + kBlock);
    // Later tokens have larger ids, so one that only ties the front never displaces it.
    if (heap.size() == static_cast<size_t>(n) &&
        MaxIgnoringNaN(values.data() + begin, end - begin) <= heap.front().value) {
      continue;
    }
    for (size_t i = begin; i < end; ++i) {
      const Scored s{values[i], static_cast<int32_t>(i)};
      if (!(s.value > kNegInf)) continue;  // masked or NaN
      if (heap.size() < static_cast<size_t>(n)) {
        heap.push_back(s);
        std::push_heap(heap.begin(), heap.end(), MoreLikely);
      } else if (MoreLikely(s, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), MoreLikely);
        heap.back() = s;
        std::push_heap(heap.begin(), heap.end(), MoreLikely);
      }
    }
  }
  std::sort_heap(heap.begin(), heap.end(), MoreLikely);
}

}  // namespace tokenmill::sampling_internal

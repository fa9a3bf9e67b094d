#include "tokenmill/sampling/candidates.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#include "sampling/top_n.h"
#include "sampling/vector_math.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

using sampling_internal::ExpNonPositive;
using sampling_internal::MoreLikely;
using sampling_internal::Scored;
using sampling_internal::SumWeights;
using sampling_internal::TopN;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The min(k, number unmasked) most likely tokens among those > -inf, in any order.
void MostLikely(std::span<const float> logits, int k, std::vector<Scored>* best) {
  if (k <= 1024) {
    TopN(logits, k, best);
    return;
  }
  // A heap of many entries no longer skips most of the row; partition instead.
  best->clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > kNegInf) best->push_back({logits[i], static_cast<int32_t>(i)});
  }
  if (best->size() <= static_cast<size_t>(k)) return;
  std::nth_element(best->begin(), best->begin() + (k - 1), best->end(), MoreLikely);
  best->resize(k);
}

// Weight histogram for top-p: a weight's float bits, shifted, give 8 buckets per octave,
// in increasing order of weight (positive floats order like their bits).
constexpr int kBucketShift = 20;
constexpr int kNumBuckets = (std::bit_cast<uint32_t>(1.0f) >> kBucketShift) + 1;

int BucketOf(float weight) {
  return static_cast<int>(std::bit_cast<uint32_t>(weight) >> kBucketShift);
}

// Among `members` (one bucket), the least likely one that top-p keeps given `mass_before`,
// the weight of all more likely buckets. Orders the members only as far as needed.
Scored LastKeptInBucket(std::vector<Scored>& members, double mass_before, double target) {
  size_t sorted = 0;
  size_t chunk = 64;
  Scored last = members.front();
  while (sorted < members.size()) {
    const size_t end = std::min(members.size(), sorted + chunk);
    if (end < members.size()) {
      std::nth_element(members.begin() + sorted, members.begin() + end, members.end(), MoreLikely);
    }
    std::sort(members.begin() + sorted, members.begin() + end, MoreLikely);
    for (size_t i = sorted; i < end; ++i) {
      if (i > 0 && mass_before >= target) return last;
      last = members[i];
      mass_before += members[i].value;
    }
    sorted = end;
    chunk *= 4;
  }
  return last;
}

// Keeps the candidates for which keep(value, token_id) holds, in order; returns their weight.
template <typename Keep>
double Filter(CandidateSet* c, Keep keep) {
  float* values = c->values.data();
  int32_t* ids = c->token_ids.data();
  const size_t n = c->size();
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {  // branch-free compaction
    const bool is_kept = keep(values[i], ids[i]);
    values[kept] = values[i];
    ids[kept] = ids[i];
    kept += is_kept;
  }
  c->values.resize(kept);
  c->token_ids.resize(kept);
  return SumWeights(c->values);
}

}  // namespace

float MaxLogit(std::span<const float> logits) {
  return sampling_internal::MaxIgnoringNaN(logits.data(), logits.size());
}

void SelectAll(std::span<const float> logits, CandidateSet* out) {
  out->values.assign(logits.begin(), logits.end());
  out->token_ids.resize(logits.size());
  std::iota(out->token_ids.begin(), out->token_ids.end(), 0);
}

void SelectTopK(std::span<const float> logits, int k, CandidateSet* out) {
  if (k <= 0 || static_cast<size_t>(k) >= logits.size()) {
    SelectAll(logits, out);
    return;
  }
  std::vector<Scored> best;
  MostLikely(logits, k, &best);
  // Reorder the k winners by id instead of rescanning the row for them.
  std::sort(best.begin(), best.end(),
            [](const Scored& a, const Scored& b) { return a.token_id < b.token_id; });
  out->clear();
  for (const Scored& s : best) {
    out->token_ids.push_back(s.token_id);
    out->values.push_back(s.value);
  }
}

double ToWeights(float max_logit, float inv_temperature, CandidateSet* candidates) {
  TM_DCHECK(std::isfinite(max_logit));
  float* v = candidates->values.data();
  const size_t n = candidates->size();
  for (size_t i = 0; i < n; ++i) v[i] = ExpNonPositive((v[i] - max_logit) * inv_temperature);
  return SumWeights(candidates->values);
}

double KeepTopP(float top_p, double total, CandidateSet* candidates) {
  const double target = static_cast<double>(top_p) * total;
  // Several histogram copies so that neighbouring tokens rarely wait on the same slot.
  constexpr int kCopies = 4;
  std::vector<double> mass(kCopies * kNumBuckets, 0.0);
  const std::vector<float>& w = candidates->values;
  // Bucket indices a block at a time (a vectorised shift), then the scalar scatter.
  constexpr size_t kBlock = 512;
  std::array<uint16_t, kBlock> bucket;
  for (size_t begin = 0; begin < w.size(); begin += kBlock) {
    const size_t count = std::min(kBlock, w.size() - begin);
    const float* block = w.data() + begin;
    for (size_t i = 0; i < count; ++i) bucket[i] = static_cast<uint16_t>(BucketOf(block[i]));
    for (size_t i = 0; i + kCopies <= count; i += kCopies) {
      for (size_t c = 0; c < kCopies; ++c) mass[c * kNumBuckets + bucket[i + c]] += block[i + c];
    }
    for (size_t i = count - count % kCopies; i < count; ++i) mass[bucket[i]] += block[i];
  }
  // The boundary bucket: where the mass counted from the most likely bucket reaches target.
  double above = 0.0;
  int boundary = -1;
  for (int b = kNumBuckets - 1; b >= 0; --b) {
    double m = 0.0;
    for (int c = 0; c < kCopies; ++c) m += mass[c * kNumBuckets + b];
    if (above + m >= target) {
      boundary = b;
      break;
    }
    above += m;
  }
  if (boundary < 0) return total;  // rounding: p * total never reached, keep everything
  // Everything below the boundary bucket goes; usually that is most of the vocabulary, so
  // the remaining work runs on a short list.
  Filter(candidates, [&](float value, int32_t) { return BucketOf(value) >= boundary; });
  std::vector<Scored> members;
  for (size_t i = 0; i < candidates->size(); ++i) {
    const float value = candidates->values[i];
    if (BucketOf(value) == boundary) members.push_back({value, candidates->token_ids[i]});
  }
  const Scored last = LastKeptInBucket(members, above, target);
  return Filter(candidates, [&](float value, int32_t id) {
    return BucketOf(value) > boundary || !MoreLikely(last, Scored{value, id});
  });
}

double KeepMinP(float min_p, CandidateSet* candidates) {
  const float threshold = min_p * MaxLogit(candidates->values);
  return Filter(candidates, [&](float value, int32_t) { return value >= threshold; });
}

int32_t DrawCandidate(double uniform, double total, const CandidateSet& candidates) {
  TM_CHECK(!candidates.empty(), "no candidate to draw from");
  const double target = uniform * total;
  const std::vector<float>& w = candidates.values;
  // Skip whole blocks first (fast independent sums), then walk inside the block.
  constexpr size_t kBlock = 256;
  double running = 0.0;
  size_t begin = 0;
  for (; begin + kBlock <= w.size(); begin += kBlock) {
    const double block = SumWeights(w.data() + begin, kBlock);
    if (running + block > target) break;
    running += block;
  }
  int32_t last_nonzero = -1;
  for (size_t i = begin; i < w.size(); ++i) {
    if (w[i] <= 0.0f) continue;
    running += w[i];
    last_nonzero = candidates.token_ids[i];
    if (running > target) return last_nonzero;
  }
  if (last_nonzero >= 0) return last_nonzero;
  for (size_t i = w.size(); i-- > 0;) {
    if (w[i] > 0.0f) return candidates.token_ids[i];
  }
  return candidates.token_ids.back();
}

}  // namespace tokenmill

// Launchers for token selection on the device: penalties, greedy argmax, and seeded
// sampling with temperature, top-k, top-p and min-p. Logits are fp32 [num_rows, vocab].
//
// Sampling semantics (per row, vLLM order): logits / temperature; keep the tokens whose
// probability is >= min_p * max probability; keep the top_k largest; of those, keep the
// smallest top set whose renormalized mass reaches top_p; draw from the renormalized
// distribution over what is kept. Filters cut at a value threshold, so tokens tied with
// the last kept one are kept too. The draw is a Gumbel-max over Philox4x32-10 noise keyed
// by (seed, offset, token id): the same (seed, offset) gives the same token whatever the
// batch or launch configuration. NaN logits count as -inf.
#pragma once

#include "kernels/types.h"

namespace tokenmill::kernels {

struct SamplingRow {
  float temperature = 1.0f;  // <= 0: greedy (argmax, lowest id on ties)
  int top_k = 0;             // <= 0 or >= vocab: off; 1: greedy
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off
  uint64_t seed = 0;
  uint64_t offset = 0;  // distinct per draw of one request (e.g. the output token index)
};

struct PenaltyRow {
  float repetition = 1.0f;  // HF: divides positive / multiplies negative logits of seen tokens
  float frequency = 0.0f;   // OpenAI: minus frequency * output count
  float presence = 0.0f;    // OpenAI: minus presence if the token was output at all
  int32_t entry_begin = 0;  // this row's entries: [entry_begin, entry_end)
  int32_t entry_end = 0;
};

// One distinct token a request has seen (each token at most once per row).
struct PenaltyEntry {
  int32_t token = 0;
  int32_t output_count = 0;  // times generated so far
  int32_t in_prompt = 0;     // nonzero when the prompt holds it
};

// Applies penalties in place to logits [num_rows, vocab]. Entries with tokens outside
// [0, vocab) are ignored.
cudaError_t LaunchApplyPenalties(float* logits, int64_t vocab, int num_rows,
                                 const PenaltyRow* rows, const PenaltyEntry* entries,
                                 cudaStream_t stream);

// out[r] = argmax of row r (lowest id on ties).
cudaError_t LaunchArgmax(const float* logits, int64_t vocab, int num_rows, int32_t* out,
                         cudaStream_t stream);

// out[r] = token drawn for row r with rows[r]'s parameters. Requires vocab < 2^31.
cudaError_t LaunchSample(const float* logits, int64_t vocab, int num_rows,
                         const SamplingRow* rows, int32_t* out, cudaStream_t stream);

}  // namespace tokenmill::kernels

// What `tokenmill inspect PATH` reports about a loaded model: architecture, parameter
// count, weight dtypes and bytes, KV-cache cost per token and the memory the full
// context needs. Pure functions of a LoadedModel; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenmill/model/weights.h"

namespace tokenmill {

struct DTypeUsage {
  DType dtype = DType::kF32;
  int num_tensors = 0;
  int64_t num_elements = 0;
  uint64_t num_bytes = 0;
};

struct ModelSummary {
  ModelConfig config;
  std::string path;
  std::string format;  // "gguf", "safetensors", "demo"
  bool is_random_weights = false;
  int64_t num_parameters = 0;  // from the config (a tied lm_head counted once)
  // The weight tensors as held in memory (a tied lm_head counted once), by dtype, largest
  // first. Norms and biases appear as F32 (the loader converts them).
  std::vector<DTypeUsage> dtypes;
  int num_tensors = 0;
  uint64_t weight_bytes = 0;  // all weight tensors
  uint64_t mapped_bytes = 0;  // of which used in place from memory-mapped files
  uint64_t owned_bytes = 0;   // of which converted copies or generated tensors
  uint64_t file_bytes = 0;    // size of the files mapped (0 for the demo model)
  // KV cache for one token across all layers (K and V).
  uint64_t kv_bytes_per_token_f32 = 0;
  uint64_t kv_bytes_per_token_f16 = 0;  // also bf16
  int context_tokens = 0;               // max_position_embeddings
  // One sequence at full context: weights + its KV cache (activations not included).
  uint64_t full_context_bytes_f16 = 0;
  uint64_t full_context_bytes_f32 = 0;
};

ModelSummary SummarizeModel(const LoadedModel& model);

// Multi-line human-readable report. A model with random weights says so on its first
// line ("RANDOM WEIGHTS").
std::string FormatModelSummary(const ModelSummary& summary);

// "1.50 GiB", "640 B"; "292.5K", "8.03B".
std::string FormatBytes(uint64_t num_bytes);
std::string FormatCount(int64_t count);

}  // namespace tokenmill

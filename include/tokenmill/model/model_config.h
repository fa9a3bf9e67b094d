// Architecture hyper-parameters of a Llama-family model, from HF config.json or GGUF
// metadata. Plain data; validated once by Validate().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tokenmill/backend/backend.h"

namespace tokenmill {

struct ModelConfig {
  std::string architecture;  // HF class name, e.g. "LlamaForCausalLM"; "llama" for GGUF
  std::string name;          // display name (file or directory name, or "demo")
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 2048;
  float rms_norm_eps = 1e-5f;
  RopeParams rope;                  // theta, layout, scaling (head_dim filled in)
  bool tie_word_embeddings = false;
  bool attention_bias = false;      // q/k/v projections carry a bias (Qwen2)
  int sliding_window = 0;           // 0: none. Mistral v0.1 uses 4096.
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  bool is_random_weights = false;   // demo models: every output must say so

  // Tensor parallelism (set by ShardModel, model/sharding.h). On a shard, num_heads,
  // num_kv_heads and intermediate_size are this rank's, and lm_head holds the vocab rows
  // [tp_vocab_start, tp_vocab_start + tp_vocab_size). An unsharded model has tp_size 1.
  int tp_rank = 0;
  int tp_size = 1;
  int tp_vocab_start = 0;
  int tp_vocab_size = 0;  // 0: the whole vocabulary

  // Checks that the numbers are consistent (heads divide, head_dim * heads sensible...).
  absl::Status Validate() const;
  // Parameters (weights), counting a tied lm_head once.
  int64_t NumParameters() const;
};

}  // namespace tokenmill

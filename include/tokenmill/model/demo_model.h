// The demo model: a Llama-shaped network with deterministic random weights, built in
// memory, so that every command works with no model file. Its outputs are meaningless
// and everything that shows them must say so (config.is_random_weights is true).
//
// Specs:
//   "demo"              small and fast on a 2-core CPU: vocab 258 (256 bytes, BOS 256,
//                       EOS 257; the byte tokenizer of tokenizer.h), hidden 256, 4 layers,
//                       8 heads, 4 KV heads, FFN 768, F32, 2048 positions (3.3M params).
//   "demo:llama3.2-1b"  Llama-3.2-1B shapes, BF16, tied embeddings, llama3 RoPE scaling
//                       (2.5 GB of weights).
//   "demo:llama3-8b"    Llama-3(.1)-8B shapes, BF16, vocab 128256, llama3 RoPE scaling
//                       (16 GB of weights).
// Every preset uses BOS 256 and EOS 257 so the byte tokenizer drives it; ids it cannot
// decode exist in the big presets' vocabularies, as in any model/tokenizer pairing.
//
// Weights: matrices ~N(0, 0.02) (an Irwin-Hall approximation, |w| < 0.07), norms 1.0,
// from a counter-based generator: each value depends only on (seed, tensor, index), so
// generation is parallel (all cores) and reproducible bit for bit. Memory is exactly the
// tensors' bytes in their dtype, with no temporary F32 copy.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/model/weights.h"

namespace tokenmill {

// "demo" or "demo:<anything>" (an unknown preset is an error of BuildDemoModel).
bool IsDemoSpec(std::string_view spec);

// The specs BuildDemoModel accepts.
const std::vector<std::string>& DemoPresets();

// The configuration of a preset, without building weights.
absl::StatusOr<ModelConfig> DemoConfig(std::string_view spec);

// Builds the model; format "demo", path = spec. InvalidArgument listing the presets for
// an unknown spec.
absl::StatusOr<std::unique_ptr<LoadedModel>> BuildDemoModel(std::string_view spec);

}  // namespace tokenmill

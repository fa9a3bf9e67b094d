// Hugging Face config.json parsing on arbitrary text: ParseHfConfig must return a Status
// for anything malformed (wrong types, huge or negative sizes, bad rope_scaling), and a
// config it accepts must validate and yield a parameter count without overflow.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "tokenmill/model/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tokenmill::ModelConfig> config = tokenmill::ParseHfConfig(text, "config.json");
  if (!config.ok()) return 0;
  const absl::Status valid = config->Validate();
  TM_FUZZ_ASSERT(valid.ok(), std::string(valid.message()));
  TM_FUZZ_ASSERT(config->NumParameters() > 0, "a valid config has parameters");
  return 0;
}

#include "tokenmill/scheduler/scheduler_config.h"

#include "absl/strings/str_cat.h"

namespace tokenmill {
namespace {

absl::Status Bad(const char* field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("scheduler.", field, " ", why));
}

}  // namespace

absl::Status SchedulerConfig::Validate() const {
  if (max_num_seqs <= 0)
    return Bad("max_num_seqs", absl::StrCat("must be > 0, got ", max_num_seqs));
  if (max_num_batched_tokens < max_num_seqs) {
    return Bad("max_num_batched_tokens",
               absl::StrCat("(", max_num_batched_tokens, ") must be >= max_num_seqs (",
                            max_num_seqs, ")"));
  }
  if (max_model_len < 2) {
    return Bad("max_model_len", absl::StrCat("must be >= 2, got ", max_model_len));
  }
  if (!enable_chunked_prefill && max_num_batched_tokens < max_model_len) {
    return Bad("max_num_batched_tokens",
               absl::StrCat("(", max_num_batched_tokens, ") must be >= max_model_len (",
                            max_model_len, ") when chunked prefill is off"));
  }
  if (max_prefill_chunk_tokens < 0) {
    return Bad("max_prefill_chunk_tokens",
               absl::StrCat("must be >= 0, got ", max_prefill_chunk_tokens));
  }
  if (!(kv_watermark >= 0.0 && kv_watermark < 1.0)) {
    return Bad("kv_watermark", absl::StrCat("must be in [0, 1), got ", kv_watermark));
  }
  if (fair_share_quantum_tokens <= 0) {
    return Bad("fair_share_quantum_tokens",
               absl::StrCat("must be > 0, got ", fair_share_quantum_tokens));
  }
  if (!(priority_aging_s >= 0.0)) {
    return Bad("priority_aging_s", absl::StrCat("must be >= 0, got ", priority_aging_s));
  }
  if (!(default_tenant_weight > 0.0)) {
    return Bad("default_tenant_weight", absl::StrCat("must be > 0, got ", default_tenant_weight));
  }
  for (const auto& [tenant, weight] : tenant_weights) {
    if (!(weight > 0.0)) {
      return Bad(absl::StrCat("tenant_weights[\"", tenant, "\"]").c_str(),
                 absl::StrCat("must be > 0, got ", weight));
    }
  }
  return absl::OkStatus();
}

}  // namespace tokenmill

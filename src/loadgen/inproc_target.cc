#include "tokenmill/loadgen/inproc_target.h"

#include "absl/strings/ascii.h"
#include "tokenmill/api/completion.h"
#include "tokenmill/core/status.h"

namespace tokenmill::loadgen {
namespace {

// "RESOURCE_EXHAUSTED" -> "resource_exhausted", the codes gRPC and the HTTP API report.
std::string CodeName(const absl::Status& status) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

class InprocTarget final : public Target {
 public:
  explicit InprocTarget(const InprocTargetOptions& options) : options_(options) {
    TM_CHECK(options_.engine != nullptr && options_.bundle != nullptr);
  }

  std::string kind() const override { return "inproc"; }
  bool accepts_token_ids() const override { return true; }

  RequestResult Send(const TargetRequest& request) override {
    const Clock* clock = options_.clock;
    RequestResult result;
    CompletionInput input;
    input.prompt_ids = request.prompt_ids;
    input.request_id = request.id;
    input.sampling.max_tokens = request.max_tokens;
    input.sampling.temperature = static_cast<float>(request.temperature);
    input.sampling.seed = request.seed;
    input.sampling.ignore_eos = request.ignore_eos;
    result.send_s = clock->NowSeconds();
    auto fail = [&](const absl::Status& s) {
      result.end_s = clock->NowSeconds();
      result.error_code = CodeName(s);
      result.error_message = std::string(s.message());
      return result;
    };
    auto prepared = PrepareRequest(*options_.bundle, input);
    if (!prepared.ok()) return fail(prepared.status());
    auto stream = options_.engine->Submit(*prepared);
    if (!stream.ok()) return fail(stream.status());
    int64_t num_ids = 0;
    auto on_delta = [&](int, const std::string&, const std::vector<int32_t>& ids) {
      if (ids.empty()) return;
      const double now_s = clock->NowSeconds();
      if (!result.first_token_s.has_value()) result.first_token_s = now_s;
      result.chunk_times_s.push_back(now_s);
      num_ids += static_cast<int64_t>(ids.size());
    };
    const CompletionResult r =
        CollectCompletion(*options_.engine, *options_.bundle, *prepared, **stream, input, on_delta);
    result.end_s = clock->NowSeconds();
    if (!r.status.ok()) return fail(r.status);
    if (!r.choices.empty()) result.finish_reason = OpenAiFinishReason(r.choices[0].finish_reason);
    const RequestUsage& u = r.usage;
    result.output_tokens = u.generated_tokens > 0 ? u.generated_tokens : num_ids;
    result.output_tokens_from_usage = u.generated_tokens > 0;
    result.prompt_tokens = u.prompt_tokens;
    result.cached_tokens = u.cached_tokens;
    result.joules = u.record.joules;
    result.energy_source = metrics::EnergySourceName(u.record.energy_source);
    if (options_.has_prices) {
      result.cost = u.record.cost;
      result.currency = u.record.currency;
    }
    return result;
  }

 private:
  const InprocTargetOptions options_;
};

}  // namespace

std::unique_ptr<Target> MakeInprocTarget(const InprocTargetOptions& options) {
  return std::make_unique<InprocTarget>(options);
}

}  // namespace tokenmill::loadgen

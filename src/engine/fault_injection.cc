#include "tokenmill/engine/fault_injection.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tokenmill {
namespace {

constexpr char kGrammar[] =
    "SPEC is clauses joined by ';': step_error:every=N, step_error:at=K[,K...], "
    "step_delay_ms=D, step_throw:at=K";
constexpr int kMaxDelayMs = 60000;

absl::Status Bad(absl::string_view clause, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("clause '", clause, "': ", what, " (", kGrammar, ")"));
}

// A whole decimal integer in [min, max]; absl::SimpleAtoi alone accepts "+5" and " 5".
bool ParseInt(absl::string_view text, int64_t min, int64_t max, int64_t* out) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return absl::SimpleAtoi(text, out) && *out >= min && *out <= max;
}

absl::Status ParseStepError(absl::string_view clause, absl::string_view args, FaultSpec* spec) {
  constexpr int64_t kMaxStep = std::numeric_limits<int64_t>::max();
  if (absl::ConsumePrefix(&args, "every=")) {
    if (spec->error_every != 0) return Bad(clause, "'every' is given twice");
    if (!ParseInt(args, 1, kMaxStep, &spec->error_every)) {
      return Bad(clause, "every must be an integer >= 1");
    }
    return absl::OkStatus();
  }
  if (absl::ConsumePrefix(&args, "at=")) {
    for (absl::string_view k : absl::StrSplit(args, ',')) {
      int64_t step = 0;
      if (!ParseInt(k, 1, kMaxStep, &step)) {
        return Bad(clause, absl::StrCat("at: '", k, "' is not a step number >= 1"));
      }
      spec->error_at_steps.push_back(step);
    }
    return absl::OkStatus();
  }
  return Bad(clause, "step_error takes every=N or at=K[,K...]");
}

// One step only: the first throw ends the engine, so a second K could never happen.
absl::Status ParseStepThrow(absl::string_view clause, absl::string_view args, FaultSpec* spec) {
  if (!absl::ConsumePrefix(&args, "at=")) return Bad(clause, "step_throw takes at=K");
  if (spec->throw_at_step != 0) return Bad(clause, "step_throw is given twice");
  if (!ParseInt(args, 1, std::numeric_limits<int64_t>::max(), &spec->throw_at_step)) {
    return Bad(clause, absl::StrCat("at: '", args, "' is not a step number >= 1"));
  }
  return absl::OkStatus();
}

absl::Status ParseClause(absl::string_view clause, FaultSpec* spec) {
  absl::string_view rest = clause;
  if (absl::ConsumePrefix(&rest, "step_error:")) return ParseStepError(clause, rest, spec);
  if (absl::ConsumePrefix(&rest, "step_throw:")) return ParseStepThrow(clause, rest, spec);
  if (absl::ConsumePrefix(&rest, "step_delay_ms=")) {
    int64_t ms = 0;
    if (!ParseInt(rest, 0, kMaxDelayMs, &ms)) {
      return Bad(clause,
                 absl::StrCat("step_delay_ms must be an integer in [0, ", kMaxDelayMs, "]"));
    }
    spec->delay_ms = static_cast<int>(ms);
    return absl::OkStatus();
  }
  return Bad(clause, "unknown fault (have: step_error, step_delay_ms, step_throw)");
}

class FaultInjectingExecutor final : public ModelExecutor {
 public:
  FaultInjectingExecutor(std::unique_ptr<ModelExecutor> inner, FaultSpec spec)
      : inner_(std::move(inner)), spec_(std::move(spec)), spec_text_(spec_.ToString()) {}

  const ModelConfig& config() const override { return inner_->config(); }
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int block_size() const override { return inner_->block_size(); }
  int max_num_tokens() const override { return inner_->max_num_tokens(); }
  int max_num_logits() const override { return inner_->max_num_logits(); }

  absl::Status Execute(const BatchPlan& plan, std::span<const BlockCopy> copies,
                       std::vector<float>* logits) override {
    const int64_t step = ++num_steps_;
    if (spec_.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(spec_.delay_ms));
    if (spec_.ThrowsAtStep(step)) {
      throw std::runtime_error(
          absl::StrCat("injected fault: step ", step, " throws (", spec_text_, ")"));
    }
    if (spec_.FailsStep(step)) {
      return absl::InternalError(
          absl::StrCat("injected fault: step ", step, " (", spec_text_, ")"));
    }
    return inner_->Execute(plan, copies, logits);
  }

  std::string Describe() const override {
    return absl::StrCat(inner_->Describe(), ", FAULT INJECTION ", spec_text_);
  }

 private:
  std::unique_ptr<ModelExecutor> inner_;
  const FaultSpec spec_;
  const std::string spec_text_;
  int64_t num_steps_ = 0;  // Execute() calls so far
};

}  // namespace

bool FaultSpec::FailsStep(int64_t step) const {
  if (error_every > 0 && step % error_every == 0) return true;
  return std::binary_search(error_at_steps.begin(), error_at_steps.end(), step);
}

std::string FaultSpec::ToString() const {
  std::vector<std::string> clauses;
  if (error_every > 0) clauses.push_back(absl::StrCat("step_error:every=", error_every));
  if (!error_at_steps.empty()) {
    clauses.push_back(absl::StrCat("step_error:at=", absl::StrJoin(error_at_steps, ",")));
  }
  if (delay_ms > 0) clauses.push_back(absl::StrCat("step_delay_ms=", delay_ms));
  if (throw_at_step > 0) clauses.push_back(absl::StrCat("step_throw:at=", throw_at_step));
  return absl::StrJoin(clauses, ";");
}

absl::StatusOr<FaultSpec> ParseFaultSpec(const std::string& text) {
  FaultSpec spec;
  bool any = false;
  for (absl::string_view clause : absl::StrSplit(text, ';')) {
    clause = absl::StripAsciiWhitespace(clause);
    if (clause.empty()) continue;
    if (absl::Status s = ParseClause(clause, &spec); !s.ok()) return s;
    any = true;
  }
  if (!any) {
    return absl::InvalidArgumentError(
        absl::StrCat("no fault given (", kGrammar, "; leave it unset to inject nothing)"));
  }
  std::sort(spec.error_at_steps.begin(), spec.error_at_steps.end());
  spec.error_at_steps.erase(std::unique(spec.error_at_steps.begin(), spec.error_at_steps.end()),
                            spec.error_at_steps.end());
  return spec;
}

std::unique_ptr<ModelExecutor> MakeFaultInjectingExecutor(std::unique_ptr<ModelExecutor> inner,
                                                          FaultSpec spec) {
  return std::make_unique<FaultInjectingExecutor>(std::move(inner), std::move(spec));
}

}  // namespace tokenmill

#include "tokenmill/api/frontend.h"

#include <cctype>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "api/utf8.h"
#include "spdlog/spdlog.h"
#include "tokenmill/api/errors.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckText(absl::string_view field, const std::string& text) {
  if (!IsValidUtf8(text)) return Invalid(field, "is not valid UTF-8");
  return absl::OkStatus();
}

absl::Status CheckMessages(const nlohmann::ordered_json& messages, int max_messages) {
  if (!messages.is_array()) return Invalid("messages", "must be an array of messages");
  if (messages.empty()) return Invalid("messages", "must not be empty");
  if (static_cast<int>(messages.size()) > max_messages) {
    return Invalid("messages",
                   absl::StrCat(messages.size(), " messages exceed the limit of ", max_messages));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return Invalid(at, "must be an object");
    if (!m.contains("role") || !m["role"].is_string() || m["role"].get<std::string>().empty()) {
      return Invalid(at + ".role", "must be a non-empty string");
    }
    TM_RETURN_IF_ERROR(CheckText(at + ".role", m["role"].get<std::string>()));
    if (!m.contains("content") || !m["content"].is_string()) {
      return Invalid(at + ".content", "must be a string");
    }
    TM_RETURN_IF_ERROR(CheckText(at + ".content", m["content"].get<std::string>()));
  }
  return absl::OkStatus();
}

const char* Plural(int n) { return n == 1 ? "" : "s"; }

}  // namespace

// ---------------------------------------------------------------------------------------
// Frontend

Frontend::Frontend(Engine& engine, const ModelBundle& bundle, const Authenticator& auth,
                   TenantLimiter* limiter, FrontendOptions options,
                   metrics::MetricRegistry* registry, const Clock& clock)
    : engine_(engine),
      bundle_(bundle),
      auth_(auth),
      limiter_(limiter),
      options_(std::move(options)),
      clock_(clock),
      start_s_(clock.NowSeconds()),
      created_unix_s_(static_cast<int64_t>(clock.WallSeconds())) {
  if (registry == nullptr) return;
  // Bounded label values: tenants as many as the serving metrics track, codes by nature.
  auto tenants = std::make_shared<metrics::LabelValueCap>(32);
  auto reasons = std::make_shared<metrics::LabelValueCap>(32);
  rejections_ = &registry->AddCounter(
      {"tokenmill:request_rejections_total",
       "Requests refused before reaching the engine, by status code and reason.",
       {{"model_name", nullptr},
        {"tenant", tenants},
        {"error_code", reasons},
        {"reason", reasons}}});
  active_gauge_ = &registry
                       ->AddGauge({"tokenmill:frontend_active_requests",
                                   "Requests admitted by the front end and not yet finished.",
                                   {{"model_name", nullptr}}})
                       .WithLabels({options_.model_name});
}

absl::StatusOr<Principal> Frontend::Authenticate(absl::string_view authorization) const {
  absl::StatusOr<Principal> who = auth_.Authenticate(authorization);
  if (!who.ok()) RecordRejection("", who.status());
  return who;
}

void Frontend::RecordRejection(absl::string_view tenant, const absl::Status& status) const {
  if (rejections_ == nullptr || status.ok()) return;
  std::string code = absl::StatusCodeToString(status.code());
  for (char& c : code) c = c == ' ' ? '_' : static_cast<char>(std::tolower(c));
  rejections_
      ->WithLabels({options_.model_name, tenant.empty() ? "unknown" : tenant, code,
                    ToHttpError(status).code})
      .Increment();
}

absl::Status Frontend::RequireAdmin(const Principal& who, absl::string_view what) {
  if (who.is_admin) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(what, ": needs an admin key; tenant '", who.tenant, "' is not an admin"));
}

absl::Status Frontend::CheckModel(absl::string_view model) const {
  if (model.empty() || model == options_.model_name) return absl::OkStatus();
  return WithReason(absl::NotFoundError(absl::StrCat("model: '", model,
                                                     "' is not served here; this server serves '",
                                                     options_.model_name, "'")),
                    ErrorReason::kModelNotFound);
}

absl::Status Frontend::ValidateInput(const ClientRequest& r) const {
  const RequestLimits& lim = options_.limits;
  const CompletionInput& in = r.input;
  TM_RETURN_IF_ERROR(CheckModel(r.model));
  if (in.prompt.has_value()) {
    if (in.prompt->empty()) return Invalid("prompt", "must not be empty");
    TM_RETURN_IF_ERROR(CheckText("prompt", *in.prompt));
  }
  if (in.prompt_ids.has_value() && in.prompt_ids->empty()) {
    return Invalid("prompt", "must not be empty");
  }
  if (in.messages.has_value()) TM_RETURN_IF_ERROR(CheckMessages(*in.messages, lim.max_messages));
  if (in.n < 1 || in.n > lim.max_n) {
    return Invalid("n", absl::StrCat("must be in [1, ", lim.max_n, "], got ", in.n));
  }
  if (static_cast<int>(in.stop.size()) > lim.max_stop_strings) {
    return Invalid("stop", absl::StrCat(in.stop.size(), " stop strings exceed the limit of ",
                                        lim.max_stop_strings));
  }
  for (size_t i = 0; i < in.stop.size(); ++i) {
    const std::string at = absl::StrCat("stop[", i, "]");
    if (in.stop[i].empty()) return Invalid(at, "must not be empty");
    if (static_cast<int>(in.stop[i].size()) > lim.max_stop_string_bytes) {
      return Invalid(at, absl::StrCat(in.stop[i].size(), " bytes exceed the limit of ",
                                      lim.max_stop_string_bytes));
    }
    TM_RETURN_IF_ERROR(CheckText(at, in.stop[i]));
  }
  const SamplingParams& sp = in.sampling;
  if (static_cast<int>(sp.stop_token_ids.size()) > lim.max_stop_token_ids) {
    return Invalid("stop_token_ids",
                   absl::StrCat(sp.stop_token_ids.size(), " ids exceed the limit of ",
                                lim.max_stop_token_ids));
  }
  if (sp.logprobs < 0 || sp.logprobs > lim.max_logprobs) {
    return Invalid("logprobs",
                   absl::StrCat("must be in [0, ", lim.max_logprobs, "], got ", sp.logprobs));
  }
  if (r.max_tokens.has_value()) {
    const int cap = lim.max_tokens > 0 ? lim.max_tokens : engine_.max_seq_len();
    if (*r.max_tokens < 1) {
      return Invalid("max_tokens", absl::StrCat("must be >= 1, got ", *r.max_tokens));
    }
    if (*r.max_tokens > cap) {
      return Invalid("max_tokens", absl::StrCat(*r.max_tokens, " exceeds the limit of ", cap));
    }
  }
  return absl::OkStatus();
}

absl::Status Frontend::CheckPromptLength(size_t num_prompt_tokens) const {
  const int context = engine_.max_seq_len();
  int limit = context - 1;
  if (options_.limits.max_prompt_tokens > 0) {
    limit = std::min(limit, options_.limits.max_prompt_tokens);
  }
  if (static_cast<int64_t>(num_prompt_tokens) <= limit) return absl::OkStatus();
  return WithReason(absl::ResourceExhaustedError(absl::StrCat(
                        "prompt: ", num_prompt_tokens, " tokens exceed the limit of ", limit,
                        " prompt tokens (the model's context is ", context, " tokens)")),
                    ErrorReason::kContextLengthExceeded);
}

absl::StatusOr<std::vector<int32_t>> Frontend::Tokenize(const CompletionInput& input) const {
  ClientRequest r;
  r.input = input;
  TM_RETURN_IF_ERROR(ValidateInput(r));
  TM_ASSIGN_OR_RETURN(EngineRequest prepared, PrepareRequest(bundle_, input));
  return prepared.prompt_ids;
}

absl::StatusOr<std::unique_ptr<ActiveRequest>> Frontend::Start(const Principal& who,
                                                               ClientRequest r) {
  auto admitted = Admit(who, std::move(r));
  if (!admitted.ok()) RecordRejection(who.tenant, admitted.status());
  return admitted;
}

absl::StatusOr<std::unique_ptr<ActiveRequest>> Frontend::Admit(const Principal& who,
                                                               ClientRequest r) {
  if (draining()) {
    return absl::UnavailableError("server is draining: not accepting new requests");
  }
  TM_RETURN_IF_ERROR(ValidateInput(r));
  CompletionInput& in = r.input;
  in.tenant = who.tenant;
  in.sampling.max_tokens =
      r.max_tokens.value_or(std::min(options_.limits.default_max_tokens, engine_.max_seq_len()));
  TM_RETURN_IF_ERROR(in.sampling.Validate());
  TM_ASSIGN_OR_RETURN(EngineRequest request, PrepareRequest(bundle_, in));
  request.model = options_.model_name;
  TM_RETURN_IF_ERROR(CheckPromptLength(request.prompt_ids.size()));
  TenantLimiter::Lease lease;
  if (limiter_ != nullptr) {
    const int64_t reserve = static_cast<int64_t>(request.prompt_ids.size()) +
                            static_cast<int64_t>(in.sampling.max_tokens) * in.n;
    TM_ASSIGN_OR_RETURN(lease, limiter_->Acquire(who.tenant, reserve));
  }
  TM_ASSIGN_OR_RETURN(std::shared_ptr<RequestStream> stream, engine_.Submit(request));
  request.id = stream->request_id();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++num_active_;
  }
  if (active_gauge_ != nullptr) active_gauge_->Add(1);
  return std::unique_ptr<ActiveRequest>(new ActiveRequest(*this, std::move(request), std::move(in),
                                                          std::move(stream), std::move(lease),
                                                          std::move(r.protocol)));
}

void Frontend::StartDrain() {
  draining_.store(true);
  engine_.StartDrain();
}

int Frontend::num_active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_active_;
}

bool Frontend::WaitUntilNoActive(double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                           [&] { return num_active_ == 0; });
}

void Frontend::OnRequestDone(const ActiveRequest& r) {
  const RequestUsage& u = r.result_.usage;
  const absl::Status status = r.collected_ ? r.TerminalStatus() : absl::CancelledError("");
  std::string finish;
  for (const CompletionChoice& c : r.result_.choices) {
    absl::StrAppend(&finish, finish.empty() ? "" : ",", OpenAiFinishReason(c.finish_reason));
  }
  spdlog::info(
      "request {} {} tenant={} prompt_tokens={} cached_tokens={} generated_tokens={} "
      "finish={} status={} e2e_s={:.3f}",
      r.protocol_, r.id(), r.tenant(), u.prompt_tokens, u.cached_tokens, u.generated_tokens,
      finish.empty() ? "none" : finish, absl::StatusCodeToString(status.code()), u.e2e_s);
  if (options_.log_prompts) {
    const CompletionInput& in = r.input_;
    std::string prompt =
        in.prompt.has_value() ? *in.prompt
        : in.messages.has_value()
            ? in.messages->dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
            : absl::StrCat(r.request_.prompt_ids.size(), " token id",
                           Plural(static_cast<int>(r.request_.prompt_ids.size())));
    spdlog::info("request {} prompt: {}", r.id(), prompt);
  }
  if (active_gauge_ != nullptr) active_gauge_->Add(-1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    --num_active_;
  }
  idle_cv_.notify_all();
}

// ---------------------------------------------------------------------------------------
// ActiveRequest

ActiveRequest::ActiveRequest(Frontend& frontend, EngineRequest request, CompletionInput input,
                             std::shared_ptr<RequestStream> stream, TenantLimiter::Lease lease,
                             std::string protocol)
    : frontend_(frontend),
      request_(std::move(request)),
      input_(std::move(input)),
      stream_(std::move(stream)),
      lease_(std::move(lease)),
      protocol_(std::move(protocol)) {}

ActiveRequest::~ActiveRequest() {
  // Never streamed (the client left before the response began): free the engine's blocks.
  if (!collected_) frontend_.engine().Cancel(request_.id);
  lease_.set_used_tokens(collected_ ? result_.usage.prompt_tokens + result_.usage.generated_tokens
                                    : 0);
  lease_.Release();
  frontend_.OnRequestDone(*this);
}

const CompletionResult& ActiveRequest::Collect(const CompletionDeltaCallback& on_delta) {
  TM_CHECK(!collected_, "ActiveRequest::Collect called twice");
  result_ = StreamCompletion(frontend_.engine(), frontend_.bundle(), request_, *stream_, input_,
                             on_delta);
  collected_ = true;
  return result_;
}

void ActiveRequest::Cancel(FinishReason reason) {
  if (!cancelled_.exchange(true)) frontend_.engine().Cancel(request_.id, reason);
}

absl::Status ActiveRequest::TerminalStatus() const {
  if (!result_.status.ok()) return result_.status;
  for (const CompletionChoice& c : result_.choices) {
    if (c.finish_reason == FinishReason::kError) return absl::InternalError("request failed");
  }
  for (const CompletionChoice& c : result_.choices) {
    if (c.finish_reason == FinishReason::kDeadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "deadline exceeded after ", result_.usage.generated_tokens, " generated tokens"));
    }
  }
  for (const CompletionChoice& c : result_.choices) {
    if (c.finish_reason == FinishReason::kCancelled) {
      if (cancelled()) return absl::CancelledError("cancelled by the client");
      return absl::UnavailableError("server shutting down: the request was cut short");
    }
  }
  return absl::OkStatus();
}

}  // namespace tokenmill

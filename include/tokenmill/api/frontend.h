// Frontend: what the gRPC and HTTP servers share. It authenticates, checks a request
// against the limits, tokenizes (on the caller's thread), admits it past the tenant
// limiter, submits it to the engine and streams it back (StreamCompletion); it also knows
// when the server drains. Protocol adapters only translate wire formats.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tokenmill/api/auth.h"
#include "tokenmill/api/completion.h"
#include "tokenmill/api/tenant_limiter.h"
#include "tokenmill/engine/engine.h"
#include "tokenmill/metrics/registry.h"

namespace tokenmill {

// Bounds on every input (issue: limits). 0 means "the model's context" where noted.
struct RequestLimits {
  int64_t max_request_bytes = 1 << 20;  // HTTP body, gRPC message
  int max_prompt_tokens = 0;            // 0: the context length minus one
  int max_tokens = 0;                   // cap on a request's max_tokens; 0: the context
  int default_max_tokens = 16;          // when a request gives none (OpenAI's default)
  int max_n = 16;
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_stop_token_ids = 64;
  int max_logprobs = kMaxLogprobs;
  int max_messages = 1024;
};

struct FrontendOptions {
  std::string model_name;  // what clients call the model; requests naming another get NOT_FOUND
  RequestLimits limits;
  bool log_prompts = false;  // prompt text in the request log (off: never logged)
};

// A request as a protocol adapter hands it over: the completion input plus what only the
// front end resolves (max_tokens default and cap, the model name).
struct ClientRequest {
  CompletionInput input;          // input.sampling.max_tokens is ignored
  std::optional<int> max_tokens;  // unset: limits.default_max_tokens
  std::string model;              // "" or the served name
  std::string protocol = "grpc";  // for the request log: "grpc", "http"
};

class Frontend;

// One admitted request, from submission to its last event. Collect on one thread; Cancel
// from any. Destruction releases the tenant lease and writes the request log line.
class ActiveRequest {
 public:
  ~ActiveRequest();
  ActiveRequest(const ActiveRequest&) = delete;
  ActiveRequest& operator=(const ActiveRequest&) = delete;

  const std::string& id() const { return request_.id; }
  const EngineRequest& request() const { return request_; }
  const std::string& tenant() const { return request_.tenant; }

  // Streams the request to its end, calling `on_delta` on this thread. Call once.
  const CompletionResult& Collect(const CompletionDeltaCallback& on_delta);
  // The client went away (or its deadline passed: kDeadline): ends the request at the
  // engine's next step, freeing its blocks. Idempotent; any thread.
  void Cancel(FinishReason reason = FinishReason::kCancelled);
  bool cancelled() const { return cancelled_.load(); }

  // How the request ended, for the protocol's status: OK, the sample's error (INTERNAL),
  // DEADLINE_EXCEEDED, CANCELLED (the client's cancel) or UNAVAILABLE (server shutdown).
  absl::Status TerminalStatus() const;

 private:
  friend class Frontend;
  ActiveRequest(Frontend& frontend, EngineRequest request, CompletionInput input,
                std::shared_ptr<RequestStream> stream, TenantLimiter::Lease lease,
                std::string protocol);

  Frontend& frontend_;
  EngineRequest request_;
  CompletionInput input_;
  std::shared_ptr<RequestStream> stream_;
  TenantLimiter::Lease lease_;
  std::string protocol_;
  std::atomic<bool> cancelled_{false};
  bool collected_ = false;
  CompletionResult result_;
};

class Frontend {
 public:
  // `engine`, `bundle`, `auth`, `limiter` and `registry` (both optional) must outlive the
  // front end. With a registry it exports
  //   tokenmill:request_rejections_total{model_name, tenant, error_code, reason}  (counter)
  //     requests refused before they reached the engine: bad input, auth, limits, queue
  //     full, draining. error_code is the status code name ("resource_exhausted"), reason the
  //     HTTP error code ("queue_full", "rate_limit_exceeded", ...) or "".
  //   tokenmill:frontend_active_requests{model_name}  (gauge) admitted, not yet finished.
  Frontend(Engine& engine, const ModelBundle& bundle, const Authenticator& auth,
           TenantLimiter* limiter, FrontendOptions options,
           metrics::MetricRegistry* registry = nullptr, const Clock& clock = SystemClock::Get());

  Engine& engine() { return engine_; }
  const ModelBundle& bundle() const { return bundle_; }
  const std::string& model_name() const { return options_.model_name; }
  const RequestLimits& limits() const { return options_.limits; }
  const Clock& clock() const { return clock_; }
  bool auth_enabled() const { return auth_.enabled(); }
  double uptime_s() const { return clock_.NowSeconds() - start_s_; }
  int64_t created_unix_s() const { return created_unix_s_; }

  // `authorization`: the header or metadata value, "" when absent.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization) const;
  // PermissionDenied unless `who` is an admin.
  static absl::Status RequireAdmin(const Principal& who, absl::string_view what);
  // NotFound (reason kModelNotFound) unless `model` is "" or the served name.
  absl::Status CheckModel(absl::string_view model) const;

  // Validates, tokenizes, admits and submits. Errors: InvalidArgument naming the field,
  // NotFound (model), ResourceExhausted (limits, tenant quota, queue, prompt longer than the
  // context), Unavailable (draining).
  absl::StatusOr<std::unique_ptr<ActiveRequest>> Start(const Principal& who, ClientRequest request);

  // Tokenize helper for the Tokenize endpoints: text or chat through the same code path as
  // generation (same limits on the input).
  absl::StatusOr<std::vector<int32_t>> Tokenize(const CompletionInput& input) const;

  // Counts a request refused before Start (e.g. a protocol adapter's parse error); Start and
  // Authenticate count their own refusals. `tenant` "" when unknown.
  void RecordRejection(absl::string_view tenant, const absl::Status& status) const;

  // Drain: refuse new requests from now on (Unavailable); requests already admitted go on.
  void StartDrain();
  bool draining() const { return draining_.load(); }
  // Admitted requests whose ActiveRequest still exists.
  int num_active() const;
  // Waits until num_active() is 0; false on timeout.
  bool WaitUntilNoActive(double timeout_s);

 private:
  friend class ActiveRequest;
  absl::StatusOr<std::unique_ptr<ActiveRequest>> Admit(const Principal& who, ClientRequest request);
  absl::Status ValidateInput(const ClientRequest& request) const;
  absl::Status CheckPromptLength(size_t num_prompt_tokens) const;
  void OnRequestDone(const ActiveRequest& request);

  Engine& engine_;
  const ModelBundle& bundle_;
  const Authenticator& auth_;
  TenantLimiter* limiter_;
  const FrontendOptions options_;
  const Clock& clock_;
  const double start_s_;
  const int64_t created_unix_s_;
  std::atomic<bool> draining_{false};
  metrics::CounterFamily* rejections_ = nullptr;  // null without a registry
  metrics::Gauge* active_gauge_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  int num_active_ = 0;
};

}  // namespace tokenmill

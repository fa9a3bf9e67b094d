#include "api/grpc_service.h"

#include <chrono>
#include <deque>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/proto_convert.h"
#include "api/utf8.h"
#include "spdlog/spdlog.h"
#include "tokenmill/api/errors.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

using WallClock = std::chrono::system_clock;

// Seconds left before the call's deadline; nullopt when it has none.
std::optional<double> SecondsLeft(const grpc::CallbackServerContext& ctx) {
  const WallClock::time_point deadline = ctx.deadline();
  // gRPC reports "no deadline" as (nearly) time_point::max().
  if (deadline >= WallClock::time_point::max() - std::chrono::hours(24 * 365)) return std::nullopt;
  return std::chrono::duration<double>(deadline - WallClock::now()).count();
}

// The bytes of a message as gRPC received them (usually one slice).
absl::StatusOr<std::string> Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (const grpc::Status s = buffer.Dump(&slices); !s.ok()) {
    // Not read as an empty message, which would be a valid request to some methods.
    return absl::InvalidArgumentError(
        absl::StrCat("request: cannot read the message: ", s.error_message()));
  }
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes;
}

// Refuses a call whose request message never arrived. The raw handlers, unlike the generated
// typed ones, are called without it (an invalid buffer): the client sent none, or the call
// ended first. Such a call is not an empty request.
absl::Status CheckRequestArrived(const grpc::CallbackServerContext& ctx,
                                 const grpc::ByteBuffer& bytes, absl::string_view type_name) {
  if (bytes.Valid()) return absl::OkStatus();
  if (!ctx.IsCancelled()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: the call carried no ", type_name, " message"));
  }
  if (CancelReasonFor(SecondsLeft(ctx)) == FinishReason::kDeadline) {
    return absl::DeadlineExceededError("deadline passed before the request arrived");
  }
  return absl::CancelledError("the call was cancelled before the request arrived");
}

// The call's request, parsed from the bytes gRPC received (errors: CheckRequestArrived's,
// then ParseRequestFromWire's).
template <typename Request>
absl::StatusOr<Request> ReadRequest(const grpc::CallbackServerContext& ctx,
                                    const grpc::ByteBuffer& bytes) {
  TM_RETURN_IF_ERROR(CheckRequestArrived(ctx, bytes, Request::descriptor()->full_name()));
  TM_ASSIGN_OR_RETURN(const std::string wire, Flatten(bytes));
  return RequestFromWire<Request>(wire);
}

// One Generate call. The worker thread (Run) produces messages; gRPC writes them one at a
// time (OnWriteDone pops the queue). Messages for the same sample that pile up behind a slow
// client are merged, so a slow reader gets fewer, larger messages instead of unbounded ones.
class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateReactor(Frontend& frontend, WorkerGroup& workers, grpc::CallbackServerContext* ctx,
                  const grpc::ByteBuffer* request)
      : frontend_(frontend), ctx_(ctx), request_(request) {
    workers.Spawn([this] { Run(); });
  }

  void OnWriteDone(bool ok) override {
    const v1::GenerateResponse* next = nullptr;
    bool finish = false;
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.pop_front();
      if (!ok) {
        // The client is gone (or its deadline passed): nobody will read the rest.
        write_failed_ = true;
        queue_.clear();
        if (active_ != nullptr) active_->Cancel(CancelReason());
      }
      if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        if (finish_requested_ && !finished_) {
          finished_ = finish = true;
          status = final_status_;
        }
      }
    }
    if (next != nullptr) Write(*next);
    if (finish) Finish(status);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (active_ != nullptr) active_->Cancel(CancelReason());
  }

  void OnDone() override { delete this; }

 private:
  FinishReason CancelReason() const { return CancelReasonFor(SecondsLeft(*ctx_)); }

  absl::StatusOr<ClientRequest> ParseRequest() const {
    TM_ASSIGN_OR_RETURN(v1::GenerateRequest request,
                        ReadRequest<v1::GenerateRequest>(*ctx_, *request_));
    TM_ASSIGN_OR_RETURN(ClientRequest client, ClientRequestFromProto(request));
    if (const std::optional<double> left = SecondsLeft(*ctx_); left.has_value()) {
      if (*left <= 0) return absl::DeadlineExceededError("deadline passed before admission");
      client.input.deadline_s = frontend_.clock().NowSeconds() + *left;
    }
    return client;
  }

  // The request, or the refusal (counted) of one that does not parse, convert or arrived late.
  absl::StatusOr<ClientRequest> Convert(const Principal& who) {
    absl::StatusOr<ClientRequest> client = ParseRequest();
    if (!client.ok()) frontend_.RecordRejection(who.tenant, client.status());
    return client;
  }

  absl::Status Serve() {
    TM_ASSIGN_OR_RETURN(Principal who, frontend_.Authenticate(AuthorizationOf(*ctx_)));
    TM_ASSIGN_OR_RETURN(ClientRequest client, Convert(who));
    const int top_logprobs = client.input.sampling.logprobs;
    TM_ASSIGN_OR_RETURN(std::unique_ptr<ActiveRequest> active,
                        frontend_.Start(who, std::move(client)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_ = active.get();
      if (cancelled_) active->Cancel(CancelReason());
    }
    const Tokenizer* tokenizer = frontend_.bundle().tokenizer.get();
    const std::string id = active->id();
    const CompletionResult& result = active->Collect([&](const CompletionDelta& d) {
      Send(DeltaToProto(id, d, tokenizer, top_logprobs), /*mergeable=*/true);
    });
    absl::Status status = active->TerminalStatus();
    if (status.ok()) {
      v1::GenerateResponse last;
      last.set_request_id(id);
      FillFinalInfo(result, last.mutable_final());
      Send(std::move(last), /*mergeable=*/false);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_ = nullptr;
    }
    return status;
  }

  void Run() {
    absl::Status status;
    try {
      status = Serve();
    } catch (const std::exception& e) {
      spdlog::error("grpc: Generate threw: {}", e.what());
      status = absl::InternalError("internal error");
    }
    // Nothing touches `this` after FinishWith: OnDone may delete it at once.
    FinishWith(ToGrpcStatus(status));
  }

  void Send(v1::GenerateResponse msg, bool mergeable) {
    const v1::GenerateResponse* start = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (write_failed_) return;
      // queue_.front() is in flight while writing_; anything behind it may still change.
      const size_t in_flight = writing_ ? 1 : 0;
      if (mergeable && queue_.size() > in_flight) {
        v1::GenerateResponse& back = queue_.back();
        if (back.index() == msg.index() && !back.has_final() &&
            back.finish_reason() == v1::FINISH_REASON_UNSPECIFIED) {
          MergeDelta(back, msg);
          return;
        }
      }
      queue_.push_back(std::move(msg));
      if (!writing_) {
        writing_ = true;
        start = &queue_.front();
      }
    }
    if (start != nullptr) Write(*start);
  }

  // Requires: this thread owns the write in flight (it set writing_, or OnWriteDone of the
  // previous write runs it), so wire_ is free.
  void Write(const v1::GenerateResponse& msg) {
    bool own_buffer = false;
    wire_.Clear();  // the previous message's write is done; Serialize needs an empty buffer
    const grpc::Status s =
        grpc::SerializationTraits<v1::GenerateResponse>::Serialize(msg, &wire_, &own_buffer);
    if (!s.ok()) spdlog::error("grpc: cannot serialize a GenerateResponse: {}", s.error_message());
    StartWrite(&wire_);
  }

  void FinishWith(const grpc::Status& status) {
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      finish_requested_ = true;
      final_status_ = status;
      if (!writing_) finished_ = finish = true;
    }
    if (finish) Finish(status);
  }

  Frontend& frontend_;
  grpc::CallbackServerContext* const ctx_;
  const grpc::ByteBuffer* const request_;
  grpc::ByteBuffer wire_;  // the serialized queue_.front() while it is written
  std::mutex mu_;
  std::deque<v1::GenerateResponse> queue_;  // references stay valid across push_back
  bool writing_ = false;
  bool write_failed_ = false;
  bool cancelled_ = false;
  bool finish_requested_ = false;
  bool finished_ = false;
  grpc::Status final_status_;
  ActiveRequest* active_ = nullptr;  // while Serve streams; guarded by mu_
};

// What a unary method does with its parsed request: fills `response`, or says why not.
template <typename Request, typename Response>
using UnaryBody = absl::Status (*)(Frontend&, const Principal&, const Request&, Response&);

template <typename Response>
absl::Status SerializeResponse(const Response& response, grpc::ByteBuffer& out) {
  bool own_buffer = false;
  const grpc::Status s =
      grpc::SerializationTraits<Response>::Serialize(response, &out, &own_buffer);
  if (s.ok()) return absl::OkStatus();
  spdlog::error("grpc: cannot serialize a {}: {}", Response::descriptor()->full_name(),
                s.error_message());
  return absl::InternalError("internal error");
}

// Authentication comes first (an unauthenticated caller learns nothing about its bytes); a
// request that cannot be read is refused and counted, as Generate's are.
template <typename Request, typename Response>
absl::Status RunUnary(Frontend& frontend, const grpc::CallbackServerContext& ctx,
                      const grpc::ByteBuffer& request_bytes, grpc::ByteBuffer& response_bytes,
                      UnaryBody<Request, Response> body) {
  TM_ASSIGN_OR_RETURN(Principal who, frontend.Authenticate(AuthorizationOf(ctx)));
  absl::StatusOr<Request> request = ReadRequest<Request>(ctx, request_bytes);
  if (!request.ok()) {
    frontend.RecordRejection(who.tenant, request.status());
    return request.status();
  }
  Response response;
  TM_RETURN_IF_ERROR(body(frontend, who, *request, response));
  return SerializeResponse(response, response_bytes);
}

// Every unary method of the service: RunUnary, its outcome the call's status. No exception
// leaves: gRPC would answer it with a bare UNIMPLEMENTED, and nothing would be logged.
template <typename Request, typename Response>
grpc::ServerUnaryReactor* ServeUnary(Frontend& frontend, grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request_bytes,
                                     grpc::ByteBuffer* response_bytes,
                                     UnaryBody<Request, Response> body) {
  absl::Status status;
  try {
    status = RunUnary(frontend, *ctx, *request_bytes, *response_bytes, body);
  } catch (const std::exception& e) {
    spdlog::error("grpc: {} threw: {}", Request::descriptor()->name(), e.what());
    status = absl::InternalError("internal error");
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status AnswerTokenize(Frontend& frontend, const Principal&,
                            const v1::TokenizeRequest& request, v1::TokenizeResponse& response) {
  TM_RETURN_IF_ERROR(frontend.CheckModel(request.model()));
  TM_ASSIGN_OR_RETURN(CompletionInput input, TokenizeInputFromProto(request));
  TM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, frontend.Tokenize(input));
  const Tokenizer* tok = frontend.bundle().tokenizer.get();
  for (int32_t id : ids) {
    response.add_token_ids(id);
    const std::string_view piece = tok != nullptr ? tok->TokenString(id) : std::string_view();
    response.add_tokens(SanitizeUtf8(absl::string_view(piece.data(), piece.size())));
  }
  response.set_max_model_len(frontend.engine().max_seq_len());
  return absl::OkStatus();
}

absl::Status AnswerDetokenize(Frontend& frontend, const Principal&,
                              const v1::DetokenizeRequest& request,
                              v1::DetokenizeResponse& response) {
  TM_RETURN_IF_ERROR(frontend.CheckModel(request.model()));
  const Tokenizer* tok = frontend.bundle().tokenizer.get();
  if (tok == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("model: '", frontend.model_name(), "' has no tokenizer"));
  }
  const std::vector<int32_t> ids(request.token_ids().begin(), request.token_ids().end());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tok->vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token_ids[", i, "]: ", ids[i], " is outside [0, ", tok->vocab_size(), ")"));
    }
  }
  TM_ASSIGN_OR_RETURN(std::string text, tok->Decode(ids, !request.has_skip_special_tokens() ||
                                                             request.skip_special_tokens()));
  response.set_text(SanitizeUtf8(text));
  return absl::OkStatus();
}

absl::Status AnswerListModels(Frontend& frontend, const Principal&, const v1::ListModelsRequest&,
                              v1::ListModelsResponse& response) {
  const ModelBundle& b = frontend.bundle();
  v1::ModelInfo* m = response.add_models();
  m->set_id(frontend.model_name());
  m->set_architecture(b.model->config.architecture);
  m->set_max_model_len(frontend.engine().max_seq_len());
  m->set_vocab_size(b.model->config.vocab_size);
  m->set_has_tokenizer(b.tokenizer != nullptr);
  m->set_has_chat_template(b.chat_template.has_value());
  m->set_random_weights(b.model->config.is_random_weights);
  m->set_created(frontend.created_unix_s());
  return absl::OkStatus();
}

absl::Status AnswerGetStats(Frontend& frontend, const Principal& who, const v1::GetStatsRequest&,
                            v1::GetStatsResponse& response) {
  TM_RETURN_IF_ERROR(Frontend::RequireAdmin(who, "GetStats"));
  FillStats(frontend.engine().stats(), frontend.engine().executor().block_size(), &response);
  response.set_model(frontend.model_name());
  response.set_num_active_streams(frontend.num_active());
  response.set_draining(frontend.draining());
  response.set_uptime_s(frontend.uptime_s());
  return absl::OkStatus();
}
}  // namespace

void WorkerGroup::Spawn(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++num_running_;
  }
  std::thread([this, fn = std::move(fn)] {
    fn();
    // Notify under the lock: a waiter may destroy the group as soon as it can lock.
    std::lock_guard<std::mutex> lock(mu_);
    --num_running_;
    cv_.notify_all();
  }).detach();
}

bool WorkerGroup::Wait(double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                      [&] { return num_running_ == 0; });
}

std::string AuthorizationOf(const grpc::CallbackServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  return new GenerateReactor(frontend_, workers_, ctx, request);
}

FinishReason CancelReasonFor(std::optional<double> seconds_left) {
  return seconds_left.has_value() && *seconds_left <= kDeadlineCancelSlackS
             ? FinishReason::kDeadline
             : FinishReason::kCancelled;
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return ServeUnary(frontend_, ctx, request, response, AnswerTokenize);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return ServeUnary(frontend_, ctx, request, response, AnswerDetokenize);
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return ServeUnary(frontend_, ctx, request, response, AnswerListModels);
}

grpc::ServerUnaryReactor* InferenceService::GetStats(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return ServeUnary(frontend_, ctx, request, response, AnswerGetStats);
}

}  // namespace tokenmill

// tokenmill.v1.Inference on gRPC's callback API (private to src/api).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>

#include "tokenmill/api/frontend.h"
#include "tokenmill/v1/service.grpc.pb.h"

namespace tokenmill {

// Detached threads that can be waited for (Generate streams run on one each).
class WorkerGroup {
 public:
  ~WorkerGroup() { Wait(1e9); }
  void Spawn(std::function<void()> fn);
  // False when threads are still running after `timeout_s`.
  bool Wait(double timeout_s);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int num_running_ = 0;
};

// Generate takes its request as bytes and parses it itself: the generated handler answers a
// request protobuf cannot parse (a string field with invalid UTF-8) with a bare UNIMPLEMENTED,
// where the client must get INVALID_ARGUMENT naming the field (and the refusal be counted).
class InferenceService final
    : public v1::Inference::WithRawCallbackMethod_Generate<v1::Inference::CallbackService> {
 public:
  explicit InferenceService(Frontend& frontend) : frontend_(frontend) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) override;

  WorkerGroup& workers() { return workers_; }

 private:
  Frontend& frontend_;
  WorkerGroup workers_;
};

// How a Generate call that its client cancelled ends: kDeadline when the call had a deadline
// and at most kDeadlineCancelSlackS of it was left, else kCancelled. A client's deadline timer
// fires before ours (ours started when the call arrived) and its cancel can reach us first.
inline constexpr double kDeadlineCancelSlackS = 0.25;
FinishReason CancelReasonFor(std::optional<double> seconds_left);

// The `authorization` metadata value, "" when absent.
std::string AuthorizationOf(const grpc::CallbackServerContext& context);

}  // namespace tokenmill

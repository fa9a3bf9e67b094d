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

// Every method of tokenmill.v1.Inference takes its request as bytes and parses it itself
// (ServeUnary in the .cc, and Generate's reactor): gRPC's generated handler answers a request
// protobuf cannot parse (a string field with invalid UTF-8, truncated or garbage bytes) or one
// that never arrived with a bare UNIMPLEMENTED, where the client must get INVALID_ARGUMENT
// naming the field (and the refusal be counted). A method added to the proto without its raw
// handler here is answered UNIMPLEMENTED, which tests/api/grpc_service_test catches.
using RawInferenceService = v1::Inference::WithRawCallbackMethod_Generate<
    v1::Inference::WithRawCallbackMethod_Tokenize<v1::Inference::WithRawCallbackMethod_Detokenize<
        v1::Inference::WithRawCallbackMethod_ListModels<
            v1::Inference::WithRawCallbackMethod_GetStats<v1::Inference::Service>>>>>;

// Thread-safety: gRPC calls the methods from its threads, concurrently; `frontend` must
// outlive the service and the threads of workers().
class InferenceService final : public RawInferenceService {
 public:
  explicit InferenceService(Frontend& frontend) : frontend_(frontend) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

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

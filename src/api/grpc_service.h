// tokenmill.v1.Inference on gRPC's callback API (private to src/api).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>

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

class InferenceService final : public v1::Inference::CallbackService {
 public:
  explicit InferenceService(Frontend& frontend) : frontend_(frontend) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
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

// The `authorization` metadata value, "" when absent.
std::string AuthorizationOf(const grpc::CallbackServerContext& context);

}  // namespace tokenmill

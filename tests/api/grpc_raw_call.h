// Test helper: a gRPC call whose request message is arbitrary bytes (or missing altogether),
// as a broken or hostile client sends them, for any method of any service: the generated stubs
// can only send well-formed messages. Used by tests/api and tests/e2e.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace tokenmill::testing {

struct RawCallOutcome {
  grpc::Status status;
  std::vector<std::string> replies;  // the response messages' bytes, in order
  bool timed_out = false;            // the completion queue gave no answer within the deadline
};

// Calls `method` ("/tokenmill.v1.Inference/Tokenize") on `channel` with `request` as its one
// request message, or with none (nullopt: the client half-closes at once). Reads up to
// `max_replies` response messages. The call has a deadline of `timeout_s`, so a server that
// never answers ends it with DEADLINE_EXCEEDED instead of blocking the test.
inline RawCallOutcome CallWithRawBytes(const std::shared_ptr<grpc::Channel>& channel,
                                       const std::string& method,
                                       const std::optional<std::string>& request,
                                       const std::string& api_key = "", double timeout_s = 10,
                                       int max_replies = 8) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  ctx.set_deadline(deadline);
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  RawCallOutcome out;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(&ctx, method, &cq);
  // One asynchronous operation, waited for (a little past the call's deadline, which ends it).
  auto step = [&](auto&& start) {
    start(reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    const auto status = cq.AsyncNext(&tag, &ok, deadline + std::chrono::seconds(5));
    if (status != grpc::CompletionQueue::GOT_EVENT) out.timed_out = true;
    return status == grpc::CompletionQueue::GOT_EVENT && ok;
  };
  if (step([&](void* tag) { call->StartCall(tag); })) {
    if (request.has_value()) {
      grpc::Slice slice(*request);
      grpc::ByteBuffer message(&slice, 1);
      step([&](void* tag) { call->Write(message, tag); });
    }
    step([&](void* tag) { call->WritesDone(tag); });
    for (int i = 0; i < max_replies && !out.timed_out; ++i) {
      grpc::ByteBuffer reply;
      if (!step([&](void* tag) { call->Read(&reply, tag); })) break;
      std::vector<grpc::Slice> slices;
      std::string bytes;
      if (reply.Dump(&slices).ok()) {
        for (const grpc::Slice& s : slices) {
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
      out.replies.push_back(std::move(bytes));
    }
  }
  if (!out.timed_out) step([&](void* tag) { call->Finish(&out.status, tag); });
  if (out.timed_out) ctx.TryCancel();
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

}  // namespace tokenmill::testing

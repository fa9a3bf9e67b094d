// The gRPC front end: tokenmill.v1.Inference (proto/tokenmill/v1/service.proto) on the callback
// API, the standard grpc.health.v1.Health service and server reflection.
//
// Generate runs each request's stream on its own front-end thread (tokenization,
// detokenization, stop strings) and writes messages through the reactor; when the client
// cancels, disconnects or its deadline passes, the engine request is cancelled at once
// (OnCancel), freeing its KV blocks. The call's deadline is the engine request's deadline.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tokenmill/api/frontend.h"

namespace grpc {
class Server;
}

namespace tokenmill {

class InferenceService;

struct GrpcServerOptions {
  std::string host = "127.0.0.1";
  int port = 50051;        // 0: any free port (see GrpcServer::port())
  bool reflection = true;  // grpc.reflection.v1alpha.ServerReflection
  std::string cert_file;   // TLS when both are set (PEM)
  std::string key_file;
};

class GrpcServer {
 public:
  // Builds and starts the server. `frontend` must outlive it. Errors: cannot bind, TLS files
  // unreadable.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(Frontend& frontend,
                                                           const GrpcServerOptions& options);
  ~GrpcServer();  // Shutdown(0)
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  int port() const { return port_; }
  bool is_tls() const { return is_tls_; }
  // grpc.health.v1: SERVING or NOT_SERVING, for "" and "tokenmill.v1.Inference". Once the
  // front end's engine has failed (Engine::health()) it is NOT_SERVING for good: set from
  // the engine's step thread as it fails, and SetServing(true) no longer changes it.
  void SetServing(bool serving);
  // Refuses new calls, gives in-flight ones `timeout_s` to finish, then cancels them and
  // waits for every Generate thread to end. Idempotent.
  void Shutdown(double timeout_s);

 private:
  class HealthSwitch;
  GrpcServer() = default;

  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<HealthSwitch> health_;  // shared with the engine's failure observer
  int port_ = 0;
  bool is_tls_ = false;
  bool shut_down_ = false;
};

}  // namespace tokenmill

#include "tokenmill/api/grpc_server.h"

#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "api/grpc_service.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "spdlog/spdlog.h"

namespace tokenmill {
namespace {

constexpr char kServiceName[] = "tokenmill.v1.Inference";

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("tls: cannot read ", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string HostPort(const std::string& host, int port) {
  // IPv6 literals need brackets in a gRPC address.
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace

// The health status, shared with the engine's failure observer. The engine keeps its
// observers for its own lifetime, which may outlast this server: Detach() leaves the
// observer nothing to touch.
class GrpcServer::HealthSwitch {
 public:
  explicit HealthSwitch(grpc::HealthCheckServiceInterface* health) : health_(health) {}
  void Set(bool serving) {
    std::lock_guard<std::mutex> lock(mu_);
    Apply(serving && !is_engine_failed_);
  }
  void EngineFailed() {
    std::lock_guard<std::mutex> lock(mu_);
    is_engine_failed_ = true;
    Apply(false);
  }
  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    health_ = nullptr;
  }

 private:
  void Apply(bool serving) {
    if (health_ == nullptr) return;
    health_->SetServingStatus(serving);  // "" and every registered service
    health_->SetServingStatus(kServiceName, serving);
  }

  std::mutex mu_;
  grpc::HealthCheckServiceInterface* health_;  // null once detached
  bool is_engine_failed_ = false;
};

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(Frontend& frontend,
                                                              const GrpcServerOptions& options) {
  std::unique_ptr<GrpcServer> s(new GrpcServer());
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.cert_file.empty() || !options.key_file.empty()) {
    if (options.cert_file.empty() || options.key_file.empty()) {
      return absl::InvalidArgumentError("tls: set both cert_file and key_file");
    }
    auto cert = ReadFile(options.cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadFile(options.key_file);
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
    s->is_tls_ = true;
  }
  // Process-wide switches, read by the builder below.
  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  s->service_ = std::make_unique<InferenceService>(frontend);
  grpc::ServerBuilder builder;
  const std::string address = HostPort(options.host, options.port);
  // As for HTTP: a port in use is an error, not a port shared with another process.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(address, creds, &s->port_);
  builder.RegisterService(s->service_.get());
  const int64_t max_bytes = frontend.limits().max_request_bytes;
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(max_bytes, INT32_MAX)));
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("grpc: cannot listen on ", address));
  }
  s->health_ = std::make_shared<HealthSwitch>(s->server_->GetHealthCheckService());
  s->SetServing(true);
  frontend.engine().AddFailureObserver(
      [health = s->health_](const absl::Status&) { health->EngineFailed(); });
  return s;
}

GrpcServer::~GrpcServer() {
  Shutdown(0);
  if (health_ != nullptr) health_->Detach();  // before server_ and its health service go
}

void GrpcServer::SetServing(bool serving) {
  if (health_ != nullptr) health_->Set(serving);
}

void GrpcServer::Shutdown(double timeout_s) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  server_->Shutdown(deadline);
  // Generate threads end once their engine requests do (the cancellations above end them).
  if (!service_->workers().Wait(30)) spdlog::warn("grpc: Generate threads still running");
  server_->Wait();
}

}  // namespace tokenmill

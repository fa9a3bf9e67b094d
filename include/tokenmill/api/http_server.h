// The HTTP front end (cpp-httplib): the OpenAI-compatible API, Prometheus metrics and health.
//
//   POST /v1/completions, /v1/chat/completions   stream: false (JSON) or true (SSE
//                                                `data: {...}\n\n` ... `data: [DONE]\n\n`)
//   GET  /v1/models, /v1/models/{id}
//   GET  /v1/stats                               engine figures (admin key when auth is on)
//   GET  /metrics                                Prometheus text (admin key unless public)
//   GET  /health                                 200 while the process lives and its engine
//                                                can run; 503 {"status": "failed", "error"}
//                                                once the engine has failed for good
//   GET  /ready                                  200 when the model is loaded, the engine
//                                                has not failed and the server is not
//                                                draining; else 503 (status "failed" or
//                                                "draining")
//
// Errors are OpenAI bodies {"error": {"message", "type", "param", "code"}} with 400, 401,
// 403, 404, 413, 429, 503 or 504 (see errors.h). Each connection is served by one thread of
// a pool (options.num_threads), which bounds concurrent connections.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "tokenmill/api/frontend.h"
#include "tokenmill/metrics/registry.h"

namespace httplib {
class Server;
}

namespace tokenmill {

class ConnectionWatcher;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see HttpServer::port())
  int num_threads = 128;
  double keep_alive_timeout_s = 5;
  bool public_health = true;    // /health and /ready without a key
  bool public_metrics = false;  // /metrics without a key (else an admin key)
  std::string cert_file;        // HTTPS when both are set (PEM)
  std::string key_file;
};

class HttpServer {
 public:
  // Binds and starts serving on a background thread. `frontend` and `registry` (optional)
  // must outlive the server. Errors: cannot bind, TLS files unreadable.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(Frontend& frontend,
                                                           metrics::MetricRegistry* registry,
                                                           const HttpServerOptions& options);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  bool is_tls() const { return is_tls_; }
  // Stops accepting and closes connections; waits for the worker threads. Idempotent.
  void Stop();

 private:
  class Handlers;
  HttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<ConnectionWatcher> watcher_;
  std::unique_ptr<Handlers> handlers_;
  std::thread thread_;
  int port_ = 0;
  bool is_tls_ = false;
};

}  // namespace tokenmill

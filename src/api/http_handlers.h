// Route handlers of HttpServer (private to src/api). One instance per server; handlers run on
// httplib's worker threads and share nothing mutable but the Frontend (thread-safe).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "api/connection_watcher.h"
#include "httplib.h"
#include "tokenmill/api/frontend.h"
#include "tokenmill/api/http_server.h"
#include "tokenmill/metrics/registry.h"

namespace tokenmill {

class HttpServer::Handlers {
 public:
  Handlers(Frontend& frontend, metrics::MetricRegistry* registry, ConnectionWatcher& watcher,
           const HttpServerOptions& options)
      : frontend_(frontend), registry_(registry), watcher_(watcher), options_(options) {}

  void Register(httplib::Server& server);

  // http_completions.cc
  void Completions(const httplib::Request& req, httplib::Response& res, bool chat);

 private:
  void Health(const httplib::Request& req, httplib::Response& res);
  void Ready(const httplib::Request& req, httplib::Response& res);
  void Metrics(const httplib::Request& req, httplib::Response& res);
  void Models(const httplib::Request& req, httplib::Response& res);
  void Stats(const httplib::Request& req, httplib::Response& res);
  // Authenticates the request; on failure writes the error and returns nullopt.
  std::optional<Principal> Authorize(const httplib::Request& req, httplib::Response& res);

  Frontend& frontend_;
  metrics::MetricRegistry* registry_;
  ConnectionWatcher& watcher_;
  const HttpServerOptions options_;
};

// Writes an OpenAI error body with the status's HTTP code.
void WriteError(httplib::Response& res, const absl::Status& status);

}  // namespace tokenmill

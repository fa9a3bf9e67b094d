#include "tokenmill/api/http_server.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "api/http_handlers.h"
#include "api/openai_json.h"
#include "spdlog/spdlog.h"
#include "tokenmill/api/errors.h"

namespace tokenmill {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kJsonType[] = "application/json";

absl::Status StatusOfHttpCode(int code) {
  switch (code) {
    case 404:
      return absl::NotFoundError("no such endpoint");
    case 405:
      return absl::InvalidArgumentError("method not allowed on this endpoint");
    case 413:
      return WithReason(
          absl::ResourceExhaustedError("body: the request is larger than limits.max_request_bytes"),
          ErrorReason::kPayloadTooLarge);
    case 400:
      return absl::InvalidArgumentError("malformed HTTP request");
    default:
      return absl::UnknownError(absl::StrCat("HTTP ", code));
  }
}

bool Readable(const std::string& path) { return std::ifstream(path).good(); }

Json StatsJson(Frontend& fe) {
  const EngineStats s = fe.engine().stats();
  const KvStats& kv = s.kv;
  return {{"model", fe.model_name()},
          {"num_running", s.num_running},
          {"num_waiting", s.num_waiting},
          {"num_pending_requests", s.num_pending_requests},
          {"num_active_streams", fe.num_active()},
          {"draining", fe.draining()},
          {"uptime_s", fe.uptime_s()},
          {"num_steps", s.num_steps},
          {"num_failed_steps", s.num_failed_steps},
          {"scheduler",
           {{"num_steps", s.scheduler.num_steps},
            {"num_prefill_tokens", s.scheduler.num_prefill_tokens},
            {"num_decode_tokens", s.scheduler.num_decode_tokens},
            {"num_generated_tokens", s.scheduler.num_generated_tokens},
            {"num_cached_prompt_tokens", s.scheduler.num_cached_prompt_tokens},
            {"num_preemptions", s.scheduler.num_preemptions},
            {"num_finished_requests", s.scheduler.num_finished_requests},
            {"num_aborted_sequences", s.scheduler.num_aborted_sequences}}},
          {"kv_cache",
           {{"num_blocks", kv.num_blocks},
            {"num_used_blocks", kv.num_used_blocks},
            {"num_free_blocks", kv.num_free_blocks},
            {"num_cached_free_blocks", kv.num_cached_free_blocks},
            {"block_size", fe.engine().executor().block_size()},
            {"usage", kv.num_blocks > 0 ? double(kv.num_used_blocks) / kv.num_blocks : 0.0},
            {"prefix_query_tokens", kv.prefix_query_tokens},
            {"prefix_hit_tokens", kv.prefix_hit_tokens}}}};
}

// A failed engine can never serve again: unready, and unhealthy so that a liveness probe
// restarts the process should it outlive its engine.
bool WriteIfEngineFailed(Frontend& frontend, httplib::Response& res) {
  const absl::Status health = frontend.engine().health();
  if (health.ok()) return false;
  res.status = 503;
  res.set_content(DumpJson({{"status", "failed"}, {"error", std::string(health.message())}}),
                  kJsonType);
  return true;
}

}  // namespace

void WriteError(httplib::Response& res, const absl::Status& status) {
  const HttpError e = ToHttpError(status);
  res.status = e.http_status;
  res.set_content(DumpJson(OpenAiErrorBody(e)), kJsonType);
}

std::optional<Principal> HttpServer::Handlers::Authorize(const httplib::Request& req,
                                                         httplib::Response& res) {
  auto who = frontend_.Authenticate(req.get_header_value("Authorization"));
  if (!who.ok()) {
    WriteError(res, who.status());
    res.set_header("WWW-Authenticate", "Bearer");
    return std::nullopt;
  }
  return *who;
}

void HttpServer::Handlers::Health(const httplib::Request& req, httplib::Response& res) {
  if (!options_.public_health && !Authorize(req, res)) return;
  if (WriteIfEngineFailed(frontend_, res)) return;
  res.set_content(R"({"status":"ok"})", kJsonType);
}

void HttpServer::Handlers::Ready(const httplib::Request& req, httplib::Response& res) {
  if (!options_.public_health && !Authorize(req, res)) return;
  if (WriteIfEngineFailed(frontend_, res)) return;
  if (frontend_.draining()) {
    res.status = 503;
    res.set_content(R"({"status":"draining"})", kJsonType);
    return;
  }
  res.set_content(R"({"status":"ready"})", kJsonType);
}

void HttpServer::Handlers::Metrics(const httplib::Request& req, httplib::Response& res) {
  if (!options_.public_metrics) {
    auto who = Authorize(req, res);
    if (!who) return;
    if (absl::Status s = Frontend::RequireAdmin(*who, "/metrics"); !s.ok()) {
      WriteError(res, s);
      return;
    }
  }
  res.set_content(registry_ != nullptr ? registry_->RenderText() : "",
                  metrics::kPrometheusContentType);
}

void HttpServer::Handlers::Models(const httplib::Request& req, httplib::Response& res) {
  if (!Authorize(req, res)) return;
  const Json model = ModelJson(frontend_.model_name(), frontend_.created_unix_s(),
                               frontend_.engine().max_seq_len());
  if (req.matches.size() > 1) {
    if (absl::Status s = frontend_.CheckModel(req.matches[1].str()); !s.ok()) {
      WriteError(res, s);
      return;
    }
    res.set_content(DumpJson(model), kJsonType);
    return;
  }
  res.set_content(DumpJson(Json{{"object", "list"}, {"data", Json::array({model})}}), kJsonType);
}

void HttpServer::Handlers::Stats(const httplib::Request& req, httplib::Response& res) {
  auto who = Authorize(req, res);
  if (!who) return;
  if (absl::Status s = Frontend::RequireAdmin(*who, "/v1/stats"); !s.ok()) {
    WriteError(res, s);
    return;
  }
  res.set_content(DumpJson(StatsJson(frontend_)), kJsonType);
}

void HttpServer::Handlers::Register(httplib::Server& svr) {
  svr.Get("/health", [this](const auto& q, auto& r) { Health(q, r); });
  svr.Get("/ready", [this](const auto& q, auto& r) { Ready(q, r); });
  svr.Get("/metrics", [this](const auto& q, auto& r) { Metrics(q, r); });
  svr.Get("/v1/models", [this](const auto& q, auto& r) { Models(q, r); });
  svr.Get(R"(/v1/models/(.+))", [this](const auto& q, auto& r) { Models(q, r); });
  svr.Get("/v1/stats", [this](const auto& q, auto& r) { Stats(q, r); });
  svr.Post("/v1/completions",
           [this](const httplib::Request& q, httplib::Response& r) { Completions(q, r, false); });
  svr.Post("/v1/chat/completions",
           [this](const httplib::Request& q, httplib::Response& r) { Completions(q, r, true); });
  // httplib's own errors (404, 413, ...) get OpenAI bodies too; ours already have one.
  svr.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (res.body.empty() && !res.content_provider_) {
          WriteError(res, StatusOfHttpCode(res.status));
        }
        return httplib::Server::HandlerResponse::Handled;
      }));
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("http: handler threw: {}", what);
        WriteError(res, absl::InternalError("internal error"));
      });
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(Frontend& frontend,
                                                              metrics::MetricRegistry* registry,
                                                              const HttpServerOptions& options) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  const bool tls = !options.cert_file.empty() || !options.key_file.empty();
  if (tls) {
    if (options.cert_file.empty() || options.key_file.empty()) {
      return absl::InvalidArgumentError("tls: set both cert_file and key_file");
    }
    for (const std::string& f : {options.cert_file, options.key_file}) {
      if (!Readable(f)) return absl::NotFoundError(absl::StrCat("tls: cannot read ", f));
    }
    auto ssl =
        std::make_unique<httplib::SSLServer>(options.cert_file.c_str(), options.key_file.c_str());
    if (!ssl->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("tls: ", options.cert_file, " / ",
                                                     options.key_file,
                                                     " are not a valid PEM certificate and key"));
    }
    s->server_ = std::move(ssl);
    s->is_tls_ = true;
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& svr = *s->server_;
  const int threads = std::max(1, options.num_threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(static_cast<size_t>(frontend.limits().max_request_bytes));
  svr.set_keep_alive_timeout(static_cast<time_t>(std::max(1.0, options.keep_alive_timeout_s)));
  svr.set_tcp_nodelay(true);
  // httplib sets SO_REUSEPORT by default, which would let a second server bind the same port
  // and silently take half the connections; a port in use must be a startup error.
  auto listen_sock = std::make_shared<socket_t>(INVALID_SOCKET);
  svr.set_socket_options([listen_sock](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listen_sock = sock;  // the listening socket (accepted ones do not come here)
  });
  s->watcher_ = std::make_unique<ConnectionWatcher>();
  s->handlers_ = std::make_unique<Handlers>(frontend, registry, *s->watcher_, options);
  s->handlers_->Register(svr);
  if (options.port == 0) {
    s->port_ = svr.bind_to_any_port(options.host);
  } else if (svr.bind_to_port(options.host, options.port)) {
    s->port_ = options.port;
  } else {
    s->port_ = -1;
  }
  if (s->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot listen on ", options.host, ":", options.port));
  }
  // httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into Debian's
  // library): a burst of clients connecting at once overflows the accept queue and the kernel
  // drops or resets their connections (issue #10, the soak test). Listening again on the
  // bound socket only deepens the queue, to the system's limit.
  if (*listen_sock == INVALID_SOCKET || listen(*listen_sock, SOMAXCONN) != 0) {
    spdlog::warn("http: cannot deepen the accept queue: {}", std::strerror(errno));
  }
  s->thread_ = std::thread([srv = s->server_.get()] {
    if (!srv->listen_after_bind()) spdlog::debug("http: accept loop ended");
  });
  return s;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (server_ != nullptr) server_->stop();
  // httplib's worker threads wait out idle keep-alive connections (up to the keep-alive
  // timeout) before the pool can be joined; end those connections now.
  if (thread_.joinable()) {
    const int n = ShutdownConnections(port_);
    if (n > 0) spdlog::debug("http: closed {} open connections", n);
    thread_.join();
  }
}

}  // namespace tokenmill

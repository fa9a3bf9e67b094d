// The HTTP target: POST /v1/completions with stream=true to any OpenAI-compatible server
// (tokenmill serve, vLLM, SGLang, llama.cpp's server), one keep-alive connection per
// client thread.
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "loadgen/openai_stream.h"
#include "loadgen/sse.h"
#include "tokenmill/loadgen/target.h"

namespace tokenmill::loadgen {
namespace {

class HttpTarget final : public Target {
 public:
  explicit HttpTarget(HttpTargetOptions options) : options_(std::move(options)) {
    const TargetAddress& a = options_.address;
    const bool ipv6 = a.host.find(':') != std::string::npos;
    base_url_ =
        absl::StrCat(a.scheme, "://", ipv6 ? "[" : "", a.host, ipv6 ? "]" : "", ":", a.port);
    path_ = absl::StrCat(a.path_prefix, "/v1/completions");
  }

  std::string kind() const override { return "http"; }
  bool accepts_token_ids() const override { return options_.send_token_ids; }

  RequestResult Send(const TargetRequest& request) override {
    RequestResult result;
    const std::string body =
        CompletionRequestBody(request, options_.model, options_.send_token_ids, options_.extra_body)
            .dump();
    std::unique_ptr<httplib::Client> client = Borrow();
    const Clock* clock = options_.clock;
    OpenAiStreamReader reader(&result, clock);
    SseParser sse([&reader](const std::string& data) { return reader.OnData(data); });
    int status = 0;
    std::string error_body;

    httplib::Request req;
    req.method = "POST";
    req.path = path_;
    req.body = body;
    req.set_header("Content-Type", "application/json");
    req.set_header("Accept", "text/event-stream");
    if (!options_.api_key.empty()) {
      req.set_header("Authorization", absl::StrCat("Bearer ", options_.api_key));
    }
    req.response_handler = [&status](const httplib::Response& res) {
      status = res.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (status != 200) {
        if (error_body.size() < 4096) error_body.append(data, n);
        return true;
      }
      // Events after [DONE] or an error are ignored, but the body is read to its end so
      // the keep-alive connection stays usable.
      sse.Feed(std::string_view(data, n));
      return true;
    };
    result.send_s = clock->NowSeconds();
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    const bool sent = client->send(req, res, error);
    if (!sent) {
      // A transport failure explains the request better than the stream it cut short.
      result.error_code = TransportErrorCode(error);
      result.error_message = httplib::to_string(error);
    }
    if (status == 200) {
      sse.Finish();
      reader.Finish();
    } else {
      result.end_s = clock->NowSeconds();
      if (status != 0 && result.ok()) {
        result.error_code = absl::StrCat("http_", status);
        result.error_message = ErrorMessage(error_body.empty() ? res.body : error_body);
      }
    }
    // A connection that failed is not reused.
    if (sent) Return(std::move(client));
    return result;
  }

 private:
  std::unique_ptr<httplib::Client> Borrow() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<httplib::Client>(base_url_);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);  // headers and body go out at once, not 40 ms apart (Nagle)
    c->set_connection_timeout(10, 0);
    const auto secs = static_cast<time_t>(options_.timeout_s);
    c->set_read_timeout(secs, static_cast<time_t>((options_.timeout_s - secs) * 1e6));
    c->set_write_timeout(60, 0);
    return c;
  }

  void Return(std::unique_ptr<httplib::Client> c) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(c));
  }

  static std::string TransportErrorCode(httplib::Error e) {
    switch (e) {
      case httplib::Error::Read:
        return "read";  // reset, or no byte within the timeout
      case httplib::Error::Write:
        return "write";
      case httplib::Error::ConnectionTimeout:
        return "connect_timeout";
      default:
        return "connection";
    }
  }

  // OpenAI error bodies are {"error": {"message": ...}}; anything else is shown raw.
  static std::string ErrorMessage(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object() &&
        j["error"].contains("message") && j["error"]["message"].is_string()) {
      return j["error"]["message"].get<std::string>();
    }
    return body.substr(0, 300);
  }

  const HttpTargetOptions options_;
  std::string base_url_;
  std::string path_;
  std::mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_;
};

}  // namespace

std::unique_ptr<Target> MakeHttpTarget(const HttpTargetOptions& options) {
  return std::make_unique<HttpTarget>(options);
}

}  // namespace tokenmill::loadgen

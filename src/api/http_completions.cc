// POST /v1/completions and /v1/chat/completions: JSON in, JSON or SSE out.
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/http_handlers.h"
#include "api/openai_json.h"
#include "tokenmill/api/errors.h"

namespace tokenmill {
namespace {

using Json = nlohmann::ordered_json;

// Writes one request's SSE events. The connection's thread runs it inside httplib's
// content provider; a failed write or a hang-up (watcher) cancels the engine request.
bool StreamEvents(ActiveRequest& active, const ResponseContext& ctx, const OpenAiRequest& req,
                  ConnectionWatcher& watcher, int fd, httplib::DataSink& sink) {
  ScopedWatch watch(watcher, fd, [&active] { active.Cancel(); });
  bool broken = false;
  auto send = [&](const std::string& payload) {
    if (broken) return;
    const std::string event = absl::StrCat("data: ", payload, "\n\n");
    if (!sink.write(event.data(), event.size())) {
      broken = true;
      active.Cancel();
    }
  };
  std::vector<bool> started(active.request().n, false);
  const CompletionResult& result = active.Collect([&](const CompletionDelta& d) {
    send(DumpJson(StreamChunkJson(ctx, req, d, !started[d.index])));
    started[d.index] = true;
  });
  const absl::Status status = active.TerminalStatus();
  if (!status.ok()) {
    send(DumpJson(OpenAiErrorBody(ToHttpError(status))));
  } else if (req.include_usage) {
    send(DumpJson(UsageChunkJson(ctx, req, result.usage)));
  }
  if (broken) return false;
  send("[DONE]");
  if (broken) return false;
  sink.done();
  return true;
}

}  // namespace

void HttpServer::Handlers::Completions(const httplib::Request& req, httplib::Response& res,
                                       bool chat) {
  auto who = Authorize(req, res);
  if (!who) return;
  const Json body = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    const absl::Status s = absl::InvalidArgumentError("body: not valid JSON");
    frontend_.RecordRejection(who->tenant, s);
    WriteError(res, s);
    return;
  }
  auto parsed = chat ? ParseChatRequest(body) : ParseCompletionRequest(body);
  if (!parsed.ok()) {
    frontend_.RecordRejection(who->tenant, parsed.status());
    WriteError(res, parsed.status());
    return;
  }
  auto oreq = std::make_shared<const OpenAiRequest>(*std::move(parsed));
  ClientRequest client = oreq->client;
  client.input.request_id = req.get_header_value("X-Request-Id");
  auto started = frontend_.Start(*who, std::move(client));
  if (!started.ok()) {
    WriteError(res, started.status());
    return;
  }
  std::shared_ptr<ActiveRequest> active = *std::move(started);
  auto ctx = std::make_shared<ResponseContext>();
  ctx->id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", active->id());
  ctx->created = static_cast<int64_t>(frontend_.clock().WallSeconds());
  ctx->model = frontend_.model_name();
  ctx->tokenizer = frontend_.bundle().tokenizer.get();
  res.set_header("X-Request-Id", active->id());
  const int fd = FindConnectionSocket(req.local_port, req.remote_addr, req.remote_port);

  if (!oreq->stream) {
    const CompletionResult* result = nullptr;
    {
      ScopedWatch watch(watcher_, fd, [&active] { active->Cancel(); });
      result = &active->Collect(nullptr);
    }
    if (absl::Status s = active->TerminalStatus(); !s.ok()) {
      WriteError(res, s);
      return;
    }
    res.set_content(DumpJson(CompletionResponseJson(*ctx, *oreq, *result)), "application/json");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  ConnectionWatcher& watcher = watcher_;
  res.set_chunked_content_provider(
      "text/event-stream",
      [active, ctx, oreq, fd, &watcher](size_t, httplib::DataSink& sink) {
        return StreamEvents(*active, *ctx, *oreq, watcher, fd, sink);
      },
      // Not streamed (the connection failed first): the ActiveRequest's end cancels it.
      [active](bool) {});
}

}  // namespace tokenmill

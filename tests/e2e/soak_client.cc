#include "e2e/soak_client.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace tokenmill::e2e::soak {
namespace {

using Json = nlohmann::json;

v1::GenerateRequest GrpcRequest(const Plan& p) {
  v1::GenerateRequest r;
  r.set_text(p.prompt);
  r.set_max_tokens(p.max_tokens);
  r.set_n(p.n);
  r.set_ignore_eos(p.ignore_eos);
  r.mutable_sampling()->set_temperature(p.greedy ? 0.0f : 0.9f);
  if (!p.greedy) r.set_seed(static_cast<uint64_t>(p.seed));
  for (int id : p.stop_token_ids) r.add_stop_token_ids(id);
  return r;
}

Json HttpBody(const Plan& p) {
  Json j = {{"max_tokens", p.max_tokens},
            {"n", p.n},
            {"ignore_eos", p.ignore_eos},
            {"temperature", p.greedy ? 0.0 : 0.9}};
  if (IsChat(p.api)) {
    j["messages"] = Json::array({{{"role", "user"}, {"content", p.prompt}}});
  } else {
    j["prompt"] = p.prompt;
  }
  if (!p.greedy) j["seed"] = p.seed;
  if (!p.stop_token_ids.empty()) j["stop_token_ids"] = p.stop_token_ids;
  if (IsStream(p.api)) {
    j["stream"] = true;
    j["stream_options"] = {{"include_usage", true}};
  }
  return j;
}

httplib::Headers Auth(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

void SetDeadline(grpc::ClientContext& ctx, double seconds, const std::string& key) {
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6)));
  ctx.AddMetadata("authorization", "Bearer " + key);
}

Result Wrong(std::string why) {
  Result r;
  r.why = std::move(why);
  return r;
}

Result Ended(Outcome o) {
  Result r;
  r.outcome = o;
  return r;
}

// The JSON payloads of an SSE body; an error event or a missing [DONE] is an error.
absl::StatusOr<std::vector<Json>> SseEvents(const std::string& body) {
  std::vector<Json> events;
  std::vector<std::string> parts = absl::StrSplit(body, "\n\n", absl::SkipEmpty());
  if (parts.empty() || parts.back() != "data: [DONE]") {
    return absl::DataLossError("SSE body does not end with [DONE]");
  }
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    Json j = Json::parse(parts[i].substr(std::min<size_t>(6, parts[i].size())), nullptr, false);
    if (parts[i].rfind("data: ", 0) != 0 || j.is_discarded() || j.contains("error")) {
      return absl::DataLossError("bad SSE event: " + parts[i]);
    }
    events.push_back(std::move(j));
  }
  return events;
}

int GrpcPort(const ServerProcess& server) {
  return std::stoi(server.grpc_address().substr(server.grpc_address().rfind(':') + 1));
}

}  // namespace

// SoakClient

SoakClient::SoakClient(const ServerProcess& server, const Reference& reference)
    : server_(server),
      reference_(reference),
      stub_(MakeStub(server.grpc_address())),
      http_(MakeHttpClient(server)) {}

int64_t SoakClient::PromptTokens(const std::string& text) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 30, kAdminKey);
  v1::TokenizeRequest req;
  req.set_text(text);
  v1::TokenizeResponse res;
  const grpc::Status s = stub_->Tokenize(&ctx, req, &res);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return res.token_ids_size();
}

void SoakClient::RunReferences(Reference& reference) {
  for (const std::string& prompt : ReferencePrompts()) {
    Plan p;
    p.prompt = prompt;
    p.max_tokens = kReferenceTokens;
    const GenerateOutcome out = RunGenerate(*stub_, GrpcRequest(p), 60, kAdminKey);
    EXPECT_TRUE(out.status.ok()) << out.status.error_message();
    reference.ids.push_back(out.token_ids);
    p.api = Api::kHttpUnary;
    auto res =
        http_->Post("/v1/completions", Auth(kAdminKey), HttpBody(p).dump(), "application/json");
    EXPECT_TRUE(res && res->status == 200) << (res ? res->body : "no response");
    reference.text.push_back(res ? Json::parse(res->body)["choices"][0]["text"].get<std::string>()
                                 : "");
  }
}

Result SoakClient::Run(const Plan& p) {
  try {
    switch (p.kind) {
      case Kind::kNormal:
        return RunNormal(p);
      case Kind::kCancel:
        return p.api == Api::kGrpc ? RunCancel(p) : RunSseCancel(p);
      case Kind::kDeadline:
        return RunDeadline(p);
      case Kind::kMalformed:
        return RunMalformed(p);
      case Kind::kDisconnect:
        return p.api == Api::kGrpc ? RunGrpcDisconnect(p) : RunDisconnect(p);
    }
  } catch (const std::exception& e) {  // a JSON body of the wrong shape
    return Wrong(absl::StrCat("exception: ", e.what()));
  }
  return Wrong("unknown kind");
}

Result SoakClient::RunNormal(const Plan& p) {
  if (p.api != Api::kGrpc) return RunHttpCompletion(p);
  return CheckGrpcCompletion(p, RunGenerate(*stub_, GrpcRequest(p), 60, KeyOf(p.kind)));
}

// A finished gRPC stream: OK, the final message last, each sample's tokens and finish
// reason consistent with max_tokens, usage adding up; greedy references match.
Result SoakClient::CheckGrpcCompletion(const Plan& p, const GenerateOutcome& out) {
  if (!out.status.ok()) {
    return Wrong(
        absl::StrCat("status ", out.status.error_code(), ": ", out.status.error_message()));
  }
  if (!out.has_final || !out.messages.back().has_final()) return Wrong("no final message last");
  const v1::FinalInfo& f = out.final_info;
  if (f.finish_reasons_size() != p.n) return Wrong("a finish reason per sample");
  std::vector<std::vector<int32_t>> ids(p.n);
  for (const v1::GenerateResponse& m : out.messages) {
    if (m.has_final()) continue;
    if (m.index() < 0 || m.index() >= p.n) return Wrong("sample index out of range");
    ids[m.index()].insert(ids[m.index()].end(), m.token_ids().begin(), m.token_ids().end());
  }
  Result r = Ended(Outcome::kOkStop);
  int64_t generated = 0;
  for (int i = 0; i < p.n; ++i) {
    const auto num = static_cast<int>(ids[i].size());
    generated += num;
    if (f.finish_reasons(i) == v1::FINISH_REASON_LENGTH) {
      if (num != p.max_tokens) return Wrong(absl::StrCat("length after ", num, " tokens"));
      r.outcome = Outcome::kOkLength;
    } else if (f.finish_reasons(i) != v1::FINISH_REASON_STOP || num < 1 || num > p.max_tokens) {
      return Wrong(absl::StrCat("sample ", i, " finish ", f.finish_reasons(i), " after ", num));
    }
    if (p.reference >= 0) {
      if (ids[i] != reference_.ids[p.reference]) return Wrong("greedy tokens differ from alone");
      r.checked_reference = true;
    }
  }
  const v1::Usage& u = f.usage();
  if (u.generated_tokens() != generated || u.prompt_tokens() < 1 ||
      u.total_tokens() != u.prompt_tokens() + generated || u.cached_tokens() > u.prompt_tokens()) {
    return Wrong("usage does not add up: " + u.ShortDebugString());
  }
  r.prompt_tokens = u.prompt_tokens();
  r.generated_tokens = u.generated_tokens();
  r.cached_tokens = u.cached_tokens();
  return r;
}

Result SoakClient::CheckHttpCompletion(const Plan& p, const Json& text, const Json& finish,
                                       const Json& usage) {
  Result r = Ended(Outcome::kOkStop);
  int num_length = 0;
  for (int i = 0; i < p.n; ++i) {
    if (finish[i] == "length") {
      r.outcome = Outcome::kOkLength;
      ++num_length;
    } else if (finish[i] != "stop") {
      return Wrong(absl::StrCat("sample ", i, " finish_reason ", finish[i].dump()));
    }
    if (p.reference >= 0) {
      if (text[i] != reference_.text[p.reference]) return Wrong("greedy text differs from alone");
      r.checked_reference = true;
    }
  }
  if (!usage.is_object()) return Wrong("no usage: " + usage.dump());
  r.prompt_tokens = usage.at("prompt_tokens");
  r.generated_tokens = usage.at("completion_tokens");
  r.cached_tokens = usage.at("prompt_tokens_details").at("cached_tokens");
  const int64_t most = int64_t{p.max_tokens} * p.n;
  if (r.generated_tokens > most || (num_length == p.n && r.generated_tokens != most) ||
      usage.at("total_tokens") != r.prompt_tokens + r.generated_tokens) {
    return Wrong("usage does not add up: " + usage.dump());
  }
  return r;
}

Result SoakClient::RunHttpCompletion(const Plan& p) {
  const char* path = IsChat(p.api) ? "/v1/chat/completions" : "/v1/completions";
  auto res = http_->Post(path, Auth(KeyOf(p.kind)), HttpBody(p).dump(), "application/json");
  if (!res) return Wrong(absl::StrCat("HTTP transport error ", httplib::to_string(res.error())));
  if (res->status != 200) return Wrong(absl::StrCat("HTTP ", res->status, ": ", res->body));
  Json text = Json::array(), finish = Json::array();
  for (int i = 0; i < p.n; ++i) text.push_back(""), finish.push_back(nullptr);
  if (!IsStream(p.api)) {
    const Json j = Json::parse(res->body, nullptr, false);
    if (j.is_discarded() || j.at("choices").size() != static_cast<size_t>(p.n)) {
      return Wrong("bad body: " + res->body);
    }
    for (const Json& c : j.at("choices")) {
      const int i = c.at("index");
      text.at(i) = IsChat(p.api) ? c.at("message").at("content") : c.at("text");
      finish.at(i) = c.at("finish_reason");
    }
    return CheckHttpCompletion(p, text, finish, j.at("usage"));
  }
  absl::StatusOr<std::vector<Json>> events = SseEvents(res->body);
  if (!events.ok()) return Wrong(std::string(events.status().message()));
  if (events->empty() || !events->back().at("choices").empty()) {
    return Wrong("no usage event last");
  }
  for (size_t e = 0; e + 1 < events->size(); ++e) {
    for (const Json& c : (*events)[e].at("choices")) {
      const int i = c.at("index");
      const Json piece = IsChat(p.api) ? c.at("delta").value("content", Json("")) : c.at("text");
      text.at(i) = text.at(i).get<std::string>() + piece.get<std::string>();
      if (c.at("finish_reason").is_null()) continue;
      if (!finish.at(i).is_null()) return Wrong("two finish_reasons for one sample");
      finish.at(i) = c.at("finish_reason");
    }
  }
  return CheckHttpCompletion(p, text, finish, events->back().at("usage"));
}

// gRPC: TryCancel after `cancel_after` messages with tokens; the client sees CANCELLED.
Result SoakClient::RunCancel(const Plan& p) {
  Result r = Ended(Outcome::kCancelled);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 60, KeyOf(p.kind));
  auto reader = stub_->Generate(&ctx, GrpcRequest(p));
  v1::GenerateResponse msg;
  int events = 0;
  while (reader->Read(&msg)) {
    r.seen_tokens += msg.token_ids_size();
    if (msg.token_ids_size() > 0 && ++events >= p.cancel_after) break;
  }
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  const grpc::Status s = reader->Finish();
  if (s.error_code() != grpc::StatusCode::CANCELLED) {
    return Wrong(absl::StrCat("cancelled stream ended with ", s.error_code(), ": ",
                              s.error_message(), " after ", r.seen_tokens, " tokens"));
  }
  return r;
}

// HTTP: the client closes the connection after `cancel_after` SSE events.
Result SoakClient::RunSseCancel(const Plan& p) {
  Result r = Ended(Outcome::kCancelled);
  auto client = MakeHttpClient(server_);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = Auth(KeyOf(p.kind));
  req.body = HttpBody(p).dump();
  req.set_header("Content-Type", "application/json");
  std::string received;
  bool bad_event = false;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    received.append(data, n);
    for (size_t end; (end = received.find("\n\n")) != std::string::npos;) {
      bad_event |= received.rfind("data: {\"id\"", 0) != 0;  // an error event, or garbage
      received.erase(0, end + 2);
      if (++r.seen_tokens >= p.cancel_after) return false;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool completed = client->send(req, res, err);
  client.reset();  // closes the connection
  if (completed || err != httplib::Error::Canceled || bad_event) {
    return Wrong(absl::StrCat("SSE cancel: completed=", completed, " error ",
                              httplib::to_string(err), " status ", res.status,
                              " bad_event=", bad_event));
  }
  return r;
}

// A deadline of a few ms on a long request: DEADLINE_EXCEEDED, or OK if it finished first.
Result SoakClient::RunDeadline(const Plan& p) {
  const GenerateOutcome out =
      RunGenerate(*stub_, GrpcRequest(p), p.deadline_ms * 1e-3, KeyOf(p.kind));
  if (out.status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    return CheckGrpcCompletion(p, out);
  }
  Result r = Ended(Outcome::kDeadline);
  r.seen_tokens = static_cast<int64_t>(out.token_ids.size());
  return r;
}

Result SoakClient::RunMalformed(const Plan& p) {
  if (p.api == Api::kGrpc) {
    const GrpcBadCase& c = GrpcBadCases()[p.bad_case];
    v1::GenerateRequest req = GrpcRequest(p);
    req.set_max_tokens(4);
    c.mutate(req);
    const GenerateOutcome out = RunGenerate(*stub_, req, 60, KeyOf(p.kind));
    if (out.status.error_code() != c.code ||
        out.status.error_message().rfind(c.message_prefix, 0) != 0 || !out.messages.empty()) {
      return Wrong(absl::StrCat(c.name, ": got ", out.status.error_code(), " '",
                                out.status.error_message(), "'"));
    }
    return Ended(c.code == grpc::StatusCode::INVALID_ARGUMENT ? Outcome::kInvalid
                                                              : Outcome::kExhausted);
  }
  const HttpBadCase& c = HttpBadCases()[p.bad_case];
  auto res = http_->Post(c.path, Auth(KeyOf(p.kind)), c.body, "application/json");
  if (!res) return Wrong(absl::StrCat(c.name, ": transport ", httplib::to_string(res.error())));
  Json j = Json::parse(res->body, nullptr, false);
  const bool has_message = !j.is_discarded() && j.contains("error") &&
                           j["error"]["message"].is_string() &&
                           !j["error"]["message"].get<std::string>().empty();
  if (res->status != 400 || !has_message || j["error"]["param"] != c.param ||
      (*c.error_code != '\0' && j["error"]["code"] != c.error_code)) {
    return Wrong(absl::StrCat(c.name, ": HTTP ", res->status, " ", res->body));
  }
  return Ended(c.exhausted ? Outcome::kExhausted : Outcome::kInvalid);
}

// HTTP: a valid streaming request, then the socket closes without reading a byte.
Result SoakClient::RunDisconnect(const Plan& p) {
  const int fd = ConnectLoopback(server_.http_port());
  if (fd < 0) return Wrong("cannot connect");
  const std::string request = RawJsonPost("/v1/completions", HttpBody(p).dump(), KeyOf(p.kind));
  const bool sent =
      write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size());
  close(fd);
  return sent ? Ended(Outcome::kDisconnect) : Wrong("cannot send");
}

// gRPC: the stream's connection is reset under it after the first tokens.
Result SoakClient::RunGrpcDisconnect(const Plan& p) {
  auto proxy = SeverableProxy::Start(GrpcPort(server_));
  if (proxy == nullptr) return Wrong("no proxy");
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stub = v1::Inference::NewStub(
      grpc::CreateCustomChannel(proxy->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  SetDeadline(ctx, 60, KeyOf(p.kind));
  auto reader = stub->Generate(&ctx, GrpcRequest(p));
  v1::GenerateResponse msg;
  const bool started = reader->Read(&msg);
  proxy->Sever();
  while (reader->Read(&msg)) {
  }
  const grpc::Status s = reader->Finish();
  if (!started || s.ok()) {
    return Wrong(absl::StrCat("severed stream: started=", started, " status ", s.error_code(), ": ",
                              s.error_message()));
  }
  return Ended(Outcome::kDisconnect);
}

}  // namespace tokenmill::e2e::soak

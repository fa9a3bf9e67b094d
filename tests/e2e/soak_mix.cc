// The soak test's request mix and its malformed requests (declared in soak_client.h).
#include <random>

#include "absl/strings/str_cat.h"
#include "e2e/soak_client.h"

namespace tokenmill::e2e::soak {
namespace {

using Json = nlohmann::json;

constexpr int kLongTokens = 1200;  // requests the client leaves: far more than it waits for

// Shared prefixes of several KV blocks, so that the prefix cache serves later requests.
const std::vector<std::string>& Prefixes() {
  static const auto* const p = new std::vector<std::string>{
      "System: you are the first assistant of the tokenmill soak test; be brief. User: ",
      "System: you are the second assistant of the tokenmill soak test; be terse. User: ",
      "System: you answer in one line for the tokenmill soak test, always. User: ",
      "System: this prefix is shared by a quarter of the soak test's requests. User: "};
  return *p;
}

const char* ApiName(Api a) {
  switch (a) {
    case Api::kGrpc:
      return "grpc";
    case Api::kHttpUnary:
      return "http";
    case Api::kHttpStream:
      return "http-sse";
    case Api::kChatUnary:
      return "chat";
    case Api::kChatStream:
      return "chat-sse";
  }
  return "?";
}

}  // namespace

const std::vector<GrpcBadCase>& GrpcBadCases() {
  using C = grpc::StatusCode;
  static const auto* const cases = new std::vector<GrpcBadCase>{
      {"negative temperature", [](auto& r) { r.mutable_sampling()->set_temperature(-1); },
       C::INVALID_ARGUMENT, "SamplingParams.temperature"},
      {"top_p 0", [](auto& r) { r.mutable_sampling()->set_top_p(0); }, C::INVALID_ARGUMENT,
       "SamplingParams.top_p"},
      {"absurd frequency_penalty",
       [](auto& r) { r.mutable_sampling()->set_frequency_penalty(1e9f); }, C::INVALID_ARGUMENT,
       "SamplingParams.frequency_penalty"},
      {"max_tokens 2^30", [](auto& r) { r.set_max_tokens(1 << 30); }, C::INVALID_ARGUMENT,
       "max_tokens"},
      {"n 1000", [](auto& r) { r.set_n(1000); }, C::INVALID_ARGUMENT, "n:"},
      {"invalid UTF-8", [](auto& r) { r.set_text(std::string("bad \xff\xfe text")); },
       C::INVALID_ARGUMENT, "text: is not valid UTF-8"},
      {"token id outside the vocabulary", [](auto& r) { r.mutable_token_ids()->add_ids(100000); },
       C::INVALID_ARGUMENT, "prompt: token id"},
      {"no input", [](auto& r) { r.clear_input(); }, C::INVALID_ARGUMENT, "input"},
      {"prompt over the context",
       [](auto& r) { r.mutable_token_ids()->mutable_ids()->Resize(3000, 65); },
       C::RESOURCE_EXHAUSTED, "prompt: 3000 tokens"},
  };
  return *cases;
}

const std::vector<HttpBadCase>& HttpBadCases() {
  const auto completion = [](const Json& more) {
    Json j = {{"prompt", "ok"}, {"max_tokens", 4}};
    j.update(more);
    return j.dump();
  };
  static const auto* const cases = new std::vector<HttpBadCase>{
      {"bad JSON", "/v1/completions", "{not json", "body", "", false},
      {"invalid UTF-8", "/v1/completions", "{\"prompt\": \"bad \xff\xfe\", \"max_tokens\": 4}",
       "body", "", false},
      {"unknown field", "/v1/completions", completion({{"frobnicate", 1}}), "frobnicate", "",
       false},
      {"max_tokens 0", "/v1/completions", completion({{"max_tokens", 0}}), "max_tokens", "", false},
      {"temperature string", "/v1/completions", completion({{"temperature", "hot"}}), "temperature",
       "", false},
      {"top_p 7", "/v1/completions", completion({{"top_p", 7}}), "top_p", "", false},
      {"negative repetition_penalty", "/v1/completions", completion({{"repetition_penalty", -3}}),
       "repetition_penalty", "", false},
      {"n 1000", "/v1/completions", completion({{"n", 1000}}), "n", "", false},
      {"empty messages", "/v1/chat/completions",
       Json{{"messages", Json::array()}, {"max_tokens", 4}}.dump(), "messages", "", false},
      {"prompt over the context", "/v1/completions",
       completion({{"prompt", std::string(3000, 'a')}}), "prompt", "context_length_exceeded", true},
  };
  return *cases;
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kNormal:
      return "normal";
    case Kind::kCancel:
      return "cancel";
    case Kind::kDeadline:
      return "deadline";
    case Kind::kMalformed:
      return "malformed";
    case Kind::kDisconnect:
      return "disconnect";
  }
  return "?";
}

std::string KeyOf(Kind k) { return absl::StrCat("soak-key-", KindName(k)); }

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kOkLength:
      return "ok/length";
    case Outcome::kOkStop:
      return "ok/stop";
    case Outcome::kCancelled:
      return "cancelled";
    case Outcome::kDeadline:
      return "deadline_exceeded";
    case Outcome::kInvalid:
      return "invalid_argument";
    case Outcome::kExhausted:
      return "context_exceeded";
    case Outcome::kDisconnect:
      return "disconnected";
    case Outcome::kWrong:
      return "WRONG";
  }
  return "?";
}

const char kChatTemplate[] =
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

const std::vector<std::string>& ReferencePrompts() {
  static const auto* const p = new std::vector<std::string>{
      "Reference one: the quick brown fox",     "Reference two: jumps over the lazy dog",
      "Reference three: a soak test runs long", "Reference four: chaos, but counted",
      "Reference five: every block comes back", "Reference six: and the server lives on"};
  return *p;
}

Plan MakePlan(uint64_t seed, int index) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index));
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Plan p;
  p.index = index;
  const int roll = uniform(0, 99);
  p.kind = roll < 10   ? Kind::kCancel
           : roll < 15 ? Kind::kDeadline
           : roll < 20 ? Kind::kMalformed
           : roll < 25 ? Kind::kDisconnect
                       : Kind::kNormal;
  const int num_prefixes = static_cast<int>(Prefixes().size());
  p.prompt = absl::StrCat(Prefixes()[uniform(0, num_prefixes - 1)], "request ", index, ".");
  p.max_tokens = kLongTokens;
  switch (p.kind) {
    case Kind::kNormal: {
      const int a = uniform(0, 99);
      p.api = a < 40   ? Api::kGrpc
              : a < 60 ? Api::kHttpUnary
              : a < 85 ? Api::kHttpStream
              : a < 93 ? Api::kChatUnary
                       : Api::kChatStream;
      if (!IsChat(p.api) && uniform(0, 3) == 0) {
        p.reference = uniform(0, static_cast<int>(ReferencePrompts().size()) - 1);
        p.prompt = ReferencePrompts()[p.reference];
        p.max_tokens = kReferenceTokens;
        p.n = uniform(1, 2);
        break;
      }
      p.max_tokens = uniform(1, 40);
      const int n = uniform(0, 9);
      p.n = n < 7 ? 1 : n < 9 ? 2 : 3;
      p.greedy = uniform(0, 1) == 0;
      p.seed = uniform(0, 1 << 30);
      p.ignore_eos = uniform(0, 4) != 0;
      if (uniform(0, 4) == 0) {
        for (int i = 0; i < 3; ++i) p.stop_token_ids.push_back(uniform(32, 126));
      }
      break;
    }
    case Kind::kCancel:
      p.api = uniform(0, 1) == 0 ? Api::kGrpc : Api::kHttpStream;
      p.cancel_after = uniform(1, 4);
      break;
    case Kind::kDeadline:  // gRPC only: HTTP has no per-request deadline
      p.deadline_ms = uniform(2, 60);
      break;
    case Kind::kMalformed:
      p.api = uniform(0, 1) == 0 ? Api::kGrpc : Api::kHttpUnary;
      p.bad_case = uniform(
          0, static_cast<int>(p.api == Api::kGrpc ? GrpcBadCases().size() : HttpBadCases().size()) -
                 1);
      break;
    case Kind::kDisconnect:
      p.api = uniform(0, 1) == 0 ? Api::kGrpc : Api::kHttpStream;
      break;
  }
  return p;
}

std::string Describe(const Plan& p) {
  std::string s = absl::StrCat("#", p.index, " ", KindName(p.kind), "/", ApiName(p.api),
                               " max_tokens=", p.max_tokens, " n=", p.n);
  if (p.reference >= 0) absl::StrAppend(&s, " reference=", p.reference);
  if (p.kind == Kind::kMalformed) {
    absl::StrAppend(
        &s, " case='",
        p.api == Api::kGrpc ? GrpcBadCases()[p.bad_case].name : HttpBadCases()[p.bad_case].name,
        "'");
  }
  if (p.kind == Kind::kDeadline) absl::StrAppend(&s, " deadline_ms=", p.deadline_ms);
  return s;
}

}  // namespace tokenmill::e2e::soak

// The clients of the soak and chaos test (soak_test.cc): the request mix, a deterministic
// function of (seed, request index) (soak_mix.cc), and one client per worker thread that runs
// a planned request over gRPC or HTTP against a live server and classifies what it saw
// (soak_client.cc).
//
// Each kind of client has its own API key, hence its own tenant on the server, so that the
// server's per-tenant counters can be compared with the client-side tallies.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "e2e/e2e_util.h"
#include "nlohmann/json.hpp"

namespace tokenmill::e2e::soak {

enum class Kind { kNormal, kCancel, kDeadline, kMalformed, kDisconnect };
inline constexpr Kind kKinds[] = {Kind::kNormal, Kind::kCancel, Kind::kDeadline, Kind::kMalformed,
                                  Kind::kDisconnect};
// The kind's name, which is also its tenant.
const char* KindName(Kind k);
// The kind's API key (the config maps it to the tenant KindName(k)).
std::string KeyOf(Kind k);
inline constexpr char kAdminKey[] = "soak-key-admin";  // tenant "ops", admin

enum class Api { kGrpc, kHttpUnary, kHttpStream, kChatUnary, kChatStream };
inline bool IsChat(Api a) { return a == Api::kChatUnary || a == Api::kChatStream; }
inline bool IsStream(Api a) { return a == Api::kHttpStream || a == Api::kChatStream; }

// Greedy requests on these prompts must give the tokens of a reference run served alone;
// kReferenceTokens tokens per sample, EOS ignored.
const std::vector<std::string>& ReferencePrompts();
inline constexpr int kReferenceTokens = 24;
// The chat template the server is started with (the demo model has none).
extern const char kChatTemplate[];

struct Plan {
  int index = 0;
  Kind kind = Kind::kNormal;
  Api api = Api::kGrpc;
  std::string prompt;
  int reference = -1;  // index into ReferencePrompts(), or -1
  int max_tokens = 16;
  int n = 1;
  bool greedy = true;
  int seed = 0;  // sampling seed when !greedy
  bool ignore_eos = true;
  std::vector<int> stop_token_ids;
  int cancel_after = 1;  // kCancel: token events read before leaving
  int deadline_ms = 0;   // kDeadline
  int bad_case = 0;      // kMalformed: index into the cases of its protocol
};

// The mix: ~10% cancel mid-stream, ~5% short deadlines, ~5% malformed, ~5% abrupt
// disconnects, the rest normal (gRPC, HTTP unary and SSE, chat; varied max_tokens and n,
// shared prompt prefixes, greedy references).
Plan MakePlan(uint64_t seed, int index);
std::string Describe(const Plan& p);

// Malformed requests and the answers they must get.
struct GrpcBadCase {
  const char* name;
  std::function<void(v1::GenerateRequest&)> mutate;  // of a valid request
  grpc::StatusCode code;
  const char* message_prefix;
};
const std::vector<GrpcBadCase>& GrpcBadCases();

struct HttpBadCase {
  const char* name;
  const char* path;
  std::string body;
  const char* param;       // the error body's "param"
  const char* error_code;  // the error body's "code"; "" when not checked
  bool exhausted;          // counted as resource_exhausted (else invalid_argument)
};
const std::vector<HttpBadCase>& HttpBadCases();  // all answered with HTTP 400

enum class Outcome {
  kOkLength,    // finished; a sample reached max_tokens
  kOkStop,      // finished; every sample stopped (EOS or a stop token)
  kCancelled,   // the client cancelled (gRPC CANCELLED; HTTP: socket closed mid-SSE)
  kDeadline,    // gRPC DEADLINE_EXCEEDED
  kInvalid,     // refused with INVALID_ARGUMENT / HTTP 400 naming the field
  kExhausted,   // refused: prompt over the context (RESOURCE_EXHAUSTED / HTTP 400)
  kDisconnect,  // the client vanished (nothing to check on its side)
  kWrong,       // anything else: a test failure, explained in Result::why
};
const char* OutcomeName(Outcome o);

struct Result {
  Outcome outcome = Outcome::kWrong;
  std::string why;  // kWrong: what was wrong
  // Usage of a finished request, as the client received it.
  int64_t prompt_tokens = 0, generated_tokens = 0, cached_tokens = 0;
  // Tokens (gRPC) or SSE events (HTTP) received before leaving: a lower bound of what the
  // server generated for a request the client left.
  int64_t seen_tokens = 0;
  bool checked_reference = false;  // a greedy reference matched
};

// Outputs of the reference prompts served alone, before the soak.
struct Reference {
  std::vector<std::vector<int32_t>> ids;  // gRPC token ids
  std::vector<std::string> text;          // HTTP completion text
};

// One per worker thread (not thread-safe); `server` and `reference` outlive it.
class SoakClient {
 public:
  SoakClient(const ServerProcess& server, const Reference& reference);

  // Runs the request and classifies its end. Never throws, never hangs past 60 s.
  Result Run(const Plan& p);
  // Prompt tokens of `text` as the server counts them (the Tokenize RPC).
  int64_t PromptTokens(const std::string& text);
  // Fills `reference` (served one at a time; call before the soak).
  void RunReferences(Reference& reference);

 private:
  Result RunNormal(const Plan& p);
  Result CheckGrpcCompletion(const Plan& p, const GenerateOutcome& out);
  // `text` and `finish` per sample; `usage` the OpenAI usage object.
  Result CheckHttpCompletion(const Plan& p, const nlohmann::json& text,
                             const nlohmann::json& finish, const nlohmann::json& usage);
  Result RunHttpCompletion(const Plan& p);
  Result RunCancel(const Plan& p);
  Result RunSseCancel(const Plan& p);
  Result RunGrpcDisconnect(const Plan& p);
  Result RunDeadline(const Plan& p);
  Result RunMalformed(const Plan& p);
  Result RunDisconnect(const Plan& p);

  const ServerProcess& server_;
  const Reference& reference_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<httplib::Client> http_;
};

}  // namespace tokenmill::e2e::soak

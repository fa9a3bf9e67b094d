// The OpenAI-compatible HTTP API's request parsing on arbitrary bodies, as the HTTP
// server sees them: JSON text -> ParseCompletionRequest / ParseChatRequest (the first
// byte picks the endpoint) -> SamplingParams::Validate. A request that parses is carried
// on: chat messages render through a real chat template and tokenize, and response
// objects echoing its text (possibly invalid UTF-8) serialize to valid JSON with DumpJson.
// Anything must end in a Status, never an exception, a crash or a hang.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "api/openai_json.h"
#include "fuzz/fuzz_util.h"
#include "tokenizer/loaders.h"
#include "tokenmill/tokenizer/chat_template.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace {

using Json = nlohmann::ordered_json;

// A template shaped like Llama 3's (role headers, bos, generation prompt); the real
// template files are covered by chat_template_fuzz.
constexpr const char* kTemplate =
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
    "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

struct Fixture {
  std::unique_ptr<tokenmill::Tokenizer> tokenizer;
  tokenmill::ChatTemplate chat_template;
};

Fixture* MakeFixture() {
  auto* f = new Fixture{tokenmill::MakeByteTokenizer(), *tokenmill::ChatTemplate::Parse(kTemplate)};
  const char* env = std::getenv("TOKENMILL_TESTDATA");
  const std::string dir = env != nullptr ? env : TOKENMILL_FUZZ_TESTDATA_DIR;
  auto gpt2 = tokenmill::LoadTokenizer(dir + "/tokenizers/gpt2/tokenizer.json");
  if (gpt2.ok()) f->tokenizer = *std::move(gpt2);  // real token strings for log-probs
  return f;
}

// What the server would send back for `req`, with the request's own text as output.
void CheckResponses(const Fixture& fx, const tokenmill::OpenAiRequest& req,
                    const std::string& text) {
  tokenmill::ResponseContext ctx;
  ctx.id = "cmpl-fuzz";
  ctx.created = 1700000000;
  ctx.model = req.client.model;
  ctx.tokenizer = fx.tokenizer.get();
  tokenmill::SampledToken token;
  token.token_id = 0;
  token.logprob = -0.5f;
  token.top_logprobs = {{0, -0.5f}, {fx.tokenizer->vocab_size() - 1, -1.5f}};
  tokenmill::CompletionResult result;
  for (int i = 0; i < std::min(req.client.input.n, 4); ++i) {
    result.choices.push_back({{0}, text, tokenmill::FinishReason::kStop, {token}});
  }
  tokenmill::CompletionDelta delta{0, text, {0}, {token}, tokenmill::FinishReason::kLength};
  for (const Json& j : {tokenmill::CompletionResponseJson(ctx, req, result),
                        tokenmill::StreamChunkJson(ctx, req, delta, /*first_of_choice=*/true),
                        tokenmill::UsageChunkJson(ctx, req, result.usage)}) {
    const std::string wire = tokenmill::DumpJson(j);
    TM_FUZZ_ASSERT(!Json::parse(wire, nullptr, /*allow_exceptions=*/false).is_discarded(), wire);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Fixture* fx = MakeFixture();
  if (size == 0) return 0;
  const bool chat = (data[0] & 1) != 0;
  const Json body = Json::parse(data + 1, data + size, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  absl::StatusOr<tokenmill::OpenAiRequest> req =
      chat ? tokenmill::ParseChatRequest(body) : tokenmill::ParseCompletionRequest(body);
  if (!req.ok()) {
    TM_FUZZ_ASSERT(req.status().code() == absl::StatusCode::kInvalidArgument,
                   req.status().ToString());
    return 0;
  }
  const tokenmill::CompletionInput& in = req->client.input;
  (void)in.sampling.Validate();
  std::string text = in.prompt.value_or(in.stop.empty() ? "" : in.stop.front());
  if (in.messages.has_value()) {
    tokenmill::ChatTemplateInputs inputs;
    inputs.messages = *in.messages;
    inputs.add_generation_prompt = in.add_generation_prompt;
    inputs.bos_token = "<|begin_of_text|>";
    absl::StatusOr<std::string> rendered = fx->chat_template.Render(inputs);
    if (rendered.ok()) text = *std::move(rendered);
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      fx->tokenizer->Encode(text, tokenmill::EncodeOptions{.add_special = in.add_special});
  if (ids.ok()) (void)fx->tokenizer->Decode(*ids);
  CheckResponses(*fx, *req, text);
  return 0;
}

#include "api/openai_json.h"

#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "api/utf8.h"
#include "tokenmill/core/status.h"
#include "tokenmill/metrics/request_record.h"

namespace tokenmill {
namespace {

using Json = nlohmann::ordered_json;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// Reads the fields of one request object, remembering which were read so the rest can be
// reported as unknown. `null` reads as absent (clients send it for "not given").
class FieldReader {
 public:
  explicit FieldReader(const Json& body) : body_(body) {}

  const Json* Get(const std::string& name) {
    seen_.insert(name);
    auto it = body_.find(name);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  absl::StatusOr<std::optional<double>> Number(const std::string& name) {
    const Json* v = Get(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) return Invalid(name, "must be a number");
    return v->get<double>();
  }
  absl::StatusOr<std::optional<int64_t>> Int(const std::string& name) {
    const Json* v = Get(name);
    if (v == nullptr) return std::nullopt;
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(name, absl::StrCat(v->dump(), " is out of range"));
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (d == std::trunc(d)) {
        // Range first: casting a double outside int64 (1e300) to it is undefined.
        if (d < -0x1p63 || d >= 0x1p63) return Invalid(name, absl::StrCat(d, " is out of range"));
        return static_cast<int64_t>(d);
      }
    }
    return Invalid(name, "must be an integer");
  }
  absl::StatusOr<std::optional<int>> Int32(const std::string& name) {
    TM_ASSIGN_OR_RETURN(std::optional<int64_t> v, Int(name));
    if (!v.has_value()) return std::nullopt;
    if (*v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max()) {
      return Invalid(name, absl::StrCat(*v, " is out of range"));
    }
    return static_cast<int>(*v);
  }
  absl::StatusOr<std::optional<bool>> Bool(const std::string& name) {
    const Json* v = Get(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) return Invalid(name, "must be true or false");
    return v->get<bool>();
  }
  absl::StatusOr<std::optional<std::string>> String(const std::string& name) {
    const Json* v = Get(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return Invalid(name, "must be a string");
    return v->get<std::string>();
  }
  // Fields accepted for compatibility and ignored.
  void Ignore(std::initializer_list<const char*> names) {
    for (const char* n : names) seen_.insert(n);
  }
  absl::Status CheckNoUnknown() const {
    for (auto it = body_.begin(); it != body_.end(); ++it) {
      if (!seen_.contains(it.key())) return Invalid(it.key(), "unknown field");
    }
    return absl::OkStatus();
  }

 private:
  const Json& body_;
  std::set<std::string> seen_;
};

absl::StatusOr<std::vector<int32_t>> TokenIdArray(const Json& arr, const std::string& field) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const Json& v = arr[i];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
        v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Invalid(absl::StrCat(field, "[", i, "]"), "must be a token id (integer >= 0)");
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

// Sampling fields shared by both endpoints (OpenAI's and vLLM's extras).
absl::Status ReadSampling(FieldReader& f, OpenAiRequest& r) {
  CompletionInput& in = r.client.input;
  SamplingParams& sp = in.sampling;
  TM_ASSIGN_OR_RETURN(auto model, f.String("model"));
  r.client.model = model.value_or("");
  TM_ASSIGN_OR_RETURN(auto temperature, f.Number("temperature"));
  if (temperature) sp.temperature = static_cast<float>(*temperature);
  TM_ASSIGN_OR_RETURN(auto top_p, f.Number("top_p"));
  if (top_p) sp.top_p = static_cast<float>(*top_p);
  TM_ASSIGN_OR_RETURN(auto top_k, f.Int32("top_k"));
  if (top_k) sp.top_k = *top_k;
  TM_ASSIGN_OR_RETURN(auto min_p, f.Number("min_p"));
  if (min_p) sp.min_p = static_cast<float>(*min_p);
  TM_ASSIGN_OR_RETURN(auto rep, f.Number("repetition_penalty"));
  if (rep) sp.repetition_penalty = static_cast<float>(*rep);
  TM_ASSIGN_OR_RETURN(auto freq, f.Number("frequency_penalty"));
  if (freq) sp.frequency_penalty = static_cast<float>(*freq);
  TM_ASSIGN_OR_RETURN(auto pres, f.Number("presence_penalty"));
  if (pres) sp.presence_penalty = static_cast<float>(*pres);
  TM_ASSIGN_OR_RETURN(auto seed, f.Int("seed"));
  if (seed) sp.seed = static_cast<uint64_t>(*seed);
  TM_ASSIGN_OR_RETURN(auto ignore_eos, f.Bool("ignore_eos"));
  sp.ignore_eos = ignore_eos.value_or(false);
  if (const Json* ids = f.Get("stop_token_ids")) {
    if (!ids->is_array()) return Invalid("stop_token_ids", "must be an array of token ids");
    TM_ASSIGN_OR_RETURN(sp.stop_token_ids, TokenIdArray(*ids, "stop_token_ids"));
  }
  TM_ASSIGN_OR_RETURN(auto n, f.Int32("n"));
  in.n = n.value_or(1);
  TM_ASSIGN_OR_RETURN(auto priority, f.Int32("priority"));
  in.priority = priority.value_or(0);
  TM_ASSIGN_OR_RETURN(auto skip, f.Bool("skip_special_tokens"));
  in.skip_special_tokens = skip.value_or(true);
  if (const Json* stop = f.Get("stop")) {
    if (stop->is_string()) {
      in.stop = {stop->get<std::string>()};
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        if (!(*stop)[i].is_string())
          return Invalid(absl::StrCat("stop[", i, "]"), "must be a string");
        in.stop.push_back((*stop)[i].get<std::string>());
      }
    } else {
      return Invalid("stop", "must be a string or an array of strings");
    }
  }
  TM_ASSIGN_OR_RETURN(auto stream, f.Bool("stream"));
  r.stream = stream.value_or(false);
  if (const Json* so = f.Get("stream_options")) {
    if (!so->is_object()) return Invalid("stream_options", "must be an object");
    for (auto it = so->begin(); it != so->end(); ++it) {
      if (it.key() != "include_usage")
        return Invalid("stream_options." + it.key(), "unknown field");
      if (!it->is_boolean())
        return Invalid("stream_options.include_usage", "must be true or false");
      r.include_usage = it->get<bool>();
    }
  }
  if (const Json* bias = f.Get("logit_bias"); bias != nullptr && !bias->empty()) {
    return Invalid("logit_bias", "not supported");
  }
  f.Ignore({"user"});
  return absl::OkStatus();
}

absl::Status ReadPrompt(const Json* prompt, CompletionInput& in) {
  if (prompt == nullptr) return Invalid("prompt", "is required");
  if (prompt->is_string()) {
    in.prompt = prompt->get<std::string>();
    return absl::OkStatus();
  }
  if (!prompt->is_array()) {
    return Invalid("prompt", "must be a string, an array of token ids, or a one-element list");
  }
  if (prompt->empty()) return Invalid("prompt", "must not be empty");
  if ((*prompt)[0].is_number()) {
    TM_ASSIGN_OR_RETURN(in.prompt_ids, TokenIdArray(*prompt, "prompt"));
    return absl::OkStatus();
  }
  if (prompt->size() > 1) {
    return Invalid("prompt", absl::StrCat("a batch of ", prompt->size(),
                                          " prompts is not supported; send one request per "
                                          "prompt (n gives several samples of one)"));
  }
  const Json& only = (*prompt)[0];
  if (only.is_string()) {
    in.prompt = only.get<std::string>();
  } else if (only.is_array()) {
    if (only.empty()) return Invalid("prompt[0]", "must not be empty");
    TM_ASSIGN_OR_RETURN(in.prompt_ids, TokenIdArray(only, "prompt[0]"));
  } else {
    return Invalid("prompt[0]", "must be a string or an array of token ids");
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> ReadMessages(const Json* messages) {
  if (messages == nullptr) return Invalid("messages", "is required");
  if (!messages->is_array()) return Invalid("messages", "must be an array");
  Json out = Json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return Invalid(at, "must be an object");
    Json msg = Json::object();
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it.key() != "role" && it.key() != "content" && it.key() != "name") {
        return Invalid(absl::StrCat(at, ".", it.key()), "not supported");
      }
    }
    if (!m.contains("role") || !m["role"].is_string())
      return Invalid(at + ".role", "must be a string");
    msg["role"] = m["role"];
    const Json content = m.contains("content") ? m["content"] : Json();
    if (content.is_null()) {
      msg["content"] = "";
    } else if (content.is_string()) {
      msg["content"] = content;
    } else if (content.is_array()) {
      std::vector<std::string> texts;
      for (size_t k = 0; k < content.size(); ++k) {
        const Json& part = content[k];
        const std::string pat = absl::StrCat(at, ".content[", k, "]");
        if (!part.is_object() || !part.contains("type") || part["type"] != "text") {
          return Invalid(pat + ".type", "only text parts are supported");
        }
        if (!part.contains("text") || !part["text"].is_string()) {
          return Invalid(pat + ".text", "must be a string");
        }
        texts.push_back(part["text"].get<std::string>());
      }
      msg["content"] = absl::StrJoin(texts, "\n");
    } else {
      return Invalid(at + ".content", "must be a string or an array of text parts");
    }
    if (m.contains("name")) {
      if (!m["name"].is_string()) return Invalid(at + ".name", "must be a string");
      msg["name"] = m["name"];
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::string TokenText(const Tokenizer* tokenizer, int32_t id) {
  if (tokenizer == nullptr) return absl::StrCat("token_id:", id);
  auto text = tokenizer->Decode(std::span<const int32_t>(&id, 1), /*skip_special=*/false);
  return text.ok() ? SanitizeUtf8(*text) : absl::StrCat("token_id:", id);
}

Json BytesOf(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Log-probs in the completions format: parallel arrays.
Json CompletionLogprobs(const ResponseContext& ctx, const OpenAiRequest& req,
                        const std::vector<SampledToken>& tokens, size_t text_offset) {
  Json tok = Json::array(), lps = Json::array(), tops = Json::array(), offs = Json::array();
  for (const SampledToken& t : tokens) {
    const std::string s = TokenText(ctx.tokenizer, t.token_id);
    tok.push_back(s);
    lps.push_back(t.logprob);
    Json top = Json::object();
    for (int k = 0; k < std::min<int>(req.top_logprobs, t.top_logprobs.size()); ++k) {
      top[TokenText(ctx.tokenizer, t.top_logprobs[k].token_id)] = t.top_logprobs[k].logprob;
    }
    tops.push_back(std::move(top));
    offs.push_back(text_offset);
    text_offset += s.size();
  }
  return {{"tokens", tok}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

// Log-probs in the chat format: one entry per token.
Json ChatLogprobs(const ResponseContext& ctx, const OpenAiRequest& req,
                  const std::vector<SampledToken>& tokens) {
  Json content = Json::array();
  for (const SampledToken& t : tokens) {
    const std::string s = TokenText(ctx.tokenizer, t.token_id);
    Json top = Json::array();
    for (int k = 0; k < std::min<int>(req.top_logprobs, t.top_logprobs.size()); ++k) {
      const std::string ts = TokenText(ctx.tokenizer, t.top_logprobs[k].token_id);
      top.push_back(
          {{"token", ts}, {"logprob", t.top_logprobs[k].logprob}, {"bytes", BytesOf(ts)}});
    }
    content.push_back({{"token", s},
                       {"logprob", t.logprob},
                       {"bytes", BytesOf(s)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

Json Envelope(const ResponseContext& ctx, const char* object) {
  return {{"id", ctx.id}, {"object", object}, {"created", ctx.created}, {"model", ctx.model}};
}

Json FinishReasonJson(FinishReason r) {
  if (r == FinishReason::kNone) return nullptr;
  return OpenAiFinishReason(r);
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(const Json& body) {
  if (!body.is_object()) return Invalid("body", "must be a JSON object");
  OpenAiRequest r;
  r.client.protocol = "http";
  FieldReader f(body);
  TM_RETURN_IF_ERROR(ReadSampling(f, r));
  CompletionInput& in = r.client.input;
  TM_RETURN_IF_ERROR(ReadPrompt(f.Get("prompt"), in));
  TM_ASSIGN_OR_RETURN(r.client.max_tokens, f.Int32("max_tokens"));
  TM_ASSIGN_OR_RETURN(auto logprobs, f.Int32("logprobs"));
  if (logprobs.has_value()) {
    if (*logprobs < 0) return Invalid("logprobs", absl::StrCat("must be >= 0, got ", *logprobs));
    r.logprobs = true;
    r.top_logprobs = *logprobs;
    // The engine reports the sampled token's log-prob only alongside a top-n list.
    in.sampling.logprobs = std::max(1, *logprobs);
  }
  TM_ASSIGN_OR_RETURN(auto echo, f.Bool("echo"));
  if (echo.value_or(false)) return Invalid("echo", "not supported");
  TM_ASSIGN_OR_RETURN(auto best_of, f.Int32("best_of"));
  if (best_of.has_value() && *best_of != in.n) {
    return Invalid("best_of", "only best_of == n is supported");
  }
  if (f.Get("suffix") != nullptr) return Invalid("suffix", "not supported");
  TM_ASSIGN_OR_RETURN(auto add_special, f.Bool("add_special_tokens"));
  in.add_special = add_special;
  TM_RETURN_IF_ERROR(f.CheckNoUnknown());
  return r;
}

absl::StatusOr<OpenAiRequest> ParseChatRequest(const Json& body) {
  if (!body.is_object()) return Invalid("body", "must be a JSON object");
  OpenAiRequest r;
  r.chat = true;
  r.client.protocol = "http";
  FieldReader f(body);
  TM_RETURN_IF_ERROR(ReadSampling(f, r));
  CompletionInput& in = r.client.input;
  TM_ASSIGN_OR_RETURN(in.messages, ReadMessages(f.Get("messages")));
  TM_ASSIGN_OR_RETURN(auto max_tokens, f.Int32("max_tokens"));
  TM_ASSIGN_OR_RETURN(auto max_completion_tokens, f.Int32("max_completion_tokens"));
  r.client.max_tokens = max_completion_tokens.has_value() ? max_completion_tokens : max_tokens;
  TM_ASSIGN_OR_RETURN(auto logprobs, f.Bool("logprobs"));
  TM_ASSIGN_OR_RETURN(auto top_logprobs, f.Int32("top_logprobs"));
  if (top_logprobs.has_value() && !logprobs.value_or(false)) {
    return Invalid("top_logprobs", "needs logprobs: true");
  }
  if (top_logprobs.has_value() && *top_logprobs < 0) {
    return Invalid("top_logprobs", absl::StrCat("must be >= 0, got ", *top_logprobs));
  }
  if (logprobs.value_or(false)) {
    r.logprobs = true;
    r.top_logprobs = top_logprobs.value_or(0);
    in.sampling.logprobs = std::max(1, r.top_logprobs);
  }
  TM_ASSIGN_OR_RETURN(auto add_gen, f.Bool("add_generation_prompt"));
  in.add_generation_prompt = add_gen.value_or(true);
  if (const Json* tools = f.Get("tools"); tools != nullptr && !tools->empty()) {
    return Invalid("tools", "not supported");
  }
  if (const Json* choice = f.Get("tool_choice"); choice != nullptr && *choice != "none") {
    return Invalid("tool_choice", "not supported");
  }
  if (const Json* fmt = f.Get("response_format");
      fmt != nullptr && !(fmt->is_object() && fmt->value("type", "") == "text")) {
    return Invalid("response_format", "only {\"type\": \"text\"} is supported");
  }
  f.Ignore({"store", "metadata", "service_tier", "parallel_tool_calls"});
  TM_RETURN_IF_ERROR(f.CheckNoUnknown());
  return r;
}

Json UsageJson(const RequestUsage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.generated_tokens},
          {"total_tokens", u.prompt_tokens + u.generated_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"tokenmill", metrics::ToUsageJson(u.record)}};
}

Json CompletionResponseJson(const ResponseContext& ctx, const OpenAiRequest& req,
                            const CompletionResult& result) {
  Json j = Envelope(ctx, req.chat ? "chat.completion" : "text_completion");
  Json choices = Json::array();
  for (size_t i = 0; i < result.choices.size(); ++i) {
    const CompletionChoice& c = result.choices[i];
    Json choice = {{"index", i}};
    if (req.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = req.logprobs ? ChatLogprobs(ctx, req, c.logprobs) : Json();
    } else {
      choice["text"] = c.text;
      choice["logprobs"] = req.logprobs ? CompletionLogprobs(ctx, req, c.logprobs, 0) : Json();
    }
    choice["finish_reason"] = FinishReasonJson(c.finish_reason);
    choices.push_back(std::move(choice));
  }
  j["choices"] = std::move(choices);
  j["usage"] = UsageJson(result.usage);
  return j;
}

Json StreamChunkJson(const ResponseContext& ctx, const OpenAiRequest& req, const CompletionDelta& d,
                     bool first_of_choice) {
  Json j = Envelope(ctx, req.chat ? "chat.completion.chunk" : "text_completion");
  Json choice = {{"index", d.index}};
  if (req.chat) {
    Json delta = Json::object();
    if (first_of_choice) delta["role"] = "assistant";
    if (!d.text.empty() || first_of_choice) delta["content"] = d.text;
    choice["delta"] = std::move(delta);
    choice["logprobs"] = req.logprobs ? ChatLogprobs(ctx, req, d.logprobs) : Json();
  } else {
    choice["text"] = d.text;
    choice["logprobs"] = req.logprobs ? CompletionLogprobs(ctx, req, d.logprobs, 0) : Json();
  }
  choice["finish_reason"] = FinishReasonJson(d.finish_reason);
  j["choices"] = Json::array({std::move(choice)});
  if (req.include_usage) j["usage"] = nullptr;
  return j;
}

Json UsageChunkJson(const ResponseContext& ctx, const OpenAiRequest& req,
                    const RequestUsage& usage) {
  Json j = Envelope(ctx, req.chat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = Json::array();
  j["usage"] = UsageJson(usage);
  return j;
}

Json ModelJson(const std::string& name, int64_t created, int max_model_len) {
  return {{"id", name},
          {"object", "model"},
          {"created", created},
          {"owned_by", "tokenmill"},
          {"max_model_len", max_model_len}};
}

std::string DumpJson(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace tokenmill

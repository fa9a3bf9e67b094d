#include "loadgen/openai_stream.h"

#include <utility>

namespace tokenmill::loadgen {
namespace {

using json = nlohmann::json;

std::optional<double> NumberAt(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::optional<int64_t> IntAt(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<int64_t>();
}

std::string StringAt(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

nlohmann::json CompletionRequestBody(const TargetRequest& r, const std::string& model,
                                     bool send_token_ids, const nlohmann::json& extra_body) {
  json body;
  if (!model.empty()) body["model"] = model;
  if (send_token_ids || !r.prompt_text.has_value()) {
    body["prompt"] = r.prompt_ids;
  } else {
    body["prompt"] = *r.prompt_text;
  }
  body["max_tokens"] = r.max_tokens;
  body["temperature"] = r.temperature;
  body["seed"] = r.seed;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  // vLLM, SGLang, llama.cpp and tokenmill all take ignore_eos; min_tokens (vLLM) is left to
  // --extra-body because strict servers refuse fields they do not know.
  if (r.ignore_eos) body["ignore_eos"] = true;
  for (const auto& [key, value] : extra_body.items()) body[key] = value;
  return body;
}

bool OpenAiStreamReader::OnData(const std::string& data) {
  const double now_s = clock_->NowSeconds();
  if (data == "[DONE]") {
    saw_done_ = true;
    return false;
  }
  json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    Fail("protocol", "stream event is not a JSON object: " + data.substr(0, 200));
    return false;
  }
  try {
    if (auto err = j.find("error"); err != j.end()) {
      // OpenAI's error object; vLLM/tokenmill put the HTTP-ish code in "code".
      std::string code = "server_error";
      std::string message = err->dump();
      if (err->is_object()) {
        if (auto c = err->find("code"); c != err->end() && !c->is_null()) {
          code = c->is_string() ? c->get<std::string>() : "http_" + c->dump();
        } else if (std::string t = StringAt(*err, "type"); !t.empty()) {
          code = t;
        }
        if (std::string m = StringAt(*err, "message"); !m.empty()) message = m;
      }
      Fail(code, message);
      return false;
    }
    if (auto choices = j.find("choices"); choices != j.end() && choices->is_array()) {
      for (const json& c : *choices) ReadChoice(c, now_s);
    }
    if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) ReadUsage(*usage);
  } catch (const json::exception& e) {
    Fail("protocol", std::string("stream event: ") + e.what());
    return false;
  }
  return true;
}

void OpenAiStreamReader::ReadChoice(const json& c, double now_s) {
  if (!c.is_object()) return;
  auto fr = c.find("finish_reason");
  const bool finishes = fr != c.end() && fr->is_string();
  // A chunk is a token event when it carries text or ids, and also when its text is empty
  // but it does not finish: servers stream one chunk per decode step, and a token whose
  // bytes are held back (half a UTF-8 character) arrives as "" (vLLM's benchmark counts
  // these too). An empty chunk that only finishes carries no token.
  bool has_output = false;
  if (auto t = c.find("text"); t != c.end() && t->is_string()) {
    has_output = !t->get_ref<const std::string&>().empty() || !finishes;
  }
  // Servers that return token ids per chunk count exactly.
  for (const char* key : {"token_ids", "tokens"}) {
    if (auto ids = c.find(key); ids != c.end() && ids->is_array() && !ids->empty()) {
      num_output_ids_ += static_cast<int64_t>(ids->size());
      has_output = true;
      break;
    }
  }
  if (has_output) {
    ++num_output_chunks_;
    result_->chunk_times_s.push_back(now_s);
    if (!result_->first_token_s.has_value()) result_->first_token_s = now_s;
  }
  if (finishes) {
    saw_finish_ = true;
    result_->finish_reason = fr->get<std::string>();
  }
}

void OpenAiStreamReader::ReadUsage(const json& u) {
  if (auto v = IntAt(u, "completion_tokens")) {
    result_->output_tokens = *v;
    result_->output_tokens_from_usage = true;
  }
  if (auto v = IntAt(u, "prompt_tokens")) result_->prompt_tokens = *v;
  if (auto d = u.find("prompt_tokens_details"); d != u.end() && d->is_object()) {
    if (auto v = IntAt(*d, "cached_tokens")) result_->cached_tokens = *v;
  }
  auto tm = u.find("tokenmill");
  if (tm == u.end() || !tm->is_object()) return;
  if (auto v = IntAt(*tm, "cached_tokens")) result_->cached_tokens = *v;
  result_->joules = NumberAt(*tm, "joules");
  result_->cost = NumberAt(*tm, "cost");
  result_->currency = StringAt(*tm, "currency");
  result_->energy_source = StringAt(*tm, "energy_source");
}

void OpenAiStreamReader::Fail(std::string code, std::string message) {
  if (!result_->ok()) return;  // the first error explains the request
  result_->error_code = std::move(code);
  result_->error_message = std::move(message);
}

void OpenAiStreamReader::Finish() {
  result_->end_s = clock_->NowSeconds();
  if (!result_->output_tokens_from_usage) {
    result_->output_tokens = num_output_ids_ > 0 ? num_output_ids_ : num_output_chunks_;
  }
  if (result_->ok() && !saw_finish_ && !saw_done_) {
    Fail("protocol", "stream ended before a finish_reason or [DONE]");
  }
}

}  // namespace tokenmill::loadgen

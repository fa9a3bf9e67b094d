// `tokenmill generate`: one prompt streamed to the terminal, or a JSONL file of requests
// run through one engine at once.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/commands.h"
#include "spdlog/spdlog.h"
#include "tokenmill/api/completion.h"
#include "tokenmill/server/engine_flags.h"

namespace tokenmill {
namespace {

using json = nlohmann::ordered_json;

struct GenerateFlags {
  std::string model;
  std::string tokenizer;
  std::string prompt;
  std::string prompt_ids;
  std::string requests;
  bool chat = false;
  std::string output = "text";
  int n = 1;
  std::vector<std::string> stop;
  SamplingParams sampling;
  int64_t seed = -1;
  EngineFlags engine;
};

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& s, const std::string& field) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(s, absl::ByAnyChar(" ,"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": '", part, "' is not a token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

json ResultJson(const CompletionResult& r, bool random_weights) {
  json j;
  j["prompt_ids"] = r.prompt_ids;
  j["ids"] = r.choices[0].ids;
  j["text"] = r.choices[0].text;
  j["finish_reason"] = OpenAiFinishReason(r.choices[0].finish_reason);
  if (r.choices.size() > 1) {
    json choices = json::array();
    for (const CompletionChoice& c : r.choices) {
      choices.push_back({{"ids", c.ids}, {"text", c.text},
                         {"finish_reason", OpenAiFinishReason(c.finish_reason)}});
    }
    j["choices"] = choices;
  }
  j["usage"] = {{"prompt_tokens", r.usage.prompt_tokens},
                {"cached_tokens", r.usage.cached_tokens},
                {"generated_tokens", r.usage.generated_tokens},
                {"ttft_s", r.usage.ttft_s},
                {"tpot_s", r.usage.tpot_s},
                {"e2e_s", r.usage.e2e_s}};
  if (!r.status.ok()) j["error"] = r.status.ToString();
  if (random_weights) j["random_weights"] = true;
  return j;
}

// One line of a --requests file: {"prompt": "...", "max_tokens": N, "temperature": T, ...}.
absl::StatusOr<CompletionInput> ParseRequestLine(const std::string& line, const GenerateFlags& f) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  CompletionInput in;
  in.sampling = f.sampling;
  in.n = f.n;
  in.stop = f.stop;
  try {
    if (j.contains("prompt")) in.prompt = j["prompt"].get<std::string>();
    if (j.contains("prompt_ids")) in.prompt_ids = j["prompt_ids"].get<std::vector<int32_t>>();
    if (j.contains("messages")) in.messages = j["messages"];
    if (j.contains("max_tokens")) in.sampling.max_tokens = j["max_tokens"].get<int>();
    if (j.contains("temperature")) in.sampling.temperature = j["temperature"].get<float>();
    if (j.contains("top_k")) in.sampling.top_k = j["top_k"].get<int>();
    if (j.contains("top_p")) in.sampling.top_p = j["top_p"].get<float>();
    if (j.contains("min_p")) in.sampling.min_p = j["min_p"].get<float>();
    if (j.contains("repetition_penalty")) in.sampling.repetition_penalty = j["repetition_penalty"].get<float>();
    if (j.contains("frequency_penalty")) in.sampling.frequency_penalty = j["frequency_penalty"].get<float>();
    if (j.contains("presence_penalty")) in.sampling.presence_penalty = j["presence_penalty"].get<float>();
    if (j.contains("seed")) in.sampling.seed = j["seed"].get<uint64_t>();
    if (j.contains("ignore_eos")) in.sampling.ignore_eos = j["ignore_eos"].get<bool>();
    if (j.contains("n")) in.n = j["n"].get<int>();
    if (j.contains("priority")) in.priority = j["priority"].get<int>();
    if (j.contains("tenant")) in.tenant = j["tenant"].get<std::string>();
    if (j.contains("stop")) {
      in.stop = j["stop"].is_string() ? std::vector<std::string>{j["stop"].get<std::string>()}
                                      : j["stop"].get<std::vector<std::string>>();
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return in;
}

int RunBatch(const GenerateFlags& f, const ModelBundle& bundle, Engine& engine) {
  std::ifstream file(f.requests);
  if (!file) {
    spdlog::error("--requests: cannot read {}", f.requests);
    return 2;
  }
  struct Pending {
    CompletionInput input;
    EngineRequest request;
    std::shared_ptr<RequestStream> stream;
    absl::Status error;
  };
  std::vector<Pending> pending;
  std::string line;
  int line_no = 0;
  const double t0 = SystemClock::Get().NowSeconds();
  while (std::getline(file, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto input = ParseRequestLine(line, f);
    if (!input.ok()) {
      spdlog::error("{}:{}: {}", f.requests, line_no, std::string(input.status().message()));
      return 2;
    }
    Pending p;
    p.input = *std::move(input);
    auto req = PrepareRequest(bundle, p.input);
    if (req.ok()) {
      p.request = *std::move(req);
      auto stream = engine.Submit(p.request);
      if (stream.ok()) p.stream = *stream; else p.error = stream.status();
    } else {
      p.error = req.status();
    }
    if (!p.error.ok()) spdlog::error("{}:{}: {}", f.requests, line_no, p.error.ToString());
    pending.push_back(std::move(p));
  }
  int64_t generated = 0, failed = 0;
  for (Pending& p : pending) {
    if (!p.error.ok()) {
      ++failed;
      std::cout << json({{"error", p.error.ToString()}, {"finish_reason", "error"}}).dump() << "\n";
      continue;
    }
    const CompletionResult r = CollectCompletion(engine, bundle, p.request, *p.stream, p.input);
    generated += r.usage.generated_tokens;
    std::cout << ResultJson(r, bundle.model->config.is_random_weights).dump() << "\n";
  }
  const double wall = SystemClock::Get().NowSeconds() - t0;
  const EngineStats st = engine.stats();
  json summary = {{"requests", pending.size()},
                  {"failed_requests", failed},
                  {"steps", st.scheduler.num_steps},
                  {"prefill_tokens_computed", st.scheduler.num_prefill_tokens},
                  {"decode_tokens_computed", st.scheduler.num_decode_tokens},
                  {"cached_prompt_tokens", st.scheduler.num_cached_prompt_tokens},
                  {"preemptions", st.scheduler.num_preemptions},
                  {"generated_tokens", generated},
                  {"wall_s", wall},
                  {"output_tokens_per_s", wall > 0 ? generated / wall : 0.0}};
  std::cout << json({{"summary", summary}}).dump() << std::endl;
  return failed == 0 ? 0 : 1;
}

int RunSingle(const GenerateFlags& f, const ModelBundle& bundle, Engine& engine) {
  CompletionInput in;
  in.sampling = f.sampling;
  in.n = f.n;
  in.stop = f.stop;
  if (!f.prompt_ids.empty()) {
    auto ids = ParseIds(f.prompt_ids, "--prompt-ids");
    if (!ids.ok()) {
      spdlog::error("{}", std::string(ids.status().message()));
      return 2;
    }
    in.prompt_ids = *ids;
  } else if (f.chat) {
    in.messages = json::array({{{"role", "user"}, {"content", f.prompt}}});
  } else {
    in.prompt = f.prompt;
  }
  const bool stream_text = f.output == "text" && f.n == 1;
  DeltaCallback on_delta = nullptr;
  if (stream_text) {
    on_delta = [](int, const std::string& text, const std::vector<int32_t>&) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    };
  }
  auto result = RunCompletion(engine, bundle, in, on_delta);
  if (!result.ok()) {
    spdlog::error("{}", result.status().ToString());
    return 2;
  }
  if (f.output == "json") {
    std::cout << ResultJson(*result, bundle.model->config.is_random_weights).dump() << std::endl;
  } else if (stream_text) {
    std::cout << std::endl;
  } else {
    for (size_t i = 0; i < result->choices.size(); ++i) {
      std::cout << "--- sample " << i << " ---\n" << result->choices[i].text << "\n";
    }
  }
  const RequestUsage& u = result->usage;
  spdlog::info("{} prompt tokens ({} cached), {} generated; ttft {:.3f} s, {:.1f} tokens/s, "
               "finish: {}",
               u.prompt_tokens, u.cached_tokens, u.generated_tokens, u.ttft_s,
               u.tpot_s > 0 ? 1.0 / u.tpot_s : 0.0,
               OpenAiFinishReason(result->choices[0].finish_reason));
  if (!result->status.ok()) {
    spdlog::error("{}", result->status.ToString());
    return 1;
  }
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, std::function<int()>* action) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt (or a JSONL file)");
  cmd->add_option("--model,-m", f->model, "Model: GGUF file, HF directory, or demo[:preset]")
      ->required();
  cmd->add_option("--tokenizer", f->tokenizer, "Tokenizer path (default: the model's own)");
  cmd->add_option("--prompt,-p", f->prompt, "Prompt text");
  cmd->add_option("--prompt-ids", f->prompt_ids, "Prompt as token ids (\"1 2 3\")");
  cmd->add_option("--requests", f->requests,
                  "JSONL file of requests ({\"prompt\":..., \"max_tokens\":...} per line)");
  cmd->add_flag("--chat", f->chat, "Wrap the prompt as a user message in the chat template");
  cmd->add_option("--output", f->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--max-tokens,-n", f->sampling.max_tokens, "Tokens to generate")
      ->capture_default_str();
  cmd->add_option("--temperature", f->sampling.temperature, "0 is greedy")->capture_default_str();
  cmd->add_option("--top-k", f->sampling.top_k, "0: off")->capture_default_str();
  cmd->add_option("--top-p", f->sampling.top_p, "1: off")->capture_default_str();
  cmd->add_option("--min-p", f->sampling.min_p, "0: off")->capture_default_str();
  cmd->add_option("--repetition-penalty", f->sampling.repetition_penalty, "1: off");
  cmd->add_option("--frequency-penalty", f->sampling.frequency_penalty, "0: off");
  cmd->add_option("--presence-penalty", f->sampling.presence_penalty, "0: off");
  cmd->add_option("--seed", f->seed, "Per-request seed (same seed, same output)");
  cmd->add_option("--stop", f->stop, "Stop string (repeatable)");
  cmd->add_option("--num-samples", f->n, "Parallel samples (n)")->capture_default_str();
  cmd->add_flag("--ignore-eos", f->sampling.ignore_eos, "Keep generating past EOS");
  AddEngineFlags(cmd, &f->engine);
  f->sampling.max_tokens = 128;
  cmd->callback([f, action] {
    *action = [f]() -> int {
      if (f->seed >= 0) f->sampling.seed = static_cast<uint64_t>(f->seed);
      if (f->prompt.empty() && f->prompt_ids.empty() && f->requests.empty()) {
        spdlog::error("generate: give --prompt, --prompt-ids or --requests");
        return 2;
      }
      auto bundle = LoadModelBundle(f->model, f->tokenizer);
      if (!bundle.ok()) {
        spdlog::error("{}", bundle.status().ToString());
        return 2;
      }
      WarnIfRandomWeights(*bundle);
      auto engine = BuildEngine(*bundle, f->engine);
      if (!engine.ok()) {
        spdlog::error("{}", engine.status().ToString());
        return 2;
      }
      return f->requests.empty() ? RunSingle(*f, *bundle, **engine)
                                 : RunBatch(*f, *bundle, **engine);
    };
  });
}

}  // namespace tokenmill

#include "tokenmill/api/completion.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "tokenmill/api/text_stream.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

absl::StatusOr<std::vector<int32_t>> Tokenize(const ModelBundle& bundle, const std::string& text,
                                              std::optional<bool> add_special) {
  if (bundle.tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt: model '", bundle.name, "' has no tokenizer; send token ids"));
  }
  EncodeOptions opts;
  opts.add_special = add_special;
  opts.parse_special = true;
  return bundle.tokenizer->Encode(text, opts);
}

absl::StatusOr<std::vector<int32_t>> RenderChat(const ModelBundle& bundle,
                                                const CompletionInput& in) {
  if (!bundle.chat_template.has_value() || bundle.tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages: model '", bundle.name, "' has no chat template"));
  }
  nlohmann::ordered_json req;
  req["messages"] = *in.messages;
  req["add_generation_prompt"] = in.add_generation_prompt;
  TM_ASSIGN_OR_RETURN(ChatTemplateInputs inputs, ChatTemplateInputsFromJson(req));
  const auto& src = bundle.chat_template_source;
  if (src.has_value() && src->bos_token.has_value()) inputs.bos_token = *src->bos_token;
  if (src.has_value() && src->eos_token.has_value()) inputs.eos_token = *src->eos_token;
  TM_ASSIGN_OR_RETURN(std::string text, bundle.chat_template->Render(inputs));
  // The template writes BOS itself when the model wants one: never add a second.
  return Tokenize(bundle, text, /*add_special=*/false);
}

}  // namespace

const char* OpenAiFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength:
    case FinishReason::kContextLength: return "length";
    default: return FinishReasonName(reason);
  }
}

absl::StatusOr<EngineRequest> PrepareRequest(const ModelBundle& bundle,
                                             const CompletionInput& in) {
  const int given = in.prompt.has_value() + in.prompt_ids.has_value() + in.messages.has_value();
  if (given != 1) {
    return absl::InvalidArgumentError(
        "prompt: give exactly one of a prompt text, prompt token ids or chat messages");
  }
  if (!in.stop.empty() && bundle.tokenizer == nullptr) {
    return absl::InvalidArgumentError("stop: stop strings need a model with a tokenizer");
  }
  EngineRequest r;
  r.id = in.request_id;
  r.tenant = in.tenant;
  r.model = bundle.name;
  r.sampling = in.sampling;
  r.n = in.n;
  r.priority = in.priority;
  r.deadline_s = in.deadline_s;
  if (in.prompt_ids.has_value()) {
    r.prompt_ids = *in.prompt_ids;
  } else if (in.prompt.has_value()) {
    TM_ASSIGN_OR_RETURN(r.prompt_ids, Tokenize(bundle, *in.prompt, in.add_special));
  } else {
    TM_ASSIGN_OR_RETURN(r.prompt_ids, RenderChat(bundle, in));
  }
  return r;
}

CompletionResult StreamCompletion(Engine& engine, const ModelBundle& bundle,
                                  const EngineRequest& request, RequestStream& stream,
                                  const CompletionInput& input,
                                  const CompletionDeltaCallback& on_delta) {
  CompletionResult result;
  result.request_id = stream.request_id();
  result.prompt_ids = request.prompt_ids;
  result.choices.resize(request.n);
  std::vector<std::unique_ptr<SequenceTextStream>> texts;
  for (int i = 0; i < request.n; ++i) {
    texts.push_back(std::make_unique<SequenceTextStream>(bundle.tokenizer.get(), input.stop,
                                                         input.skip_special_tokens));
    if (absl::Status s = texts.back()->Prime(request.prompt_ids); !s.ok()) result.status = s;
  }
  TokenEvent ev;
  while (stream.Next(&ev)) {
    CompletionChoice& c = result.choices[ev.index];
    SequenceTextStream& text = *texts[ev.index];
    CompletionDelta d;
    d.index = ev.index;
    for (size_t k = 0; k < ev.token_ids.size() && !text.stopped(); ++k) {
      auto stopped = text.Add(ev.token_ids[k], &d.text);
      if (!stopped.ok()) {
        result.status = stopped.status();
        break;
      }
      d.ids.push_back(ev.token_ids[k]);
      if (k < ev.logprobs.size()) d.logprobs.push_back(ev.logprobs[k]);
      if (*stopped) engine.StopSequence(stream.request_id(), ev.index);
    }
    if (ev.finished) {
      text.Finish(&d.text);
      c.finish_reason = text.stopped() ? FinishReason::kStop : ev.finish_reason;
      d.finish_reason = c.finish_reason;
    }
    c.ids.insert(c.ids.end(), d.ids.begin(), d.ids.end());
    c.logprobs.insert(c.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
    c.text += d.text;
    if (on_delta && (!d.text.empty() || !d.ids.empty() || ev.finished)) on_delta(d);
    if (!ev.status.ok()) result.status = ev.status;
    if (ev.usage.has_value()) result.usage = *ev.usage;
  }
  return result;
}

CompletionResult CollectCompletion(Engine& engine, const ModelBundle& bundle,
                                   const EngineRequest& request, RequestStream& stream,
                                   const CompletionInput& input, const DeltaCallback& on_delta) {
  CompletionDeltaCallback cb = nullptr;
  if (on_delta) {
    cb = [&on_delta](const CompletionDelta& d) {
      if (!d.text.empty() || !d.ids.empty()) on_delta(d.index, d.text, d.ids);
    };
  }
  return StreamCompletion(engine, bundle, request, stream, input, cb);
}

absl::StatusOr<CompletionResult> RunCompletion(Engine& engine, const ModelBundle& bundle,
                                               const CompletionInput& input,
                                               const DeltaCallback& on_delta) {
  TM_ASSIGN_OR_RETURN(EngineRequest request, PrepareRequest(bundle, input));
  TM_ASSIGN_OR_RETURN(std::shared_ptr<RequestStream> stream, engine.Submit(request));
  return CollectCompletion(engine, bundle, request, *stream, input, on_delta);
}

}  // namespace tokenmill

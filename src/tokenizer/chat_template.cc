#include "tokenmill/tokenizer/chat_template.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/json_value.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenizer/jinja/renderer.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

absl::Status Prefixed(const absl::Status& status) {
  if (status.ok() || status.GetPayload(jinja::kRaisedPayload)) return status;
  return absl::Status(status.code(), absl::StrCat("chat template: ", status.message()));
}

absl::StatusOr<jinja::Value> JsonVariable(const nlohmann::ordered_json& json,
                                          const std::string& field) {
  absl::StatusOr<jinja::Value> v = jinja::ValueFromJson(json);
  if (!v.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template input '", field, "': ", v.status().message()));
  }
  return v;
}

// strftime_now(): Python's datetime.strftime on the injected or current local time.
std::function<std::string(const std::string&)> MakeStrftime(
    const std::optional<absl::CivilSecond>& now) {
  if (now) {
    const absl::Time t = absl::FromCivil(*now, absl::UTCTimeZone());
    return
        [t](const std::string& format) { return absl::FormatTime(format, t, absl::UTCTimeZone()); };
  }
  return [](const std::string& format) {
    return absl::FormatTime(format, absl::Now(), absl::LocalTimeZone());
  };
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(const std::string& source,
                                                 const ChatTemplateLimits& limits) {
  if (!jinja::IsValidUtf8(source)) {
    return absl::InvalidArgumentError("chat template: the template is not valid UTF-8");
  }
  absl::StatusOr<std::unique_ptr<jinja::Template>> parsed = jinja::ParseTemplate(source);
  if (!parsed.ok()) return Prefixed(parsed.status());
  ChatTemplate tmpl;
  tmpl.source_ = std::make_shared<const std::string>(source);
  tmpl.template_ = std::shared_ptr<const jinja::Template>(std::move(*parsed));
  tmpl.limits_ = limits;
  return tmpl;
}

absl::StatusOr<std::string> ChatTemplate::Render(const ChatTemplateInputs& inputs) const {
  if (!inputs.messages.is_array()) {
    return absl::InvalidArgumentError("chat template input 'messages' must be an array");
  }
  if (!inputs.extra_context.is_object() && !inputs.extra_context.is_null()) {
    return absl::InvalidArgumentError("chat template input 'extra_context' must be an object");
  }
  auto globals = std::make_shared<jinja::Scope>();
  jinja::AddGlobals(*globals, MakeStrftime(inputs.now));
  if (inputs.extra_context.is_object()) {
    for (const auto& [key, value] : inputs.extra_context.items()) {
      TM_ASSIGN_OR_RETURN(jinja::Value v, JsonVariable(value, key));
      globals->Set(key, std::move(v));
    }
  }
  TM_ASSIGN_OR_RETURN(jinja::Value messages, JsonVariable(inputs.messages, "messages"));
  globals->Set("messages", std::move(messages));
  globals->Set("add_generation_prompt", jinja::Value::Bool(inputs.add_generation_prompt));
  if (!inputs.tools.is_null()) {
    TM_ASSIGN_OR_RETURN(jinja::Value tools, JsonVariable(inputs.tools, "tools"));
    globals->Set("tools", std::move(tools));
  }
  if (inputs.bos_token) globals->Set("bos_token", jinja::Value::Str(*inputs.bos_token));
  if (inputs.eos_token) globals->Set("eos_token", jinja::Value::Str(*inputs.eos_token));

  jinja::RenderLimits limits;
  limits.max_output_bytes = limits_.max_output_bytes;
  limits.max_loop_iterations = limits_.max_loop_iterations;
  limits.max_call_depth = limits_.max_call_depth;
  jinja::Renderer renderer(limits);
  absl::StatusOr<std::string> text = renderer.Render(*template_, globals);
  if (!text.ok()) return Prefixed(text.status());
  return text;
}

absl::StatusOr<ChatTemplateInputs> ChatTemplateInputsFromJson(
    const nlohmann::ordered_json& request) {
  if (!request.is_object()) {
    return absl::InvalidArgumentError("chat template request must be a JSON object");
  }
  ChatTemplateInputs inputs;
  bool has_messages = false;
  for (const auto& [key, value] : request.items()) {
    if (key == "messages") {
      if (!value.is_array()) return absl::InvalidArgumentError("'messages' must be an array");
      inputs.messages = value;
      has_messages = true;
    } else if (key == "add_generation_prompt") {
      if (!value.is_boolean()) {
        return absl::InvalidArgumentError("'add_generation_prompt' must be true or false");
      }
      inputs.add_generation_prompt = value.get<bool>();
    } else if (key == "tools") {
      inputs.tools = value;
    } else if ((key == "bos_token" || key == "eos_token") && value.is_string()) {
      (key == "bos_token" ? inputs.bos_token : inputs.eos_token) = value.get<std::string>();
    } else {
      inputs.extra_context[key] = value;
    }
  }
  if (!has_messages) return absl::InvalidArgumentError("chat template request lacks 'messages'");
  return inputs;
}

}  // namespace tokenmill

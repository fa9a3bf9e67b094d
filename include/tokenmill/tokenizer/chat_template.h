// Chat templates: renders a conversation into the model's prompt text by running the
// model's own Jinja `chat_template` with a built-in Jinja-subset interpreter
// (src/tokenizer/jinja/), configured as Hugging Face transformers configures jinja2:
// trim_blocks, lstrip_blocks, loop controls, an immutable sandbox, `tojson` as
// json.dumps(ensure_ascii=False), and the globals raise_exception() and strftime_now().
// There are no per-family renderers: any template inside the subset renders byte for byte
// as Python jinja2 does (docs/chat_templates.md lists the subset and the known gaps).
//
// The rendered text usually begins with bos_token already; tokenize it without adding
// special tokens again (as HF does), or the prompt gets a doubled BOS.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "nlohmann/json.hpp"

namespace tokenmill {

namespace jinja {
struct Template;
}  // namespace jinja

// Everything a template can see. JSON objects keep their key order (ordered_json), because
// templates print them with tojson and iterate them with items(), as Python dicts would.
struct ChatTemplateInputs {
  // The conversation: an array of {"role": ..., "content": ..., ...} objects, passed to the
  // template unchanged (tool_calls, name, multimodal content lists included).
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  bool add_generation_prompt = false;
  // Tool schemas; null leaves `tools` undefined in the template.
  nlohmann::ordered_json tools;
  // Unset leaves the variable undefined (a model without that token).
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  // Further template variables (an object), e.g. builtin_tools, documents, date_string.
  // The fields above take precedence over keys of the same name here.
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
  // The time strftime_now() formats; unset: the current local time.
  std::optional<absl::CivilSecond> now;
};

// Budgets that stop hostile templates; a render that passes one fails with
// ResourceExhausted instead of hanging or exhausting memory.
struct ChatTemplateLimits {
  size_t max_output_bytes = size_t{64} << 20;  // also bounds every string built on the way
  int64_t max_loop_iterations = 10'000'000;    // summed over all loops of one render
  int max_call_depth = 100;                    // nested macro calls
};

// A parsed template. Immutable after Parse; Render may be called from several threads at
// once. Copies share the parsed tree.
class ChatTemplate {
 public:
  // InvalidArgument "chat template: template syntax error at line L, column C: ..." for
  // malformed templates or tags outside the subset (include, extends, import, ...).
  static absl::StatusOr<ChatTemplate> Parse(const std::string& source,
                                            const ChatTemplateLimits& limits = {});

  // Renders the prompt. Errors:
  // - the template called raise_exception(msg): InvalidArgument whose message is msg
  //   verbatim (e.g. "System role not supported");
  // - a Python-level error (undefined attribute of an undefined value, str + int, ...):
  //   InvalidArgument "chat template: line N: <message as jinja2 words it>";
  // - a budget of ChatTemplateLimits exceeded: ResourceExhausted;
  // - inputs that are not JSON of the expected shape (messages not an array, extra_context
  //   not an object, nesting deeper than 512): InvalidArgument naming the field.
  absl::StatusOr<std::string> Render(const ChatTemplateInputs& inputs) const;

  const std::string& source() const { return *source_; }

 private:
  std::shared_ptr<const std::string> source_;
  std::shared_ptr<const jinja::Template> template_;
  ChatTemplateLimits limits_;
};

// Inputs from a request object such as the CLI reads on stdin:
// {"messages": [...], "add_generation_prompt": true, "tools": [...], ...}. "messages" is
// required; "bos_token"/"eos_token" may override; every other key becomes extra_context.
absl::StatusOr<ChatTemplateInputs> ChatTemplateInputsFromJson(
    const nlohmann::ordered_json& request);

// A model's template and the special tokens it refers to.
struct ChatTemplateSource {
  std::string source;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::string origin;  // the file the template came from
};

// Finds the chat template of a model. `path` may be:
// - a model or tokenizer directory: chat_template.jinja, else chat_template.json, else the
//   "chat_template" of tokenizer_config.json (bos/eos from tokenizer_config.json, else
//   special_tokens_map.json);
// - a tokenizer_config.json, a tokenizer.json (its directory is searched), or a .jinja file;
// - a GGUF file: tokenizer.chat_template, bos/eos from tokenizer.ggml.{bos,eos}_token_id.
// `name` picks one of several named templates ("default" when empty, e.g. "tool_use").
// NotFound when the model has no chat template; InvalidArgument for malformed files.
absl::StatusOr<ChatTemplateSource> LoadChatTemplateSource(const std::string& path,
                                                          const std::string& name = "");

}  // namespace tokenmill

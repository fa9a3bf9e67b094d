// Chat templates on arbitrary template text: ChatTemplate::Parse, then Render with a fixed
// tool-use conversation. Hostile templates (deep nesting, runaway loops, string doubling,
// recursion) must stop with a Status within the limits below, never crash or hang; a
// successful render stays within max_output_bytes.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "fuzz/fuzz_util.h"
#include "tokenmill/tokenizer/chat_template.h"

namespace {

tokenmill::ChatTemplateInputs MakeInputs() {
  tokenmill::ChatTemplateInputs in;
  in.messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris? \u00e9\u4f60\ud83d\udc4d"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"t\": 21}"},
    {"role": "user", "content": [{"type": "text", "text": "Thanks"}, {"type": "image"}]}
  ])");
  in.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {
    "name": "get_weather", "description": "Forecast",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}])");
  in.add_generation_prompt = true;
  in.bos_token = "<s>";
  in.eos_token = "</s>";
  in.extra_context = {{"date_string", "26 Jul 2024"}, {"builtin_tools", {"code_interpreter"}}};
  in.now = absl::CivilSecond(2024, 7, 26, 12, 0, 0);
  return in;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const tokenmill::ChatTemplateInputs* inputs =
      new tokenmill::ChatTemplateInputs(MakeInputs());
  // Far below the defaults so that each input runs in milliseconds even under ASan; the
  // budgets are what is under test, not their size.
  tokenmill::ChatTemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_loop_iterations = 20'000;
  limits.max_call_depth = 40;
  const std::string source(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tokenmill::ChatTemplate> tmpl = tokenmill::ChatTemplate::Parse(source, limits);
  if (!tmpl.ok()) return 0;
  absl::StatusOr<std::string> text = tmpl->Render(*inputs);
  if (text.ok()) {
    TM_FUZZ_ASSERT(text->size() <= limits.max_output_bytes, absl::StrCat(text->size(), " bytes"));
  }
  (void)tmpl->Render(tokenmill::ChatTemplateInputs());  // no messages, no tokens
  return 0;
}

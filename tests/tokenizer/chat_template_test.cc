// Conformance of ChatTemplate with Python jinja2 on real model templates: every llama.cpp
// golden and every entry of rendered_here.json in testdata/chat_templates must render byte
// for byte (see testdata/PROVENANCE.md for how they were produced).
#include "tokenmill/tokenizer/chat_template.h"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

using ::tokenmill::testing::ReadFileOrDie;
using ::tokenmill::testing::TestdataPath;

constexpr char kTemplatesDir[] = "chat_templates";

// llama.cpp golden names -> the template files extracted from the same Hub repos.
const std::map<std::string, std::string>& GoldenTemplates() {
  static const auto* names = new std::map<std::string, std::string>{
      {"Qwen-Qwen2-7B-Instruct", "qwen2-7b-instruct.jinja"},
      {"Qwen-Qwen2.5-7B-Instruct", "qwen2.5-instruct.jinja"},
      {"google-gemma-2-2b-it", "gemma-2-2b-it.jinja"},
      {"meta-llama-Llama-3.2-3B-Instruct", "llama-3.2-3b-instruct.jinja"},
      {"meta-llama-Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b-instruct.jinja"},
      {"microsoft-Phi-3-mini-4k-instruct", "phi-3-mini-4k-instruct.jinja"},
      {"microsoft-Phi-3.5-mini-instruct", "phi-3.5-mini-instruct.jinja"},
      {"mistralai-Mistral-7B-Instruct-v0.2", "mistral-7b-instruct-v0.2.jinja"},
  };
  return *names;
}

ChatTemplate ParseOrDie(const std::string& file) {
  const std::string source = ReadFileOrDie(TestdataPath(std::string(kTemplatesDir) + "/" + file));
  absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse(source);
  EXPECT_TRUE(tmpl.ok()) << file << ": " << tmpl.status();
  return tmpl.ok() ? *std::move(tmpl) : *ChatTemplate::Parse("");
}

// As llama.cpp's update_jinja_goldens.py: templates that print tool-call arguments with
// `| items` or `| tojson` get them as objects rather than JSON strings.
void ParseToolCallArguments(const std::string& source, nlohmann::ordered_json* context) {
  if (source.find("tool_call.arguments | items") == std::string::npos &&
      source.find("tool_call.arguments | tojson") == std::string::npos) {
    return;
  }
  for (auto& message : (*context)["messages"]) {
    if (!message.contains("tool_calls")) continue;
    for (auto& call : message["tool_calls"]) {
      if (call.value("type", "") != "function") continue;
      auto& arguments = call["function"]["arguments"];
      arguments = nlohmann::ordered_json::parse(arguments.get<std::string>());
    }
  }
}

TEST(ChatTemplateConformanceTest, LlamaCppGoldensRenderByteForByte) {
  TM_REQUIRE_TESTDATA("chat_templates/goldens-llama.cpp/goldens");
  const std::filesystem::path goldens = TestdataPath("chat_templates/goldens-llama.cpp/goldens");
  const std::filesystem::path contexts = TestdataPath("chat_templates/goldens-llama.cpp/contexts");
  int num_checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(goldens)) {
    const std::string stem = entry.path().stem().string();  // <model>-<context>
    const size_t dash = stem.rfind('-');
    ASSERT_NE(dash, std::string::npos) << stem;
    const std::string model = stem.substr(0, dash);
    const std::string context_name = stem.substr(dash + 1);
    const auto it = GoldenTemplates().find(model);
    ASSERT_NE(it, GoldenTemplates().end()) << "golden without a template mapping: " << stem;
    SCOPED_TRACE(stem);

    const ChatTemplate tmpl = ParseOrDie(it->second);
    auto context = nlohmann::ordered_json::parse(
        ReadFileOrDie((contexts / (context_name + ".json")).string()));
    ParseToolCallArguments(tmpl.source(), &context);
    absl::StatusOr<ChatTemplateInputs> inputs = ChatTemplateInputsFromJson(context);
    ASSERT_TRUE(inputs.ok()) << inputs.status();
    inputs->now = absl::CivilSecond(2024, 7, 26, 0, 0, 0);
    absl::StatusOr<std::string> rendered = tmpl.Render(*inputs);
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(*rendered, ReadFileOrDie(entry.path().string()));
    ++num_checked;
  }
  EXPECT_EQ(num_checked, 18);  // the goldens listed in PROVENANCE.md
}

TEST(ChatTemplateConformanceTest, RenderedHereMatchesPythonJinja) {
  TM_REQUIRE_TESTDATA("chat_templates/rendered_here.json");
  const auto data = nlohmann::ordered_json::parse(
      ReadFileOrDie(TestdataPath("chat_templates/rendered_here.json")));
  int num_checked = 0;
  for (const auto& [name, render] : data["renders"].items()) {
    const ChatTemplate tmpl = ParseOrDie(render["template_file"].get<std::string>());
    for (const auto& [context_name, expected] : render["outputs"].items()) {
      SCOPED_TRACE(name + " / " + context_name);
      absl::StatusOr<ChatTemplateInputs> inputs =
          ChatTemplateInputsFromJson(data["contexts"][context_name]);
      ASSERT_TRUE(inputs.ok()) << inputs.status();
      if (render["bos_token"].is_string()) inputs->bos_token = render["bos_token"];
      if (render["eos_token"].is_string()) inputs->eos_token = render["eos_token"];
      inputs->now = absl::CivilSecond(2024, 7, 26, 0, 0, 0);
      absl::StatusOr<std::string> rendered = tmpl.Render(*inputs);
      if (expected.contains("error")) {
        // Recorded as "<Python exception type>: <message>"; raise_exception's message
        // comes through verbatim.
        const std::string error = expected["error"];
        ASSERT_FALSE(rendered.ok()) << *rendered;
        EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
        EXPECT_EQ(std::string(rendered.status().message()), error.substr(error.find(": ") + 2));
      } else {
        ASSERT_TRUE(rendered.ok()) << rendered.status();
        EXPECT_EQ(*rendered, expected["text"].get<std::string>());
      }
      ++num_checked;
    }
  }
  EXPECT_EQ(num_checked, 39);  // 13 templates x 3 contexts
}

TEST(ChatTemplateConformanceTest, EveryTestdataTemplateParses) {
  TM_REQUIRE_TESTDATA("chat_templates");
  int num_templates = 0;
  for (const auto& entry : std::filesystem::directory_iterator(TestdataPath(kTemplatesDir))) {
    if (entry.path().extension() != ".jinja") continue;
    EXPECT_TRUE(ChatTemplate::Parse(ReadFileOrDie(entry.path().string())).ok()) << entry.path();
    ++num_templates;
  }
  EXPECT_EQ(num_templates, 13);
}

TEST(ChatTemplateLoaderTest, ReadsTemplateAndTokensFromTokenizerConfig) {
  TM_REQUIRE_TESTDATA("tokenizers/qwen2.5-0.5b-instruct/tokenizer_config.json");
  absl::StatusOr<ChatTemplateSource> loaded =
      LoadChatTemplateSource(TestdataPath("tokenizers/qwen2.5-0.5b-instruct"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->source, ReadFileOrDie(TestdataPath("chat_templates/qwen2.5-instruct.jinja")));
  EXPECT_EQ(loaded->bos_token, std::nullopt);  // Qwen has no BOS token
  EXPECT_EQ(loaded->eos_token, "<|im_end|>");
  EXPECT_THAT(loaded->origin, ::testing::EndsWith("tokenizer_config.json"));
}

TEST(ChatTemplateLoaderTest, TokenObjectsAndTemplateFromConfigFile) {
  TM_REQUIRE_TESTDATA("tokenizers/tinyllama-1.1b-chat-v1.0/tokenizer_config.json");
  absl::StatusOr<ChatTemplateSource> loaded = LoadChatTemplateSource(
      TestdataPath("tokenizers/tinyllama-1.1b-chat-v1.0/tokenizer_config.json"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->source,
            ReadFileOrDie(TestdataPath("chat_templates/tinyllama-1.1b-chat-v1.0.jinja")));
  EXPECT_EQ(loaded->bos_token, "<s>");
  EXPECT_EQ(loaded->eos_token, "</s>");
}

TEST(ChatTemplateLoaderTest, MissingTemplateIsNotFound) {
  TM_REQUIRE_TESTDATA("tokenizers/gpt2/tokenizer_config.json");
  EXPECT_EQ(LoadChatTemplateSource(TestdataPath("tokenizers/gpt2")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadChatTemplateSource("/nonexistent/model").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ChatTemplateInputsTest, RequestJsonSplitsKnownFieldsFromExtraContext) {
  const auto request = nlohmann::ordered_json::parse(R"({
    "messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true,
    "tools": [{"type": "function"}], "date_string": "1 Jan 2025", "bos_token": "<s>"})");
  absl::StatusOr<ChatTemplateInputs> inputs = ChatTemplateInputsFromJson(request);
  ASSERT_TRUE(inputs.ok()) << inputs.status();
  EXPECT_TRUE(inputs->add_generation_prompt);
  EXPECT_EQ(inputs->messages.size(), 1u);
  EXPECT_EQ(inputs->tools.size(), 1u);
  EXPECT_EQ(inputs->bos_token, "<s>");
  EXPECT_EQ(inputs->extra_context.dump(), R"({"date_string":"1 Jan 2025"})");

  EXPECT_FALSE(ChatTemplateInputsFromJson(nlohmann::ordered_json::parse("{}")).ok());
  EXPECT_FALSE(
      ChatTemplateInputsFromJson(nlohmann::ordered_json::parse(R"({"messages": {}})")).ok());
  EXPECT_FALSE(ChatTemplateInputsFromJson(nlohmann::ordered_json::parse("[1]")).ok());
}

}  // namespace
}  // namespace tokenmill

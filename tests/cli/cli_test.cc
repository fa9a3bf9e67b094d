// The tokenmill binary as outside checks use it: flags, exit codes, and the JSON lines of
// `generate --output json` (issue interfaces), on real models.
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/subprocess.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

using json = nlohmann::json;
using testing::CommandResult;
using testing::LastLine;

CommandResult Tokenmill(std::vector<std::string> args, const std::string& stdin_text = "") {
  args.insert(args.begin(), testing::TokenmillBinary());
  return testing::RunCommand(args, stdin_text);
}

std::string Stories() { return testing::TestdataPath("models/stories260K/stories260K.gguf"); }

json Golden() {
  return json::parse(testing::ReadFileOrDie(testing::TestdataPath("golden/stories260K_greedy.json")));
}

TEST(CliTest, VersionNamesTheBackends) {
  const CommandResult r = Tokenmill({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("tokenmill "), std::string::npos);
  EXPECT_NE(r.out.find("cpu"), std::string::npos);
  EXPECT_NE(r.out.find("cuda"), std::string::npos);
}

TEST(CliTest, GreedyJsonMatchesLlamaCppGolden) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  // Named: a range-for over Golden()["cases"] iterates a reference into a temporary that
  // dies before the loop body runs (found by TSan/ASan as a heap-use-after-free).
  const json golden = Golden();
  for (const json& c : golden["cases"]) {
    const CommandResult r =
        Tokenmill({"generate", "--model", Stories(), "--prompt", c["prompt"].get<std::string>(),
                   "--temperature", "0", "--max-tokens", "64", "--output", "json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json out = json::parse(LastLine(r.out));
    EXPECT_EQ(out["prompt_ids"], c["prompt_token_ids"]);
    EXPECT_EQ(out["ids"], c["generated_token_ids"]);
    EXPECT_EQ(out["text"], c["generated_text"]);
    EXPECT_EQ(out["finish_reason"], "length");
  }
}

TEST(CliTest, RequestsFileRunsThroughOneEngineInInputOrder) {
  TM_REQUIRE_TESTDATA("golden/stories260K_greedy.json");
  const json golden = Golden();
  const std::string path = ::testing::TempDir() + "/requests.jsonl";
  {
    std::ofstream f(path);
    for (const json& c : golden["cases"]) {
      f << json({{"prompt", c["prompt"]}, {"max_tokens", 64}, {"temperature", 0}}).dump() << "\n";
    }
    f << json({{"prompt", "Lily"}, {"max_tokens", 5}, {"temperature", 0.7}, {"seed", 3}}).dump()
      << "\n";
  }
  const CommandResult r = Tokenmill({"generate", "--model", Stories(), "--requests", path,
                                     "--max-num-seqs", "4", "--max-batched-tokens", "32",
                                     "--kv-cache-blocks", "64", "--block-size", "8", "--output",
                                     "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> lines;
  size_t pos = 0;
  while (pos < r.out.size()) {
    const size_t nl = r.out.find('\n', pos);
    const std::string line = r.out.substr(pos, nl - pos);
    if (!line.empty()) lines.push_back(json::parse(line));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  ASSERT_EQ(lines.size(), golden["cases"].size() + 2);
  for (size_t i = 0; i < golden["cases"].size(); ++i) {
    EXPECT_EQ(lines[i]["ids"], golden["cases"][i]["generated_token_ids"]) << i;
    EXPECT_EQ(lines[i]["prompt_ids"], golden["cases"][i]["prompt_token_ids"]) << i;
  }
  EXPECT_EQ(lines[golden["cases"].size()]["ids"].size(), 5u);
  const json& summary = lines.back()["summary"];
  for (const char* key : {"steps", "prefill_tokens_computed", "cached_prompt_tokens",
                          "preemptions", "generated_tokens"}) {
    EXPECT_TRUE(summary.contains(key)) << key;
  }
  EXPECT_EQ(summary["generated_tokens"], 64 * golden["cases"].size() + 5);
  EXPECT_GT(summary["steps"].get<int>(), 64);
}

TEST(CliTest, StopStringEndsTheTextBeforeIt) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  const CommandResult r = Tokenmill({"generate", "--model", Stories(), "--prompt",
                                     "Once upon a time", "--temperature", "0", "--stop", "Lily",
                                     "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json out = json::parse(LastLine(r.out));
  EXPECT_EQ(out["text"], ", there was a little girl named ");
  EXPECT_EQ(out["finish_reason"], "stop");
}

TEST(CliTest, SameSeedSameOutput) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  std::vector<std::string> args = {"generate", "--model", Stories(), "--prompt", "Once",
                                   "--temperature", "1.0", "--top-p", "0.9", "--seed", "7",
                                   "--max-tokens", "40", "--output", "json"};
  const CommandResult a = Tokenmill(args), b = Tokenmill(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(json::parse(LastLine(a.out))["ids"], json::parse(LastLine(b.out))["ids"]);
}

TEST(CliTest, DemoModelSaysItsWeightsAreRandom) {
  // Sampled at the default temperature with no seed, so EOS may come early: --ignore-eos
  // keeps the length exact.
  const CommandResult r = Tokenmill({"generate", "--model", "demo", "--prompt", "Hello",
                                     "--max-tokens", "8", "--ignore-eos", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json out = json::parse(LastLine(r.out));
  EXPECT_EQ(out["random_weights"], true);
  EXPECT_EQ(out["ids"].size(), 8u);
  EXPECT_EQ(out["prompt_ids"][0], 256) << "the demo byte tokenizer adds BOS 256";
  EXPECT_NE(r.err.find("RANDOM WEIGHTS"), std::string::npos);
}

TEST(CliTest, BadInputsFailWithAClearMessage) {
  CommandResult r = Tokenmill({"generate", "--model", "/nonexistent/model.gguf", "--prompt", "x"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
  r = Tokenmill({"generate", "--model", "demo", "--prompt", "x", "--temperature", "-1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("temperature"), std::string::npos) << r.err;
  r = Tokenmill({"generate", "--model", "demo:nope", "--prompt", "x"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("demo:nope"), std::string::npos) << r.err;
  r = Tokenmill({"generate", "--model", "demo"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--prompt"), std::string::npos) << r.err;
}

TEST(CliTest, InspectPrintsArchitectureSizeAndMemory) {
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.gguf");
  const CommandResult r = Tokenmill({"inspect", Stories()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* want : {"llama", "292.8K", "F32", "KV cache", "memory"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  }
  const CommandResult demo = Tokenmill({"inspect", "demo"});
  EXPECT_NE(demo.out.find("RANDOM WEIGHTS"), std::string::npos) << demo.out;
}

TEST(CliTest, TokenizeDetokenizeAndChatTemplate) {
  TM_REQUIRE_TESTDATA("vocab/ggml-vocab-llama-spm.gguf");
  const std::string spm = testing::TestdataPath("vocab/ggml-vocab-llama-spm.gguf");
  CommandResult r = Tokenmill({"tokenize", "--model", spm, "--text", "Hello world"});
  EXPECT_EQ(LastLine(r.out), "1 15043 3186") << r.err;
  r = Tokenmill({"tokenize", "--model", spm, "--text", "Hello world", "--no-add-special"});
  EXPECT_EQ(LastLine(r.out), "15043 3186") << r.err;
  r = Tokenmill({"tokenize", "--model", spm, "--json"}, R"(["Hello world", "Hello"])");
  EXPECT_EQ(json::parse(LastLine(r.out)), json::parse("[[1,15043,3186],[1,15043]]")) << r.err;
  r = Tokenmill({"detokenize", "--model", spm, "--ids", "1 15043 3186"});
  EXPECT_EQ(LastLine(r.out), "<s> Hello world") << r.err;  // as HF decode() renders it
  r = Tokenmill({"detokenize", "--model", spm, "--ids", "1 15043 3186", "--skip-special"});
  EXPECT_EQ(LastLine(r.out), "Hello world") << r.err;
  r = Tokenmill({"detokenize", "--model", spm, "--ids", "1 99999999"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("99999999"), std::string::npos) << r.err;
  const std::string qwen = testing::TestdataPath("tokenizers/qwen2.5-0.5b-instruct");
  r = Tokenmill({"chat-template", "--model", qwen},
                R"({"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true})");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace tokenmill

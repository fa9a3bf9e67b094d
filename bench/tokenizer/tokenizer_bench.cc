// Encode and decode throughput (MB/s of UTF-8 text) on ~300 KB of mixed text
// (English prose, code, multilingual text, numbers, whitespace runs) for the tokenizer
// families users deploy, and the latency of a 32k-token prompt. Needs ../shared/testdata
// (or $TOKENMILL_TESTDATA); families whose files are absent are skipped.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "tokenmill/tokenizer/detokenizer.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill {
namespace {

std::string TestdataDir() {
  if (const char* s = std::getenv("TOKENMILL_TESTDATA"); s != nullptr && *s) return s;
  return std::string(TOKENMILL_SOURCE_DIR) + "/../shared/testdata";
}

const Tokenizer* Get(const std::string& rel) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[rel];
  if (slot == nullptr) {
    auto tok = LoadTokenizer(TestdataDir() + "/" + rel);
    if (!tok.ok()) return nullptr;
    slot = *std::move(tok);
  }
  return slot.get();
}

// Deterministic mixed text of about `bytes` bytes.
std::string MixedText(size_t bytes) {
  static const char* kPieces[] = {
      "The quick brown fox jumps over the lazy dog. ",
      "In 1969, Apollo 11 landed on the Moon; it's been 56 years since then. ",
      "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + "
      "fibonacci(n - 2)\n\n",
      "for (int i = 0; i < 1024; ++i) {\n\tsum += values[i] * 3.14159;\n}\n",
      "Les élèves ont étudié l'histoire de la Révolution française à Paris. ",
      "Привет, как дела? Сегодня хорошая погода. ",
      "人工智能正在改变世界，机器学习和深度学习是其核心技术。",
      "東京は日本の首都です。ひらがなとカタカナ。",
      "안녕하세요, 만나서 반갑습니다. ",
      "مرحبا بالعالم، هذا اختبار. ",
      "Emoji: 😀👍🏽👨‍👩‍👧 🚀✨ ",
      "    \n\n   \t  ",
      "Order #12345678 totals $1,234,567.89 (tax 8.875%). ",
      "{\"id\": 42, \"tags\": [\"a\", \"b\"], \"ok\": true}\n",
  };
  std::mt19937 rng(7);
  std::string text;
  while (text.size() < bytes) text += kPieces[rng() % std::size(kPieces)];
  return text;
}

const std::string& Corpus() {
  static const std::string text = MixedText(300 * 1024);
  return text;
}

void BM_Encode(benchmark::State& state, const char* rel) {
  const Tokenizer* tok = Get(rel);
  if (tok == nullptr) return state.SkipWithError("tokenizer files absent");
  const std::string& text = Corpus();
  size_t num_tokens = 0;
  for (auto _ : state) {
    auto ids = tok->Encode(text, {.add_special = false});
    num_tokens = ids->size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(num_tokens);
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(num_tokens * state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Decode(benchmark::State& state, const char* rel) {
  const Tokenizer* tok = Get(rel);
  if (tok == nullptr) return state.SkipWithError("tokenizer files absent");
  const std::string& text = Corpus();
  const std::vector<int32_t> ids = *tok->Encode(text, {.add_special = false});
  for (auto _ : state) {
    auto out = tok->Decode(ids);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

// Streaming: one Add per token, as the API layer does per generated token.
void BM_DecodeIncremental(benchmark::State& state, const char* rel) {
  const Tokenizer* tok = Get(rel);
  if (tok == nullptr) return state.SkipWithError("tokenizer files absent");
  const std::string& text = Corpus();
  const std::vector<int32_t> ids = *tok->Encode(text, {.add_special = false});
  for (auto _ : state) {
    IncrementalDetokenizer detok(*tok);
    std::string out;
    for (int32_t id : ids) benchmark::DoNotOptimize(detok.Add(id, &out));
    detok.Finish(&out);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

// Latency of encoding a prompt of about 32k tokens.
void BM_Encode32kPrompt(benchmark::State& state, const char* rel) {
  const Tokenizer* tok = Get(rel);
  if (tok == nullptr) return state.SkipWithError("tokenizer files absent");
  std::string prompt = Corpus();
  auto ids = tok->Encode(prompt, {.add_special = false});
  prompt.resize(static_cast<size_t>(prompt.size() * 32768.0 / static_cast<double>(ids->size())));
  size_t num_tokens = 0;
  for (auto _ : state) {
    auto out = tok->Encode(prompt, {});
    num_tokens = out->size();
    benchmark::DoNotOptimize(out);
  }
  state.counters["tokens"] = static_cast<double>(num_tokens);
}

// Load time (parse + build every table), what a server pays at startup.
void BM_Load(benchmark::State& state, const char* rel) {
  for (auto _ : state) {
    auto tok = LoadTokenizer(TestdataDir() + "/" + rel);
    if (!tok.ok()) return state.SkipWithError("tokenizer files absent");
    benchmark::DoNotOptimize(tok);
  }
}

#define TM_TOKENIZER_BENCH(name, rel)                                                \
  BENCHMARK_CAPTURE(BM_Encode, name, rel)->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(BM_Decode, name, rel)->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(BM_DecodeIncremental, name, rel)->Unit(benchmark::kMillisecond); \
  BENCHMARK_CAPTURE(BM_Encode32kPrompt, name, rel)->Unit(benchmark::kMillisecond);   \
  BENCHMARK_CAPTURE(BM_Load, name, rel)->Unit(benchmark::kMillisecond)

TM_TOKENIZER_BENCH(llama3_tiktoken, "tokenizers/llama-3");
TM_TOKENIZER_BENCH(llama2_hf_json, "tokenizers/llama-2");
TM_TOKENIZER_BENCH(llama2_gguf_spm, "vocab/ggml-vocab-llama-spm.gguf");
TM_TOKENIZER_BENCH(qwen25, "tokenizers/qwen2.5-0.5b-instruct");
TM_TOKENIZER_BENCH(gpt2, "tokenizers/gpt2/tokenizer.json");

}  // namespace
}  // namespace tokenmill

BENCHMARK_MAIN();

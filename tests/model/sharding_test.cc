// Load-time sharding: the shards of every dtype reassemble to the whole model byte for
// byte, column-parallel shards are views, KV heads divide or replicate as the heads that
// read them require, vocab splits of any size cover the vocabulary once, and shapes that
// cannot split are clear errors.
#include "tokenmill/model/sharding.h"

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/testing/model_writers.h"
#include "model/testing/temp_dir.h"
#include "tokenmill/model/loader.h"

namespace tokenmill {
namespace {

using testing::MakeTinyModel;
using testing::ScopedTempDir;
using testing::TinyModelOptions;

std::string Bytes(const TensorView& t) {
  return std::string(static_cast<const char*>(t.data), t.NumBytes());
}

// Row `r` of a matrix, as bytes.
std::string RowBytes(const TensorView& t, int64_t r) {
  const size_t row = DTypeBytes(t.dtype, t.shape[1]);
  return std::string(static_cast<const char*>(t.data) + r * row, row);
}

std::unique_ptr<LoadedModel> LoadTiny(const TinyModelOptions& o, const ScopedTempDir& dir) {
  const std::string path = dir.File("tiny.gguf");
  EXPECT_TRUE(WriteGgufModel(MakeTinyModel(o), path).ok());
  auto m = LoadModel(path);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

TinyModelOptions ShardableOptions(const std::string& dtype) {
  TinyModelOptions o;
  o.vocab_size = 67;  // divisible by neither 2 nor 4
  o.hidden_size = 128;
  o.intermediate_size = 128;
  o.num_heads = 4;
  o.num_kv_heads = 2;
  o.attention_bias = true;
  o.dtype = dtype;
  return o;
}

std::vector<std::unique_ptr<LoadedModel>> Shards(const LoadedModel& m, int n) {
  std::vector<std::unique_ptr<LoadedModel>> out;
  for (int r = 0; r < n; ++r) {
    auto s = ShardModel(m, r, n);
    EXPECT_TRUE(s.ok()) << s.status();
    out.push_back(std::move(s).value());
  }
  return out;
}

TEST(ShardingTest, ShardsReassembleToTheWholeModelForEveryDtype) {
  for (const char* dtype : {"F32", "F16", "BF16", "Q8_0"}) {
    ScopedTempDir dir;
    const auto whole = LoadTiny(ShardableOptions(dtype), dir);
    for (int n : {1, 2, 4}) {
      SCOPED_TRACE(::testing::Message() << dtype << " tp=" << n);
      const auto shards = Shards(*whole, n);
      std::string lm_head;
      for (const auto& s : shards) lm_head += Bytes(s->weights.lm_head);
      EXPECT_EQ(lm_head, Bytes(whole->weights.lm_head));
      for (size_t l = 0; l < whole->weights.layers.size(); ++l) {
        const LayerWeights& w = whole->weights.layers[l];
        std::string q, bq, gate, up;
        for (const auto& s : shards) {
          const LayerWeights& sw = s->weights.layers[l];
          q += Bytes(sw.wq);
          bq += Bytes(sw.bq);
          gate += Bytes(sw.w_gate);
          up += Bytes(sw.w_up);
          EXPECT_EQ(sw.attn_norm.data, w.attn_norm.data);  // replicated views
        }
        EXPECT_EQ(q, Bytes(w.wq));
        EXPECT_EQ(bq, Bytes(w.bq));
        EXPECT_EQ(gate, Bytes(w.w_gate));
        EXPECT_EQ(up, Bytes(w.w_up));
        // Row-parallel: row r of the whole matrix is row r of every shard, side by side.
        for (const TensorView LayerWeights::*m : {&LayerWeights::wo, &LayerWeights::w_down}) {
          for (int64_t r = 0; r < (w.*m).shape[0]; ++r) {
            std::string row;
            for (const auto& s : shards) row += RowBytes(s->weights.layers[l].*m, r);
            ASSERT_EQ(row, RowBytes(w.*m, r)) << "row " << r;
          }
        }
      }
    }
  }
}

TEST(ShardingTest, ColumnParallelShardsAreViewsAndTheConfigIsTheRanks) {
  ScopedTempDir dir;
  const auto whole = LoadTiny(ShardableOptions("F16"), dir);
  const auto shards = Shards(*whole, 2);
  const LayerWeights& w = whole->weights.layers[1];
  const LayerWeights& s1 = shards[1]->weights.layers[1];
  EXPECT_EQ(static_cast<const uint8_t*>(s1.wq.data),
            static_cast<const uint8_t*>(w.wq.data) + w.wq.NumBytes() / 2);
  EXPECT_EQ(s1.wo.shape, (Shape{128, 64}));
  EXPECT_EQ(shards[1]->weights.tok_embd.data, whole->weights.tok_embd.data);
  const ModelConfig& c = shards[1]->config;
  EXPECT_EQ(c.num_heads, 2);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.vocab_size, 67);
  EXPECT_EQ(c.tp_rank, 1);
  EXPECT_EQ(c.tp_size, 2);
  EXPECT_EQ(c.tp_vocab_start, 34);
  EXPECT_EQ(c.tp_vocab_size, 33);
  EXPECT_EQ(ShardModel(*shards[0], 0, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardModel(*whole, 2, 2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ShardingTest, KvHeadsAreReplicatedWhenRanksOutnumberThem) {
  TinyModelOptions o = ShardableOptions("F32");
  o.num_heads = 8;  // head_dim 16
  o.num_kv_heads = 2;
  ScopedTempDir dir;
  const auto whole = LoadTiny(o, dir);
  const auto shards = Shards(*whole, 4);
  const LayerWeights& w = whole->weights.layers[0];
  for (int r = 0; r < 4; ++r) {
    const LayerWeights& s = shards[r]->weights.layers[0];
    EXPECT_EQ(shards[r]->config.num_kv_heads, 1);
    EXPECT_EQ(shards[r]->config.num_heads, 2);
    // Query heads 2r, 2r+1 read KV head (2r) / 4 = r / 2.
    const int kv = r / 2;
    for (const TensorView LayerWeights::*m : {&LayerWeights::wk, &LayerWeights::wv}) {
      ASSERT_EQ((s.*m).shape[0], 16);
      for (int64_t row = 0; row < 16; ++row) {
        EXPECT_EQ(RowBytes(s.*m, row), RowBytes(w.*m, kv * 16 + row)) << "rank " << r;
      }
    }
  }
}

TEST(ShardingTest, KvHeadRangesServeTheQueryHeadsOfEachRank) {
  for (auto [heads, kv_heads] : {std::pair{32, 8}, {8, 8}, {8, 1}, {12, 4}, {16, 2}}) {
    ModelConfig c;
    c.num_heads = heads;
    c.num_kv_heads = kv_heads;
    for (int n = 1; n <= heads; ++n) {
      if (heads % n != 0 || (kv_heads % n != 0 && n % kv_heads != 0)) continue;
      const int local = heads / n;
      for (int r = 0; r < n; ++r) {
        const HeadRange kv = KvHeadShard(c, r, n);
        ASSERT_GE(kv.size, 1);
        ASSERT_EQ(local % kv.size, 0);
        for (int i = 0; i < local; ++i) {
          // The backend maps local query head i to local KV head i / (local / kv.size).
          const int global_q = r * local + i;
          EXPECT_EQ(kv.start + i / (local / kv.size), global_q / (heads / kv_heads))
              << heads << "/" << kv_heads << " tp " << n << " rank " << r << " head " << i;
        }
      }
    }
  }
}

TEST(ShardingTest, VocabShardsCoverTheVocabularyOnce) {
  for (int vocab : {1, 7, 64, 67, 32000, 151936}) {
    for (int n = 1; n <= std::min(vocab, 9); ++n) {
      int next = 0, largest = 0;
      for (int r = 0; r < n; ++r) {
        const VocabRange v = VocabShard(vocab, r, n);
        EXPECT_EQ(v.start, next);
        EXPECT_GE(v.size, vocab / n);
        EXPECT_LE(v.size, vocab / n + 1);
        next += v.size;
        largest = std::max(largest, v.size);
      }
      EXPECT_EQ(next, vocab);
      EXPECT_EQ(largest, MaxVocabShardSize(vocab, n));
    }
  }
}

TEST(ShardingTest, ShapesThatCannotSplitAreClearErrors) {
  ModelConfig c;
  c.name = "m";
  c.num_heads = 12;
  c.num_kv_heads = 4;
  c.intermediate_size = 96;
  c.vocab_size = 100;
  EXPECT_TRUE(CheckShardable(c, 4).ok());
  const absl::Status heads = CheckShardable(c, 8);
  EXPECT_EQ(heads.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(heads.message().find("num_attention_heads 12"), std::string::npos) << heads;
  EXPECT_NE(heads.message().find("fit: 1, 2, 4, 12"), std::string::npos) << heads;
  c.intermediate_size = 100;
  EXPECT_NE(CheckShardable(c, 3).message().find("intermediate_size 100"), std::string::npos);
  c.intermediate_size = 96;
  EXPECT_NE(CheckShardable(c, 6).message().find("num_key_value_heads 4"), std::string::npos);
  EXPECT_FALSE(CheckShardable(c, 0).ok());
}

TEST(ShardingTest, Q8_0SplitsMustFallOnBlockBounds) {
  TinyModelOptions o = ShardableOptions("Q8_0");
  o.num_heads = 8;  // o_proj has 128 input columns: 16 per rank at tp 8
  o.num_kv_heads = 8;
  ScopedTempDir dir;
  const auto whole = LoadTiny(o, dir);
  EXPECT_TRUE(CheckShardable(*whole, 4).ok());
  const absl::Status s = ShardModel(*whole, 0, 8).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("o_proj is Q8_0"), std::string::npos) << s;
  EXPECT_NE(s.message().find("32-element"), std::string::npos) << s;
}

TEST(ShardingTest, TiedEmbeddingsShardTheLmHeadAsViewsOfTheEmbedding) {
  TinyModelOptions o = ShardableOptions("BF16");
  o.tie_word_embeddings = true;
  ScopedTempDir dir;
  const auto whole = LoadTiny(o, dir);
  ASSERT_EQ(whole->weights.lm_head.data, whole->weights.tok_embd.data);
  const auto shards = Shards(*whole, 2);
  const size_t row = DTypeBytes(DType::kBF16, 128);
  EXPECT_EQ(static_cast<const uint8_t*>(shards[1]->weights.lm_head.data),
            static_cast<const uint8_t*>(whole->weights.tok_embd.data) + 34 * row);
  EXPECT_EQ(shards[1]->weights.lm_head.shape, (Shape{33, 128}));
}

}  // namespace
}  // namespace tokenmill

#include "tokenmill/core/gguf.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/gguf_writer.h"
#include "model/testing/temp_dir.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

using ::testing::HasSubstr;
using ::tokenmill::testing::ByteWriter;
using ::tokenmill::testing::GgufValueType;
using ::tokenmill::testing::GgufWriter;
using ::tokenmill::testing::ScopedTempDir;
using ::tokenmill::testing::TestdataPath;
using ::tokenmill::testing::WriteBytes;

constexpr char kStories[] = "models/stories260K/stories260K.gguf";
constexpr char kTinyRandom[] = "models/llama-2-tiny-random/llama-2-tiny-random.gguf";

std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

absl::StatusOr<std::unique_ptr<GgufFile>> OpenBytes(const ScopedTempDir& dir,
                                                    const std::string& bytes,
                                                    const std::string& name = "x.gguf") {
  const std::string path = dir.File(name);
  EXPECT_TRUE(WriteBytes(path, bytes).ok());
  return GgufFile::Open(path);
}

TEST(GgufTest, OpensEveryTestdataFile) {
  TM_REQUIRE_TESTDATA("vocab");
  int num_files = 0;
  for (const char* sub : {"models", "vocab"}) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(TestdataPath(sub))) {
      if (e.path().extension() != ".gguf") continue;
      ++num_files;
      auto f = GgufFile::Open(e.path().string());
      ASSERT_TRUE(f.ok()) << f.status();
      EXPECT_EQ((*f)->version(), 3u) << e.path();
      EXPECT_TRUE((*f)->GetString("general.architecture").ok()) << e.path();
      auto tokens = (*f)->GetStringArray("tokenizer.ggml.tokens");
      ASSERT_TRUE(tokens.ok()) << tokens.status();
      EXPECT_GT(tokens->size(), 500u);
      for (const GgufTensorInfo& t : (*f)->tensors()) {
        auto view = (*f)->Tensor(t.name);
        ASSERT_TRUE(view.ok()) << view.status();
        EXPECT_EQ(view->NumBytes(), t.num_bytes) << t.name;
        EXPECT_LE(t.offset + t.num_bytes, (*f)->file()->size()) << t.name;
        EXPECT_EQ(t.offset % (*f)->alignment(), 0u) << t.name;
      }
    }
  }
  EXPECT_GE(num_files, 15);
}

TEST(GgufTest, Stories260KMetadataAndShapes) {
  TM_REQUIRE_TESTDATA(kStories);
  auto f = GgufFile::Open(TestdataPath(kStories));
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetInt("llama.embedding_length"), 64);
  EXPECT_EQ(*g.GetInt("llama.block_count"), 5);
  EXPECT_EQ(*g.GetInt("llama.attention.head_count"), 8);
  EXPECT_EQ(*g.GetInt("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(*g.GetInt("llama.feed_forward_length"), 172);
  EXPECT_EQ(*g.GetInt("llama.context_length"), 2048);
  EXPECT_NEAR(*g.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.bos_token_id"), 1);
  // Stored as uint32 0xffffffff: an integer getter must not sign-wrap it.
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.padding_token_id"), 4294967295);
  auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[0], "<unk>");
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ(g.GetFloatArray("tokenizer.ggml.scores")->size(), 512u);
  EXPECT_EQ(g.GetIntArray("tokenizer.ggml.token_type")->size(), 512u);
  EXPECT_EQ(g.tensors().size(), 3u + 5 * 9);
  const GgufTensorInfo* k = g.FindTensor("blk.0.attn_k.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (Shape{32, 64}));  // [kv_heads * head_dim, hidden]
  EXPECT_EQ(k->dtype, DType::kF32);
  EXPECT_EQ(g.FindTensor("blk.4.ffn_down.weight")->shape, (Shape{64, 172}));
  EXPECT_EQ(g.FindTensor("output_norm.weight")->shape, (Shape{64}));
  EXPECT_EQ(g.FindTensor("blk.5.attn_q.weight"), nullptr);
}

// The llama2.c checkpoint next to the GGUF holds the same embedding table, written by a
// different tool: the bytes at our computed offset must equal it.
TEST(GgufTest, Stories260KEmbeddingsMatchTheLlama2cCheckpoint) {
  TM_REQUIRE_TESTDATA(kStories);
  TM_REQUIRE_TESTDATA("models/stories260K/stories260K.bin");
  auto f = GgufFile::Open(TestdataPath(kStories));
  ASSERT_TRUE(f.ok()) << f.status();
  auto embd = (*f)->Tensor("token_embd.weight");
  ASSERT_TRUE(embd.ok()) << embd.status();
  const std::string bin =
      ::tokenmill::testing::ReadFileOrDie(TestdataPath("models/stories260K/stories260K.bin"));
  const size_t header = 7 * 4;
  ASSERT_GE(bin.size(), header + embd->NumBytes());
  EXPECT_EQ(std::memcmp(bin.data() + header, embd->data, embd->NumBytes()), 0);
  EXPECT_NE(embd->As<float>()[0], 0.0f);
}

TEST(GgufTest, TinyRandomHasF16Matrices) {
  TM_REQUIRE_TESTDATA(kTinyRandom);
  auto f = GgufFile::Open(TestdataPath(kTinyRandom));
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufTensorInfo* embd = (*f)->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dtype, DType::kF16);
  EXPECT_EQ(embd->shape, (Shape{32000, 8}));
  EXPECT_EQ((*f)->FindTensor("blk.0.attn_norm.weight")->dtype, DType::kF32);
  EXPECT_NE((*f)->FindTensor("output.weight"), nullptr);
  EXPECT_EQ(*(*f)->GetInt("llama.rope.dimension_count"), 4);
}

// Every prefix of a real file either fails cleanly or, for the full length, succeeds.
TEST(GgufTest, EveryTruncationIsAnError) {
  TM_REQUIRE_TESTDATA(kStories);
  const std::string full = ::tokenmill::testing::ReadFileOrDie(TestdataPath(kStories));
  auto whole = GgufFile::Open(TestdataPath(kStories));
  ASSERT_TRUE(whole.ok());
  uint64_t data_end = 0;
  for (const GgufTensorInfo& t : (*whole)->tensors()) {
    data_end = std::max<uint64_t>(data_end, t.offset + t.num_bytes);
  }
  ScopedTempDir dir;
  const std::string path = dir.File("prefix.gguf");
  std::vector<size_t> lengths;
  for (size_t n = 0; n < 4096; ++n) lengths.push_back(n);
  for (size_t n = 4096; n < (*whole)->data_offset() + 64; n += 37) lengths.push_back(n);
  for (size_t n = (*whole)->data_offset() + 64; n < full.size(); n += 16411) lengths.push_back(n);
  lengths.push_back(data_end - 1);
  for (size_t n : lengths) {
    ASSERT_TRUE(WriteBytes(path, full.substr(0, n)).ok());
    auto f = GgufFile::Open(path);
    if (n < data_end) {
      ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes opened";
      EXPECT_THAT(f.status().message(), HasSubstr(path)) << n;
    }
  }
}

TEST(GgufTest, RejectsBadMagicAndVersions) {
  ScopedTempDir dir;
  auto bad = OpenBytes(dir, std::string("GGML\x03\0\0\0", 8) + std::string(16, '\0'));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("not a GGUF file"));
  EXPECT_THAT(bad.status().message(), HasSubstr(dir.File("x.gguf")));

  auto v1 = OpenBytes(dir, GgufWriter(1).Serialize());
  ASSERT_FALSE(v1.ok());
  EXPECT_THAT(v1.status().message(), HasSubstr("version 1 is not supported"));

  auto v4 = OpenBytes(dir, GgufWriter(4).Serialize());
  ASSERT_FALSE(v4.ok());
  EXPECT_THAT(v4.status().message(), HasSubstr("unsupported GGUF version 4"));

  auto big_endian = OpenBytes(dir, GgufWriter(0x03000000).Serialize());
  ASSERT_FALSE(big_endian.ok());
  EXPECT_THAT(big_endian.status().message(), HasSubstr("big-endian"));

  EXPECT_FALSE(OpenBytes(dir, "").ok());
  EXPECT_FALSE(GgufFile::Open(dir.File("missing.gguf")).ok());
  EXPECT_FALSE(GgufFile::Open(dir.path()).ok());  // a directory
}

TEST(GgufTest, ReadsVersion2AndEveryMetadataType) {
  for (uint32_t version : {2u, 3u}) {
    GgufWriter w(version);
    w.AddU8("u8", 200);
    w.AddI8("i8", -100);
    w.AddU16("u16", 60000);
    w.AddI16("i16", -30000);
    w.AddU32("u32", 4000000000u);
    w.AddI32("i32", -2000000000);
    w.AddU64("u64", uint64_t{1} << 63);
    w.AddI64("i64", -(int64_t{1} << 62));
    w.AddF32("f32", 0.25f);
    w.AddF64("f64", 1e-300);
    w.AddBool("yes", true);
    w.AddString("s", std::string("caf\xc3\xa9\0z", 7));
    w.AddStringArray("strs", {"a", "", "ccc"});
    w.AddI32Array("ints", {1, -2, 3});
    w.AddF32Array("floats", {0.5f, -1.5f});
    ScopedTempDir dir;
    auto f = OpenBytes(dir, w.Serialize());
    ASSERT_TRUE(f.ok()) << f.status();
    const GgufFile& g = **f;
    EXPECT_EQ(g.version(), version);
    EXPECT_EQ(*g.GetInt("u8"), 200);
    EXPECT_EQ(*g.GetInt("i8"), -100);
    EXPECT_EQ(*g.GetInt("u16"), 60000);
    EXPECT_EQ(*g.GetInt("i16"), -30000);
    EXPECT_EQ(*g.GetInt("u32"), 4000000000);
    EXPECT_EQ(*g.GetInt("i32"), -2000000000);
    EXPECT_FALSE(g.GetInt("u64").ok());  // 2^63 does not fit an int64
    EXPECT_EQ(std::get<uint64_t>(g.metadata().at("u64")), uint64_t{1} << 63);
    EXPECT_EQ(*g.GetInt("i64"), -(int64_t{1} << 62));
    EXPECT_EQ(*g.GetFloat("f32"), 0.25);
    EXPECT_EQ(*g.GetFloat("f64"), 1e-300);
    EXPECT_EQ(*g.GetFloat("u8"), 200.0);  // ints are numbers too
    EXPECT_TRUE(*g.GetBool("yes"));
    EXPECT_EQ(*g.GetString("s"), std::string("caf\xc3\xa9\0z", 7));
    EXPECT_EQ(*g.GetStringArray("strs"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(*g.GetIntArray("ints"), (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(*g.GetFloatArray("floats"), (std::vector<double>{0.5, -1.5}));
    EXPECT_EQ(*g.GetFloatArray("ints"), (std::vector<double>{1, -2, 3}));
    EXPECT_EQ(g.alignment(), 32u);
    EXPECT_TRUE(g.tensors().empty());
  }
}

TEST(GgufTest, TypeMismatchAndMissingKeysNameTheKey) {
  GgufWriter w;
  w.AddString("name", "x");
  w.AddF32("eps", 1e-5f);
  ScopedTempDir dir;
  auto f = OpenBytes(dir, w.Serialize());
  ASSERT_TRUE(f.ok()) << f.status();
  auto s = (*f)->GetInt("name");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("'name' is a string, expected an integer"));
  EXPECT_FALSE((*f)->GetInt("eps").ok());  // floats are not silently truncated
  EXPECT_FALSE((*f)->GetStringArray("name").ok());
  EXPECT_FALSE((*f)->GetBool("name").ok());
  auto missing = (*f)->GetString("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("'nope'"));
  EXPECT_FALSE((*f)->Has("nope"));
}

TEST(GgufTest, TensorsHonourAlignmentAndTypes) {
  GgufWriter w;
  w.AddU32("general.alignment", 64);
  w.AddTensor("a", ggml_type::kF32, {2, 3}, F32Bytes({1, 2, 3, 4, 5, 6}));
  w.AddTensor("q", ggml_type::kQ4_K, {1, 256}, std::string(144, '\x11'));
  w.AddTensor("b", ggml_type::kBF16, {4}, std::string(8, '\0'));
  w.AddTensor("q8", ggml_type::kQ8_0, {2, 32}, std::string(68, '\x01'));
  ScopedTempDir dir;
  auto f = OpenBytes(dir, w.Serialize());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->data_offset() % 64, 0u);
  auto a = (*f)->Tensor("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->shape, (Shape{2, 3}));
  EXPECT_EQ(a->As<float>()[5], 6.0f);
  EXPECT_EQ((*f)->FindTensor("b")->offset % 64, 0u);
  EXPECT_EQ((*f)->Tensor("q8")->dtype, DType::kQ8_0);
  EXPECT_EQ((*f)->Tensor("q8")->NumBytes(), 68u);

  const GgufTensorInfo* q = (*f)->FindTensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(q->supported);
  EXPECT_EQ(q->num_bytes, 144u);
  auto qv = (*f)->Tensor("q");
  EXPECT_EQ(qv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(qv.status().message(), HasSubstr(dir.File("x.gguf")));
  EXPECT_THAT(qv.status().message(), HasSubstr("tensor 'q' has unsupported type Q4_K"));
  auto missing = (*f)->Tensor("zz");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("'zz'"));
  EXPECT_EQ(GgmlTypeName(ggml_type::kQ6_K), "Q6_K");
  EXPECT_EQ(GgmlTypeName(999), "type#999");
}

// Header fields patched into an otherwise valid file.
std::string Header(uint32_t version, uint64_t num_tensors, uint64_t num_kv) {
  ByteWriter w;
  w.Raw("GGUF", 4);
  w.U32(version);
  w.U64(num_tensors);
  w.U64(num_kv);
  return w.bytes();
}

std::string TensorInfo(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                       uint64_t offset) {
  ByteWriter w;
  w.Str(name);
  w.U32(static_cast<uint32_t>(ne.size()));
  for (uint64_t n : ne) w.U64(n);
  w.U32(type);
  w.U64(offset);
  return w.bytes();
}

void ExpectOpenFails(const std::string& bytes, const std::string& needle) {
  ScopedTempDir dir;
  auto f = OpenBytes(dir, bytes);
  ASSERT_FALSE(f.ok()) << "expected failure containing: " << needle;
  EXPECT_THAT(f.status().message(), HasSubstr(needle));
  EXPECT_THAT(f.status().message(), HasSubstr(dir.File("x.gguf")));
}

TEST(GgufTest, HostileCountsAndLengthsAreErrors) {
  const uint64_t kHuge = uint64_t{1} << 60;
  ExpectOpenFails(Header(3, kHuge, 0), "claims 1152921504606846976 tensors");
  ExpectOpenFails(Header(3, 0, kHuge), "metadata entries");
  ExpectOpenFails(Header(3, 0, ~uint64_t{0}), "metadata entries");
  {  // key length far past the end
    ByteWriter w;
    w.U64(kHuge);
    ExpectOpenFails(Header(3, 0, 1) + w.bytes() + std::string(32, 'k'), "metadata key");
  }
  {  // string value length far past the end
    ByteWriter w;
    w.Str("k");
    w.U32(8);
    w.U64(kHuge);
    ExpectOpenFails(Header(3, 0, 1) + w.bytes() + std::string(32, 's'), "value of 'k'");
  }
  for (uint32_t elem : {0u, 6u, 8u, 12u}) {  // array lengths past the end, per element size
    ByteWriter w;
    w.Str("arr");
    w.U32(9);
    w.U32(elem);
    w.U64(kHuge);
    ExpectOpenFails(Header(3, 0, 1) + w.bytes() + std::string(64, '\0'), "'arr' claims");
  }
}

TEST(GgufTest, MalformedMetadataIsAnError) {
  auto kv = [](const std::string& key, uint32_t type, const std::string& value) {
    ByteWriter w;
    w.Str(key);
    w.U32(type);
    w.Raw(value.data(), value.size());
    return w.bytes();
  };
  ExpectOpenFails(Header(3, 0, 1) + kv("k", 13, std::string(8, '\0')), "unknown value type 13");
  ByteWriter nested;
  nested.U32(9);
  nested.U64(1);
  ExpectOpenFails(Header(3, 0, 1) + kv("n", 9, nested.bytes()), "nested arrays");
  ByteWriter odd;
  odd.U32(77);
  odd.U64(0);
  ExpectOpenFails(Header(3, 0, 1) + kv("o", 9, odd.bytes()), "unknown type 77");
  ByteWriter one;
  one.U32(1);
  ExpectOpenFails(Header(3, 0, 2) + kv("d", 4, one.bytes()) + kv("d", 4, one.bytes()),
                  "'d' appears twice");
  for (uint32_t alignment : {0u, 3u, 48u}) {
    ByteWriter a;
    a.U32(alignment);
    ExpectOpenFails(Header(3, 0, 1) + kv("general.alignment", 4, a.bytes()), "power of two");
  }
  ExpectOpenFails(Header(3, 0, 1) + kv("general.alignment", 8, std::string("\1\0\0\0\0\0\0\0x", 9)),
                  "general.alignment");
}

TEST(GgufTest, MalformedTensorInfosAreErrors) {
  const std::string data(256, '\0');
  auto file = [&](const std::string& info) {
    std::string bytes = Header(3, 1, 0) + info;
    while (bytes.size() % 32 != 0) bytes.push_back('\0');
    return bytes + data;
  };
  ExpectOpenFails(file(TensorInfo("t", {1, 1, 1, 1, 1}, 0, 0)), "5 dimensions");
  ExpectOpenFails(file(TensorInfo("t", {~uint64_t{0}}, 0, 0)), "dimension 0");
  ExpectOpenFails(file(TensorInfo("t", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0)), "overflows");
  ExpectOpenFails(file(TensorInfo("t", {uint64_t{1} << 61}, 0, 0)), "byte size that overflows");
  ExpectOpenFails(file(TensorInfo("t", {uint64_t{1} << 40}, 0, 0)), "outside the file");
  ExpectOpenFails(file(TensorInfo("t", {4}, 99, 0)), "unknown ggml type id 99");
  ExpectOpenFails(file(TensorInfo("t", {33}, ggml_type::kQ8_0, 0)), "not a multiple");
  ExpectOpenFails(file(TensorInfo("t", {4}, 0, 8)), "not a multiple of the alignment");
  ExpectOpenFails(file(TensorInfo("t", {4}, 0, 256)), "'t' data (16 bytes at data offset 256)");
  ExpectOpenFails(file(TensorInfo("t", {4}, 0, ~uint64_t{0} & ~uint64_t{31})), "outside");
  ExpectOpenFails(file(TensorInfo("t", {65}, 0, 0)), "outside the file");  // 4 bytes too many
  std::string two = Header(3, 2, 0) + TensorInfo("t", {4}, 0, 0) + TensorInfo("t", {4}, 0, 32);
  while (two.size() % 32 != 0) two.push_back('\0');
  ExpectOpenFails(two + data, "'t' appears twice");
}

// Random byte corruption of a small valid file: any outcome but a crash (or a sanitizer
// report) is acceptable; an error must name the file.
TEST(GgufTest, RandomCorruptionNeverCrashes) {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "b"});
  w.AddF32Array("tokenizer.ggml.scores", {0, 0, 0, -1, -2});
  w.AddU32("llama.block_count", 1);
  w.AddTensor("token_embd.weight", ggml_type::kF32, {5, 4}, std::string(80, '\x3f'));
  w.AddTensor("blk.0.attn_q.weight", ggml_type::kQ8_0, {4, 32}, std::string(4 * 34, '\x01'));
  const std::string good = w.Serialize();
  ScopedTempDir dir;
  const std::string path = dir.File("fuzz.gguf");
  std::mt19937 rng(1234);
  int num_errors = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::string bytes = good;
    const int num_flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < num_flips; ++i) {
      const size_t pos = rng() % std::min<size_t>(bytes.size(), 400);
      bytes[pos] = static_cast<char>(rng() % 3 == 0 ? 0xff : rng());
    }
    ASSERT_TRUE(WriteBytes(path, bytes).ok());
    auto f = GgufFile::Open(path);
    if (!f.ok()) {
      ++num_errors;
      EXPECT_THAT(f.status().message(), HasSubstr(path));
      continue;
    }
    for (const GgufTensorInfo& t : (*f)->tensors()) {
      auto v = (*f)->Tensor(t.name);
      if (v.ok()) {
        EXPECT_LE(t.offset + v->NumBytes(), bytes.size());
      }
    }
  }
  EXPECT_GT(num_errors, 100);
}

}  // namespace
}  // namespace tokenmill

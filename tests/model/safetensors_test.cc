#include "tokenmill/model/safetensors.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/gguf_writer.h"
#include "model/testing/safetensors_writer.h"
#include "model/testing/temp_dir.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::tokenmill::testing::SafetensorsBytes;
using ::tokenmill::testing::SafetensorsWriter;
using ::tokenmill::testing::ScopedTempDir;
using ::tokenmill::testing::TestdataPath;
using ::tokenmill::testing::WriteBytes;

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
std::vector<T> Values(const TensorView& t) {
  return std::vector<T>(t.As<T>(), t.As<T>() + t.NumElements());
}

TEST(SafetensorsTest, ReadsTheReferenceFiles) {
  TM_REQUIRE_TESTDATA("models/safetensors-tensors");
  const std::string dir = TestdataPath("models/safetensors-tensors");
  {
    auto f = SafetensorsFile::Open(dir + "/tensor-1d-int32.safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    auto t = (*f)->Tensor("embedding");
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->dtype, DType::kI32);
    EXPECT_EQ(t->shape, (Shape{3}));
    EXPECT_THAT(Values<int32_t>(*t), ElementsAre(1, 2, 3));
  }
  {
    auto f = SafetensorsFile::Open(dir + "/tensor-3d-float32.safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    auto t = (*f)->Tensor("embedding");
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->shape, (Shape{2, 2, 3}));
    EXPECT_THAT(Values<float>(*t), ElementsAre(22, 23, 24, 11, 12, 13, 2, 3, 4, 1, 2, 3));
  }
  {
    auto f = SafetensorsFile::Open(dir + "/tensor-4d-float32.safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    auto t = (*f)->Tensor("embedding");
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->shape, (Shape{2, 3, 1, 3}));
    EXPECT_EQ(Values<float>(*t)[17], 19.0f);
  }
  {  // F64 is listed with its shape, but refused on access, naming file, tensor and dtype.
    const std::string path = dir + "/tensor-2d-float64.safetensors";
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status();
    const SafetensorsTensorInfo* info = (*f)->FindTensor("embedding");
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype_name, "F64");
    EXPECT_FALSE(info->dtype.has_value());
    EXPECT_THAT(info->dims, ElementsAre(2, 3));
    EXPECT_EQ(info->num_bytes, 48u);
    auto t = (*f)->Tensor("embedding");
    ASSERT_FALSE(t.ok());
    EXPECT_THAT(t.status().message(), HasSubstr(path));
    EXPECT_THAT(t.status().message(), HasSubstr("tensor 'embedding' has unsupported dtype F64"));
  }
}

TEST(SafetensorsTest, RoundTripsEveryComputeDType) {
  SafetensorsWriter w;
  w.SetMetadata("format", "pt");
  w.AddTensor("f32", "F32", {2, 2}, Bytes<float>({1, 2, 3, 4}));
  w.AddTensor("f16", "F16", {3}, Bytes<uint16_t>({F32ToF16(1), F32ToF16(-2), F32ToF16(0.5f)}));
  w.AddTensor("bf16", "BF16", {1, 2}, Bytes<uint16_t>({F32ToBf16(3), F32ToBf16(-4)}));
  w.AddTensor("i8", "I8", {2}, Bytes<int8_t>({-7, 7}));
  w.AddTensor("empty", "F32", {0, 4}, "");
  w.AddTensor("scalar", "F32", {}, Bytes<float>({42}));
  w.AddTensor("u8", "U8", {4}, "abcd");
  ScopedTempDir dir;
  ASSERT_TRUE(w.WriteFile(dir.File("m.safetensors")).ok());
  auto f = SafetensorsFile::Open(dir.File("m.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  EXPECT_EQ((*f)->tensors().size(), 7u);
  EXPECT_THAT(Values<float>(*(*f)->Tensor("f32")), ElementsAre(1, 2, 3, 4));
  auto f16 = (*f)->Tensor("f16");
  EXPECT_EQ(f16->dtype, DType::kF16);
  EXPECT_EQ(F16ToF32(f16->As<uint16_t>()[1]), -2.0f);
  auto bf16 = (*f)->Tensor("bf16");
  EXPECT_EQ(bf16->dtype, DType::kBF16);
  EXPECT_EQ(Bf16ToF32(bf16->As<uint16_t>()[1]), -4.0f);
  EXPECT_THAT(Values<int8_t>(*(*f)->Tensor("i8")), ElementsAre(-7, 7));
  EXPECT_EQ((*f)->Tensor("empty")->NumElements(), 0);
  EXPECT_EQ((*f)->Tensor("scalar")->As<float>()[0], 42.0f);
  EXPECT_THAT((*f)->Tensor("u8").status().message(), HasSubstr("unsupported dtype U8"));
  EXPECT_EQ((*f)->Tensor("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*f)->FindTensor("__metadata__"), nullptr);
}

void ExpectOpenFails(const std::string& bytes, const std::string& needle) {
  ScopedTempDir dir;
  const std::string path = dir.File("bad.safetensors");
  ASSERT_TRUE(WriteBytes(path, bytes).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok()) << "expected an error containing: " << needle;
  EXPECT_THAT(f.status().message(), HasSubstr(needle));
  EXPECT_THAT(f.status().message(), HasSubstr(path));
}

// A header of one tensor entry: {"name": body}.
std::string OneEntry(const std::string& name, const std::string& body) {
  return absl::StrCat("{\"", name, "\":", body, "}");
}

TEST(SafetensorsTest, MalformedHeadersAreErrors) {
  const std::string data(64, '\0');
  ExpectOpenFails("", "too short");
  ExpectOpenFails(std::string("\x10\0\0\0", 4), "too short");
  ExpectOpenFails(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10), "exceeds the file size");
  ExpectOpenFails(std::string("\x02\0\0\0\0\0\0\0{", 9), "exceeds the file size");
  ExpectOpenFails(std::string("\x00\0\0\0\0\0\0\0", 8), "implausible");
  ExpectOpenFails(SafetensorsBytes("[1, 2]", data), "does not start with '{'");
  ExpectOpenFails(SafetensorsBytes("{\"a\": ", data), "not valid JSON");
  ExpectOpenFails(SafetensorsBytes(OneEntry("t", "3"), data), "'t' header entry");
  ExpectOpenFails(SafetensorsBytes(OneEntry("t", R"({"shape":[1],"data_offsets":[0,4]})"), data),
                  "'t' has no string dtype");
  ExpectOpenFails(
      SafetensorsBytes(OneEntry("t", R"({"dtype":"Q4","shape":[1],"data_offsets":[0,4]})"), data),
      "unknown dtype 'Q4'");
  ExpectOpenFails(SafetensorsBytes(OneEntry("t", R"({"dtype":"F32","data_offsets":[0,4]})"), data),
                  "no shape");
  ExpectOpenFails(
      SafetensorsBytes(OneEntry("t", R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), data),
      "invalid dimension -1");
  ExpectOpenFails(SafetensorsBytes(
                      OneEntry("t", R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"), data),
                  "invalid dimension");
  ExpectOpenFails(
      SafetensorsBytes(
          OneEntry("t", R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"),
          data),
      "overflows");
  ExpectOpenFails(
      SafetensorsBytes(OneEntry("t", R"({"dtype":"F32","shape":[1],"data_offsets":[4]})"), data),
      "no data_offsets");
  ExpectOpenFails(
      SafetensorsBytes(OneEntry("t", R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), data),
      "begin after end");
  ExpectOpenFails(SafetensorsBytes(
                      OneEntry("t", R"({"dtype":"F32","shape":[1],"data_offsets":[64,68]})"), data),
                  "'t' data_offsets [64, 68] lie past the end");
  ExpectOpenFails(
      SafetensorsBytes(OneEntry("t", R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), data),
      "'t' holds 4 bytes but F32 of shape [2] needs 8");
  ExpectOpenFails(SafetensorsBytes(R"({"a": {"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                       "b": {"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   data),
                  "'a' and 'b' overlap");
  ExpectOpenFails(SafetensorsBytes(R"({"__metadata__": [1]})", data), "__metadata__");
}

TEST(SafetensorsTest, MoreThanFourDimensionsIsAnErrorOnAccess) {
  SafetensorsWriter w;
  w.AddTensor("t", "F32", {1, 1, 1, 1, 2}, Bytes<float>({1, 2}));
  ScopedTempDir dir;
  ASSERT_TRUE(w.WriteFile(dir.File("m.safetensors")).ok());
  auto f = SafetensorsFile::Open(dir.File("m.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT((*f)->Tensor("t").status().message(), HasSubstr("'t' has 5 dimensions"));
}

TEST(SafetensorsTest, EveryTruncationIsAnError) {
  SafetensorsWriter w;
  w.AddTensor("a", "F32", {4, 4}, Bytes<float>(std::vector<float>(16, 1.0f)));
  w.AddTensor("b", "BF16", {3}, Bytes<uint16_t>({1, 2, 3}));
  const std::string full = w.Serialize();
  ScopedTempDir dir;
  const std::string path = dir.File("t.safetensors");
  for (size_t n = 0; n < full.size(); ++n) {
    ASSERT_TRUE(WriteBytes(path, full.substr(0, n)).ok());
    auto f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes opened";
    EXPECT_THAT(f.status().message(), HasSubstr(path));
  }
  ASSERT_TRUE(WriteBytes(path, full).ok());
  EXPECT_TRUE(SafetensorsFile::Open(path).ok());
}

TEST(SafetensorsTest, RandomHeaderCorruptionNeverCrashes) {
  SafetensorsWriter w;
  w.SetMetadata("format", "pt");
  w.AddTensor("model.embed_tokens.weight", "BF16", {4, 8}, std::string(64, '\1'));
  w.AddTensor("model.norm.weight", "F32", {8}, std::string(32, '\2'));
  const std::string good = w.Serialize();
  const size_t header_end = good.size() - 96;  // the data is 64 + 32 bytes
  ScopedTempDir dir;
  const std::string path = dir.File("fuzz.safetensors");
  std::mt19937 rng(99);
  const std::string alphabet = "{}[]\",:0123456789-.eE aF";
  int num_errors = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::string bytes = good;
    for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i) {
      const size_t pos = rng() % header_end;
      bytes[pos] = pos < 8 ? static_cast<char>(rng()) : alphabet[rng() % alphabet.size()];
    }
    ASSERT_TRUE(WriteBytes(path, bytes).ok());
    auto f = SafetensorsFile::Open(path);
    if (!f.ok()) {
      ++num_errors;
      EXPECT_THAT(f.status().message(), HasSubstr(path));
      continue;
    }
    for (const SafetensorsTensorInfo& t : (*f)->tensors()) {
      EXPECT_LE(t.offset + t.num_bytes, bytes.size()) << t.name;
    }
  }
  EXPECT_GT(num_errors, 100);
}

class ShardedCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SafetensorsWriter a, b;
    a.AddTensor("x", "F32", {2}, Bytes<float>({1, 2}));
    a.AddTensor("y", "F32", {1}, Bytes<float>({3}));
    b.AddTensor("z", "BF16", {2}, Bytes<uint16_t>({F32ToBf16(5), F32ToBf16(6)}));
    ASSERT_TRUE(a.WriteFile(dir_.File("model-00001-of-00002.safetensors")).ok());
    ASSERT_TRUE(b.WriteFile(dir_.File("model-00002-of-00002.safetensors")).ok());
  }
  std::string WriteIndex(const std::string& json) {
    const std::string path = dir_.File("model.safetensors.index.json");
    EXPECT_TRUE(WriteBytes(path, json).ok());
    return path;
  }
  ScopedTempDir dir_;
};

TEST_F(ShardedCheckpointTest, ResolvesTensorsAcrossShards) {
  const std::string index = WriteIndex(R"({"metadata": {"total_size": 16}, "weight_map": {
      "x": "model-00001-of-00002.safetensors", "y": "model-00001-of-00002.safetensors",
      "z": "model-00002-of-00002.safetensors"}})");
  auto c = SafetensorsCheckpoint::Open(index);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->files().size(), 2u);
  EXPECT_THAT((*c)->TensorNames(), ElementsAre("x", "y", "z"));
  const SafetensorsFile* file = nullptr;
  ASSERT_NE((*c)->FindTensor("z", &file), nullptr);
  EXPECT_THAT(file->path(), HasSubstr("model-00002-of-00002"));
  EXPECT_EQ(Bf16ToF32((*c)->Tensor("z")->As<uint16_t>()[1]), 6.0f);
  EXPECT_EQ((*c)->Tensor("y")->As<float>()[0], 3.0f);
  EXPECT_EQ((*c)->Tensor("w").status().code(), absl::StatusCode::kNotFound);
  auto single = SafetensorsCheckpoint::Open(dir_.File("model-00001-of-00002.safetensors"));
  ASSERT_TRUE(single.ok());
  EXPECT_THAT((*single)->TensorNames(), ElementsAre("x", "y"));
}

TEST_F(ShardedCheckpointTest, BrokenIndexesAreErrors) {
  auto expect_fails = [&](const std::string& json, const std::string& needle) {
    const std::string path = WriteIndex(json);
    auto c = SafetensorsCheckpoint::Open(path);
    ASSERT_FALSE(c.ok()) << needle;
    EXPECT_THAT(c.status().message(), HasSubstr(needle));
  };
  expect_fails("{", "not valid JSON");
  expect_fails(R"({"metadata": {}})", "weight_map");
  expect_fails(R"({"weight_map": {"x": 3}})", "tensor 'x'");
  expect_fails(R"({"weight_map": {"x": "../model-00001-of-00002.safetensors"}})", "tensor 'x'");
  expect_fails(R"({"weight_map": {"x": "model-00003-of-00003.safetensors"}})",
               "model-00003-of-00003.safetensors");
  expect_fails(R"({"weight_map": {"z": "model-00001-of-00002.safetensors"}})",
               "tensor 'z' is mapped to model-00001-of-00002.safetensors but that shard");
  ASSERT_TRUE(WriteBytes(dir_.File("model-00002-of-00002.safetensors"), "garbage!!").ok());
  expect_fails(R"({"weight_map": {"z": "model-00002-of-00002.safetensors"}})",
               "model-00002-of-00002.safetensors");
}

}  // namespace
}  // namespace tokenmill

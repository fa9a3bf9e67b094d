// GGUF reader on arbitrary bytes: GgufFile::Open, every metadata getter on every key,
// every tensor view (which must lie inside the file), the model config derived from the
// metadata, and the GGUF vocabulary loader (with an encode/decode round on success).
// Any input must end in a Status, never a crash, a read outside the map or a hang.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_util.h"
#include "tokenizer/loaders.h"
#include "tokenmill/core/gguf.h"
#include "tokenmill/model/gguf_config.h"

namespace tokenmill {
namespace {

// Calls every typed getter on `key`; only the type decides which succeed.
void TouchMetadata(const GgufFile& f, const std::string& key) {
  int ok = 0;
  ok += f.GetString(key).ok();
  ok += f.GetInt(key).ok();
  ok += f.GetBool(key).ok();
  ok += f.GetStringArray(key).ok();
  ok += f.GetIntArray(key).ok();
  (void)f.GetFloat(key);  // also accepts ints, so it may succeed alongside GetInt
  (void)f.GetFloatArray(key);
  TM_FUZZ_ASSERT(ok <= 1, absl::StrCat("key '", key, "' read as ", ok, " different types"));
  TM_FUZZ_ASSERT(f.Has(key), key);
}

// Every tensor: its view must lie within the mapped file, and its bytes are read.
void TouchTensors(const GgufFile& f) {
  const uint8_t* begin = f.file()->data();
  const uint8_t* end = begin + f.file()->size();
  uint64_t checksum = 0;
  for (const GgufTensorInfo& info : f.tensors()) {
    TM_FUZZ_ASSERT(f.FindTensor(info.name) != nullptr, info.name);
    TM_FUZZ_ASSERT(info.offset + info.num_bytes <= f.file()->size(),
                   absl::StrCat(info.name, " ends past the file"));
    absl::StatusOr<TensorView> view = f.Tensor(info.name);
    if (!view.ok()) continue;
    const auto* data = static_cast<const uint8_t*>(view->data);
    const size_t num_bytes = view->NumBytes();
    TM_FUZZ_ASSERT(num_bytes == 0 || (data >= begin && data + num_bytes <= end),
                   absl::StrCat(info.name, ": view outside the map"));
    for (size_t i = 0; i < num_bytes; i += 61) checksum += data[i];
  }
  (void)f.Tensor("no such tensor");
  fuzz::KeepAlive(checksum);
}

void TouchTokenizer(const std::string& path) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = tokenizer_internal::LoadGgufTokenizer(path);
  if (!tok.ok()) return;
  absl::StatusOr<std::vector<int32_t>> ids =
      (*tok)->Encode("Hello world <s> \xe4\xbd\xa0\xe5\xa5\xbd \xff", EncodeOptions{});
  if (ids.ok()) (void)(*tok)->Decode(*ids);
  for (int32_t id : {0, (*tok)->vocab_size() - 1}) {
    if (id >= 0) (void)(*tok)->Decode(std::span<const int32_t>(&id, 1));
  }
}

}  // namespace
}  // namespace tokenmill

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tokenmill::fuzz::MemFile* file = new tokenmill::fuzz::MemFile("gguf_fuzz");
  const std::string& path = file->Write(data, size);
  absl::StatusOr<std::unique_ptr<tokenmill::GgufFile>> gguf = tokenmill::GgufFile::Open(path);
  if (!gguf.ok()) return 0;
  for (const auto& [key, value] : (*gguf)->metadata()) tokenmill::TouchMetadata(**gguf, key);
  (void)(*gguf)->GetString("missing.key");
  tokenmill::TouchTensors(**gguf);
  (void)tokenmill::ConfigFromGguf(**gguf);
  tokenmill::TouchTokenizer(path);
  return 0;
}

// Safetensors reader on arbitrary bytes: SafetensorsFile::Open (the 8-byte header length,
// the JSON header, dtypes, shapes and data offsets), then every tensor view, which must lie
// inside the file and hold exactly its shape's bytes. Any input must end in a Status.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_util.h"
#include "tokenmill/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tokenmill::fuzz::MemFile* file = new tokenmill::fuzz::MemFile("safetensors_fuzz");
  absl::StatusOr<std::unique_ptr<tokenmill::SafetensorsFile>> st =
      tokenmill::SafetensorsFile::Open(file->Write(data, size));
  if (!st.ok()) return 0;
  const uint8_t* begin = (*st)->file()->data();
  const uint8_t* end = begin + (*st)->file()->size();
  uint64_t previous_end = 0;
  uint64_t checksum = 0;
  for (const tokenmill::SafetensorsTensorInfo& info : (*st)->tensors()) {
    TM_FUZZ_ASSERT((*st)->FindTensor(info.name) == &info, info.name);
    TM_FUZZ_ASSERT(info.offset >= previous_end, absl::StrCat(info.name, " overlaps"));
    TM_FUZZ_ASSERT(info.offset + info.num_bytes <= size, absl::StrCat(info.name, " past the end"));
    previous_end = info.offset + info.num_bytes;
    absl::StatusOr<tokenmill::TensorView> view = (*st)->Tensor(info.name);
    if (!view.ok()) continue;
    const auto* p = static_cast<const uint8_t*>(view->data);
    TM_FUZZ_ASSERT(view->NumBytes() == info.num_bytes, info.name);
    TM_FUZZ_ASSERT(info.num_bytes == 0 || (p >= begin && p + info.num_bytes <= end),
                   absl::StrCat(info.name, ": view outside the map"));
    for (size_t i = 0; i < info.num_bytes; i += 61) checksum += p[i];
  }
  for (const auto& [key, value] : (*st)->metadata()) checksum += key.size() + value.size();
  (void)(*st)->Tensor("no such tensor");
  tokenmill::fuzz::KeepAlive(checksum);
  return 0;
}

#include "tokenmill/model/loader.h"

#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "model/weight_binder.h"
#include "spdlog/spdlog.h"
#include "tokenmill/core/gguf.h"
#include "tokenmill/core/status.h"
#include "tokenmill/model/demo_model.h"
#include "tokenmill/model/gguf_config.h"
#include "tokenmill/model/hf_config.h"
#include "tokenmill/model/safetensors.h"

namespace tokenmill {
namespace {

namespace fs = std::filesystem;
using model_internal::SourceTensor;

bool HasGgufMagic(const std::string& path) {
  absl::StatusOr<std::shared_ptr<MappedFile>> f = MappedFile::Open(path);
  return f.ok() && (*f)->size() >= 4 && std::memcmp((*f)->data(), "GGUF", 4) == 0;
}

// The only .gguf file of `dir`, or "" when there is none or several.
std::string SoleGgufIn(const fs::path& dir) {
  std::string found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".gguf") continue;
    if (!found.empty()) return "";
    found = e.path().string();
  }
  return found;
}

void LogLoaded(const LoadedModel& m, std::chrono::steady_clock::time_point start) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  spdlog::info("loaded {} ({} {}, {} layers, {:.1f}M parameters) in {} ms", m.path, m.format,
               m.config.architecture, m.config.num_layers, m.config.NumParameters() / 1e6, ms);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadGgufModel(const std::string& gguf_path) {
  const auto start = std::chrono::steady_clock::now();
  TM_ASSIGN_OR_RETURN(std::shared_ptr<const GgufFile> g, GgufFile::Open(gguf_path));
  auto model = std::make_unique<LoadedModel>();
  TM_ASSIGN_OR_RETURN(model->config, ConfigFromGguf(*g));
  model->path = gguf_path;
  model->format = "gguf";
  model->gguf = g;
  model->files.push_back(g->file());
  auto lookup = [&g](const std::string& name) -> std::optional<SourceTensor> {
    const GgufTensorInfo* t = g->FindTensor(name);
    if (t == nullptr) return std::nullopt;
    SourceTensor s;
    s.file = g->path();
    s.dtype_name = GgmlTypeName(t->ggml_type);
    if (t->supported) s.dtype = t->dtype;
    s.dims.assign(t->shape.dims.begin(), t->shape.dims.begin() + t->shape.rank);
    s.data = g->file()->data() + t->offset;
    return s;
  };
  TM_RETURN_IF_ERROR(model_internal::BindWeights(lookup, g->path(),
                                                 model_internal::GgufWeightNames(), model.get()));
  LogLoaded(*model, start);
  return model;
}

namespace {

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadSafetensors(const fs::path& config_path,
                                                             const std::string& weights_path) {
  const auto start = std::chrono::steady_clock::now();
  auto model = std::make_unique<LoadedModel>();
  TM_ASSIGN_OR_RETURN(model->config, LoadHfConfig(config_path.string()));
  TM_ASSIGN_OR_RETURN(std::shared_ptr<const SafetensorsCheckpoint> ckpt,
                      SafetensorsCheckpoint::Open(weights_path));
  model->path = config_path.parent_path().string();
  model->format = "safetensors";
  model->model_dir = model->path;
  for (const auto& f : ckpt->files()) model->files.push_back(f->file());
  auto lookup = [&ckpt](const std::string& name) -> std::optional<SourceTensor> {
    const SafetensorsFile* file = nullptr;
    const SafetensorsTensorInfo* t = ckpt->FindTensor(name, &file);
    if (t == nullptr) return std::nullopt;
    return SourceTensor{file->path(), t->dtype_name, t->dtype, t->dims,
                        file->file()->data() + t->offset};
  };
  TM_RETURN_IF_ERROR(model_internal::BindWeights(lookup, weights_path,
                                                 model_internal::HfWeightNames(), model.get()));
  LogLoaded(*model, start);
  return model;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadSafetensorsModel(const std::string& dir) {
  const fs::path d(dir);
  for (const char* name : {"model.safetensors.index.json", "model.safetensors"}) {
    if (fs::exists(d / name)) return LoadSafetensors(d / "config.json", (d / name).string());
  }
  const bool has_bin =
      fs::exists(d / "pytorch_model.bin") || fs::exists(d / "pytorch_model.bin.index.json");
  return absl::NotFoundError(absl::StrCat(
      dir, ": no model.safetensors or model.safetensors.index.json in the model directory",
      has_bin ? " (PyTorch .bin checkpoints are not supported: save them as safetensors)" : ""));
}

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (IsDemoSpec(path) && !fs::exists(p, ec)) return BuildDemoModel(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "config.json")) return LoadSafetensorsModel(path);
    if (std::string gguf = SoleGgufIn(p); !gguf.empty()) return LoadGgufModel(gguf);
    return absl::NotFoundError(
        absl::StrCat(path,
                     ": directory has no config.json (Hugging Face checkpoint) and not exactly one "
                     ".gguf file"));
  }
  if (!fs::exists(p, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  const std::string name = p.filename().string();
  if (p.extension() == ".gguf" || HasGgufMagic(path)) return LoadGgufModel(path);
  const fs::path dir = fs::absolute(p).parent_path();
  std::unique_ptr<LoadedModel> m;
  if (name == "config.json") {
    TM_ASSIGN_OR_RETURN(m, LoadSafetensorsModel(dir.string()));
  } else if (p.extension() == ".safetensors" || name.ends_with(".safetensors.index.json")) {
    TM_ASSIGN_OR_RETURN(m, LoadSafetensors(dir / "config.json", path));
  }
  if (m != nullptr) {
    m->path = path;
    return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path,
                   ": not a model (expected a .gguf file, a Hugging Face checkpoint directory with "
                   "config.json and safetensors weights, or a demo spec)"));
}

}  // namespace tokenmill

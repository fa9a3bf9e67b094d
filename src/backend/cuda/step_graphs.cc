#include "backend/cuda/step_graphs.h"

#include "absl/strings/str_cat.h"
#include "backend/cuda/cuda_check.h"
#include "tokenmill/core/status.h"

namespace tokenmill::cuda {

StepGraphs::~StepGraphs() {
  for (auto& [key, entry] : graphs_) {
    if (entry.exec != nullptr) cudaGraphExecDestroy(entry.exec);
  }
}

void StepGraphs::Begin(int64_t rows, int64_t padded_rows) {
  TM_CHECK(!recording_, "StepGraphs::Begin while recording");
  recording_ = true;
  graphable_ = true;
  rows_ = rows;
  padded_rows_ = padded_rows;
  key_ = absl::StrCat("rows=", padded_rows, ";");
  fns_.clear();
}

void StepGraphs::Record(const std::string& key, int64_t rows, bool fits, LaunchFn fn) {
  TM_CHECK(recording_, "StepGraphs::Record outside a recorded step");
  if (rows != rows_ || !fits) graphable_ = false;
  key_ += key;
  key_ += '|';
  fns_.push_back(std::move(fn));
}

absl::Status StepGraphs::RunAll(cudaStream_t stream, int64_t rows) {
  for (LaunchFn& fn : fns_) TM_RETURN_IF_ERROR(fn(stream, rows));
  return absl::OkStatus();
}

absl::Status StepGraphs::Capture(cudaStream_t stream, Entry* entry) {
  // Thread-local mode: other threads' CUDA calls (another rank's backend) are unaffected.
  TM_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status run = RunAll(stream, padded_rows_);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (!run.ok() || end != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    TM_RETURN_IF_ERROR(run);
    TM_CUDA_RETURN_IF_ERROR(end);
  }
  const cudaError_t inst = cudaGraphInstantiate(&entry->exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) entry->exec = nullptr;
  TM_CUDA_RETURN_IF_ERROR(inst);
  ++captures_;
  return absl::OkStatus();
}

absl::Status StepGraphs::Flush(cudaStream_t stream) {
  if (!recording_) return absl::OkStatus();
  recording_ = false;
  struct Reset {
    std::vector<LaunchFn>* fns;
    ~Reset() { fns->clear(); }
  } reset{&fns_};
  if (fns_.empty()) return absl::OkStatus();
  if (!graphable_) {
    ++eager_steps_;
    return RunAll(stream, rows_);
  }
  auto [it, inserted] = graphs_.try_emplace(key_);
  Entry& entry = it->second;
  entry.last_used = ++clock_;
  if (inserted) {
    // First sight: warm everything up at the padded size; capture on the next sight.
    ++eager_steps_;
    const absl::Status s = RunAll(stream, padded_rows_);
    EvictIfFull();
    return s;
  }
  if (entry.exec == nullptr) {
    const absl::Status s = Capture(stream, &entry);
    if (!s.ok()) {
      graphs_.erase(it);
      return s;
    }
  }
  ++replays_;
  TM_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(entry.exec, stream));
  return absl::OkStatus();
}

void StepGraphs::EvictIfFull() {
  while (static_cast<int>(graphs_.size()) > max_graphs_) {
    auto oldest = graphs_.begin();
    for (auto it = graphs_.begin(); it != graphs_.end(); ++it) {
      if (it->second.last_used < oldest->second.last_used) oldest = it;
    }
    if (oldest->second.exec != nullptr) cudaGraphExecDestroy(oldest->second.exec);
    graphs_.erase(oldest);
  }
}

void StepGraphs::Clear() {
  for (auto& [key, entry] : graphs_) {
    if (entry.exec != nullptr) cudaGraphExecDestroy(entry.exec);
  }
  graphs_.clear();
}

}  // namespace tokenmill::cuda

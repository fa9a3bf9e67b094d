// CUDA graphs for decode steps. A decode-only step whose batch fits a bucket is recorded
// instead of launched: every op appends a launch function and the bytes of its arguments.
// At the end of the step (Flush) the argument bytes, padded to the bucket, key a cache of
// graphs: the first sight of a key runs eagerly at the padded size (warming cuBLASLt
// plans and lazy module loading), the second captures and instantiates a graph, later
// ones replay it. Steps whose buffers cannot hold the padded rows run eagerly at their
// real size. Per-step data (token ids, positions, block tables...) lives at fixed device
// addresses, so a replay reads the new step's values.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"

namespace tokenmill::cuda {

class StepGraphs {
 public:
  // Launches the recorded op with `rows` rows (the step's or the bucket's).
  using LaunchFn = std::function<absl::Status(cudaStream_t stream, int64_t rows)>;

  explicit StepGraphs(int max_graphs) : max_graphs_(max_graphs) {}
  ~StepGraphs();
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  // Starts recording a step of `rows` token rows padded to `padded_rows`.
  void Begin(int64_t rows, int64_t padded_rows);
  bool recording() const { return recording_; }
  int64_t padded_rows() const { return padded_rows_; }
  int64_t num_recorded() const { return static_cast<int64_t>(fns_.size()); }
  // Records an op. `rows` is the op's row count; the step stays graphable only when it
  // equals the step's rows and `fits` says its buffers hold padded_rows() rows.
  void Record(const std::string& key, int64_t rows, bool fits, LaunchFn fn);
  // Runs what was recorded (replay, capture or eager) and stops recording.
  absl::Status Flush(cudaStream_t stream);
  // Drops every graph (an address baked into them changed). A step being recorded is
  // unaffected: launch functions read moving addresses when they run.
  void Clear();

  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }
  int64_t eager_steps() const { return eager_steps_; }
  int64_t num_graphs() const { return static_cast<int64_t>(graphs_.size()); }

 private:
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    int64_t last_used = 0;
  };
  absl::Status RunAll(cudaStream_t stream, int64_t rows);
  absl::Status Capture(cudaStream_t stream, Entry* entry);
  void EvictIfFull();

  int max_graphs_;
  bool recording_ = false;
  bool graphable_ = false;
  int64_t rows_ = 0, padded_rows_ = 0;
  std::string key_;
  std::vector<LaunchFn> fns_;
  absl::flat_hash_map<std::string, Entry> graphs_;
  int64_t clock_ = 0;
  int64_t captures_ = 0, replays_ = 0, eager_steps_ = 0;
};

}  // namespace tokenmill::cuda

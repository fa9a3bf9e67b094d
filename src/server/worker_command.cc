// `tokenmill worker`: rank R of a tensor-parallel group whose leader (rank 0, the engine)
// runs `tokenmill serve|generate|bench --tensor-parallel N --bootstrap HOST:PORT`. Exit
// status: 0 when the leader ended the group, 1 when the group failed (the leader died or
// went silent, another rank was lost), 2 for bad flags or a model that will not load.
#include <memory>
#include <string>

#include "server/commands.h"
#include "spdlog/spdlog.h"
#include "tokenmill/api/model_bundle.h"
#include "tokenmill/engine/distributed_worker.h"

namespace tokenmill {
namespace {

struct WorkerFlags {
  std::string model;
  WorkerOptions options;
  double join_timeout_s = 600;
};

int RunWorker(WorkerFlags& f) {
  if (f.join_timeout_s <= 0) {
    spdlog::error("worker: --join-timeout-s must be positive");
    return 2;
  }
  f.options.join_timeout = absl::Seconds(f.join_timeout_s);
  // As the leader loads it (demo specs included); the leader checks it is the same model.
  auto bundle = LoadModelBundle(f.model, "");
  if (!bundle.ok()) {
    spdlog::error("worker rank {}: cannot load model '{}': {}", f.options.rank, f.model,
                  bundle.status().ToString());
    return 2;
  }
  const absl::Status s = RunTensorParallelWorker(*bundle->model, f.options);
  if (s.ok()) return 0;
  spdlog::error("worker rank {}/{}: {}", f.options.rank, f.options.world_size, s.ToString());
  return absl::IsInvalidArgument(s) ? 2 : 1;
}

}  // namespace

void AddWorkerCommand(CLI::App& app, std::function<int()>* action) {
  auto f = std::make_shared<WorkerFlags>();
  CLI::App* cmd = app.add_subcommand(
      "worker",
      "Run one rank of a tensor-parallel group for a leader started with --bootstrap "
      "(docs/parallel.md)");
  cmd->add_option("--model,-m", f->model, "The leader's model (same file, or same demo spec)")
      ->required();
  cmd->add_option("--rank", f->options.rank, "This process's rank, 1..N-1 (the leader is 0)")
      ->required();
  cmd->add_option("--tensor-parallel,--tp", f->options.world_size,
                  "Ranks in the group: the leader's --tensor-parallel")
      ->required();
  cmd->add_option("--bootstrap", f->options.bootstrap, "The leader's HOST:PORT")
      ->envname("TOKENMILL_BOOTSTRAP")
      ->required();
  cmd->add_option("--device", f->options.device,
                  "cuda: this rank's GPU (-1: rank modulo the GPUs this process sees)")
      ->capture_default_str();
  cmd->add_option("--threads", f->options.num_threads, "cpu: backend threads (0: all cores)")
      ->capture_default_str();
  cmd->add_option("--join-timeout-s", f->join_timeout_s,
                  "How long to keep trying to reach the leader")
      ->capture_default_str();
  cmd->callback([f, action] { *action = [f]() -> int { return RunWorker(*f); }; });
}

}  // namespace tokenmill

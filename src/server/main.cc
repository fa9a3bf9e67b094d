// tokenmill: generate, inspect, tokenize, detokenize, chat-template (serve, bench and
// report join as they land).
#include <functional>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "server/commands.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "tokenmill/backend/cpu_backend.h"
#ifdef TOKENMILL_HAVE_CUDA
#include "tokenmill/backend/cuda_backend.h"
#endif

namespace {

std::string VersionText() {
  std::string s = std::string("tokenmill ") + TOKENMILL_VERSION + "\n";
  s += std::string("backends: cpu (compiled, usable; kernels ") +
       std::string(tokenmill::CpuKernelSetName()) + ")";
#ifdef TOKENMILL_HAVE_CUDA
  const int num_gpus = tokenmill::CudaDeviceCount();
  s += num_gpus > 0 ? ", cuda (compiled, usable: " + std::to_string(num_gpus) + " device(s), " +
                          tokenmill::CudaDeviceDescription(0) + ")"
                    : std::string(", cuda (compiled, not usable: no CUDA device visible)");
#else
  s += ", cuda (not compiled)";
#endif
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr: stdout carries generated text and JSON that scripts parse.
  spdlog::set_default_logger(spdlog::stderr_color_mt("tokenmill"));
  CLI::App app{"tokenmill: LLM inference serving engine"};
  app.set_version_flag("--version", VersionText());
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  std::function<int()> action;
  tokenmill::AddGenerateCommand(app, &action);
  tokenmill::AddInspectCommand(app, &action);
  tokenmill::AddTokenizerCommands(app, &action);
  tokenmill::AddReportCommand(app, &action);
  tokenmill::AddServeCommand(app, &action);
  tokenmill::AddBenchCommand(app, &action);
  tokenmill::AddWorkerCommand(app, &action);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  return action ? action() : 0;
}

// Subcommands of the tokenmill binary. Each Add*Command registers its flags; when the
// subcommand is chosen its callback stores the function main() runs (exit code).
#pragma once

#include <functional>

#include "CLI/CLI.hpp"

namespace tokenmill {

void AddGenerateCommand(CLI::App& app, std::function<int()>* action);
void AddInspectCommand(CLI::App& app, std::function<int()>* action);
void AddTokenizerCommands(CLI::App& app, std::function<int()>* action);
void AddReportCommand(CLI::App& app, std::function<int()>* action);
void AddServeCommand(CLI::App& app, std::function<int()>* action);
void AddBenchCommand(CLI::App& app, std::function<int()>* action);
void AddWorkerCommand(CLI::App& app, std::function<int()>* action);

}  // namespace tokenmill

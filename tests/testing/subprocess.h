// Running the tokenmill binary (or any program) from a test: arguments in, exit code and
// both output streams out. No shell involved.
#pragma once

#include <string>
#include <vector>

namespace tokenmill::testing {

struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is the program path), feeding `stdin_text` on its standard input,
// and waits for it, killing it after `timeout_s`.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_text = "",
                         double timeout_s = 120);

// The last non-empty line of `text`.
std::string LastLine(const std::string& text);

}  // namespace tokenmill::testing

// tokenmill command line: generate, inspect, tokenize, serve, bench, report.
#include <iostream>

#include "CLI/CLI.hpp"

int main(int argc, char** argv) {
  CLI::App app{"tokenmill: LLM inference serving engine"};
  app.set_version_flag("--version", std::string("tokenmill ") + TOKENMILL_VERSION);
  CLI11_PARSE(app, argc, argv);
  return 0;
}

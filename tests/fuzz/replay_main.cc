// A main() for builds without libFuzzer (GCC, the sanitizer presets): runs a fuzz target's
// LLVMFuzzerTestOneInput once on every file named on the command line or found in a named
// directory, so that the seed corpora and the reproducers of fixed bugs (regress-*) run
// as ordinary tests in every build. A failing input aborts, as under libFuzzer.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int RunFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return 1;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  std::fprintf(stderr, "running %s (%zu bytes)\n", path.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int num_inputs = 0;
  int errors = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    if (std::filesystem::is_directory(arg)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());  // a stable order for reproducible logs
      for (const auto& f : files) {
        errors += RunFile(f);
        ++num_inputs;
      }
    } else {
      errors += RunFile(arg);
      ++num_inputs;
    }
  }
  std::printf("%d inputs ran, %d unreadable\n", num_inputs, errors);
  return errors == 0 && num_inputs > 0 ? 0 : 1;
}

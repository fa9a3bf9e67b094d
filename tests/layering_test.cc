// Reads every #include in src/, include/tokenmill/ and kernels/ and fails on an edge that
// points backwards in the data path (STYLE.md section 1). The allowed edges are the
// architecture, written down once here.
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "testing/testdata.h"

namespace tokenmill {
namespace {

namespace fs = std::filesystem;

const std::map<std::string, std::set<std::string>>& AllowedDeps() {
  static const auto* deps = new std::map<std::string, std::set<std::string>>{
      {"core", {}},
      {"metrics", {"core"}},
      {"kv", {"core"}},
      {"scheduler", {"core", "kv"}},
      {"parallel", {"core"}},
      {"backend", {"core"}},
      {"model", {"core", "backend", "parallel"}},
      {"tokenizer", {"core"}},
      {"sampling", {"core"}},
      {"engine", {"core", "kv", "scheduler", "model", "backend", "sampling", "metrics", "parallel"}},
      {"api", {"core", "engine", "model", "tokenizer", "sampling", "metrics", "scheduler", "kv",
               "backend", "parallel"}},
      {"loadgen", {"core", "api", "engine", "model", "tokenizer", "sampling", "metrics",
                   "scheduler", "kv", "backend", "parallel"}},
      {"server", {"core", "api", "engine", "model", "tokenizer", "sampling", "metrics",
                  "scheduler", "kv", "backend", "parallel", "loadgen", "server"}},
  };
  return *deps;
}

// The folder an include names: "tokenmill/kv/x.h" -> kv, "engine/live_request.h" -> engine.
std::string TargetFolder(const std::string& include) {
  std::string path = include;
  if (path.rfind("tokenmill/", 0) == 0) path = path.substr(10);
  const size_t slash = path.find('/');
  if (slash == std::string::npos) return "";
  const std::string folder = path.substr(0, slash);
  return AllowedDeps().count(folder) ? folder : "";
}

void CheckTree(const fs::path& root, bool folder_is_first_component, std::vector<std::string>* errors,
               int* num_files) {
  if (!fs::exists(root)) return;
  const std::regex include_re(R"re(^\s*#\s*include\s*"([^"]+)")re");
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    const std::string ext = entry.path().extension().string();
    if (ext != ".h" && ext != ".cc" && ext != ".cu" && ext != ".cuh") continue;
    const fs::path rel = fs::relative(entry.path(), root);
    const std::string from = folder_is_first_component ? rel.begin()->string() : "kernels";
    if (from != "kernels" && !AllowedDeps().count(from)) continue;
    ++*num_files;
    std::ifstream in(entry.path());
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      std::smatch m;
      if (!std::regex_search(line, m, include_re)) continue;
      const std::string to = TargetFolder(m[1]);
      if (to.empty() || to == from) continue;
      const bool ok = from != "kernels" && AllowedDeps().at(from).count(to) > 0;
      if (!ok) {
        errors->push_back(entry.path().string() + ":" + std::to_string(line_no) + ": " + from +
                          " must not include " + to + " (" + std::string(m[1]) + ")");
      }
    }
  }
}

TEST(LayeringTest, EveryIncludePointsDownTheDataPath) {
  const fs::path src = testing::SourceDir();
  std::vector<std::string> errors;
  int num_files = 0;
  CheckTree(src / "src", true, &errors, &num_files);
  CheckTree(src / "include" / "tokenmill", true, &errors, &num_files);
  CheckTree(src / "kernels", false, &errors, &num_files);
  EXPECT_GT(num_files, 50) << "found too few sources under " << src;
  for (const std::string& e : errors) ADD_FAILURE() << e;
}

TEST(LayeringTest, TheRuleCatchesABackwardEdge) {
  EXPECT_EQ(TargetFolder("tokenmill/engine/engine.h"), "engine");
  EXPECT_EQ(TargetFolder("engine/live_request.h"), "engine");
  EXPECT_EQ(TargetFolder("absl/status/status.h"), "");
  EXPECT_EQ(AllowedDeps().at("kv").count("engine"), 0u);
  EXPECT_EQ(AllowedDeps().at("core").size(), 0u);
}

}  // namespace
}  // namespace tokenmill

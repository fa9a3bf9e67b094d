#include "tokenizer/tokenizer_test_util.h"

#include <sstream>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tokenmill::testing {

std::unique_ptr<Tokenizer> LoadTestTokenizer(const std::string& relative) {
  auto tok = LoadTokenizer(TestdataPath(relative));
  EXPECT_TRUE(tok.ok()) << relative << ": " << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

std::vector<std::pair<std::string, std::vector<int32_t>>> ReadVocabVectors(
    const std::string& inp_path, const std::string& out_path) {
  const std::string inp = ReadFileOrDie(inp_path);
  const std::string out = ReadFileOrDie(out_path);
  std::vector<std::string> texts = absl::StrSplit(inp, "\n__ggml_vocab_test__\n");
  // The file ends with a separator line, leaving one empty trailing entry.
  if (!texts.empty() && texts.back().empty()) texts.pop_back();
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  EXPECT_EQ(texts.size(), lines.size()) << inp_path;
  std::vector<std::pair<std::string, std::vector<int32_t>>> cases;
  for (size_t i = 0; i < texts.size() && i < lines.size(); ++i) {
    std::vector<int32_t> ids;
    std::istringstream ss(lines[i]);
    for (int32_t id; ss >> id;) ids.push_back(id);
    cases.emplace_back(texts[i], std::move(ids));
  }
  return cases;
}

std::string IdsToString(const std::vector<int32_t>& ids) { return absl::StrJoin(ids, " "); }

}  // namespace tokenmill::testing

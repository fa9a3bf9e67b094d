// Helpers shared by the tokenizer tests: loading real tokenizers from testdata and
// reading llama.cpp's .inp/.out vectors.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "testing/testdata.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill::testing {

// Loads testdata/<relative> (file or folder); fails the test on error.
std::unique_ptr<Tokenizer> LoadTestTokenizer(const std::string& relative);
// llama.cpp test vectors: (text, expected ids) pairs from X.inp / X.out.
std::vector<std::pair<std::string, std::vector<int32_t>>> ReadVocabVectors(
    const std::string& inp_path, const std::string& out_path);
std::string IdsToString(const std::vector<int32_t>& ids);

}  // namespace tokenmill::testing

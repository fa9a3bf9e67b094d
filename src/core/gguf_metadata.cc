// Typed accessors of GGUF metadata (GgufFile::Get*): type checks with errors that name
// the file, the key, what it holds and what was expected.
#include <limits>
#include <optional>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/gguf.h"

namespace tokenmill {
namespace {

std::string KindOf(const GgufValue& v) {
  switch (v.index()) {
    case 0:
      return "a signed integer";
    case 1:
      return "an unsigned integer";
    case 2:
      return "a float";
    case 3:
      return "a bool";
    case 4:
      return "a string";
    default:
      break;
  }
  switch (std::get<GgufArray>(v).index()) {
    case 0:
      return "an array of signed integers";
    case 1:
      return "an array of unsigned integers";
    case 2:
      return "an array of floats";
    case 3:
      return "an array of bools";
    default:
      return "an array of strings";
  }
}

absl::Status Mismatch(const std::string& path, const std::string& key, const GgufValue& v,
                      std::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": GGUF metadata key '", key, "' is ",
                                                 KindOf(v), ", expected ", std::string(expected)));
}

std::optional<int64_t> AsInt64(uint64_t u) {
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(u);
}

}  // namespace

#define TM_GGUF_LOOKUP_(var, key)                                                                  \
  auto it_ = metadata_.find(key);                                                                  \
  if (it_ == metadata_.end()) {                                                                    \
    return absl::NotFoundError(absl::StrCat(path(), ": GGUF metadata key '", key, "' not found")); \
  }                                                                                                \
  const GgufValue& var = it_->second

absl::StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  TM_GGUF_LOOKUP_(v, key);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return Mismatch(path(), key, v, "a string");
}

absl::StatusOr<int64_t> GgufFile::GetInt(const std::string& key) const {
  TM_GGUF_LOOKUP_(v, key);
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (std::optional<int64_t> i = AsInt64(*u)) return *i;
    return absl::InvalidArgumentError(
        absl::StrCat(path(), ": GGUF metadata key '", key, "' = ", *u, " is out of range"));
  }
  return Mismatch(path(), key, v, "an integer");
}

absl::StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  TM_GGUF_LOOKUP_(v, key);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  return Mismatch(path(), key, v, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(const std::string& key) const {
  TM_GGUF_LOOKUP_(v, key);
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  return Mismatch(path(), key, v, "a bool");
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(const std::string& key) const {
  TM_GGUF_LOOKUP_(v, key);
  if (const auto* a = std::get_if<GgufArray>(&v)) {
    if (const auto* s = std::get_if<std::vector<std::string>>(a)) return *s;
  }
  return Mismatch(path(), key, v, "an array of strings");
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(const std::string& key) const {
  TM_GGUF_LOOKUP_(v, key);
  if (const auto* a = std::get_if<GgufArray>(&v)) {
    if (const auto* s = std::get_if<std::vector<int64_t>>(a)) return *s;
    if (const auto* u = std::get_if<std::vector<uint64_t>>(a)) {
      std::vector<int64_t> out;
      out.reserve(u->size());
      for (uint64_t x : *u) {
        std::optional<int64_t> i = AsInt64(x);
        if (!i) {
          return absl::InvalidArgumentError(
              absl::StrCat(path(), ": GGUF metadata key '", key, "' holds ", x, ", out of range"));
        }
        out.push_back(*i);
      }
      return out;
    }
  }
  return Mismatch(path(), key, v, "an array of integers");
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(const std::string& key) const {
  TM_GGUF_LOOKUP_(v, key);
  if (const auto* a = std::get_if<GgufArray>(&v)) {
    if (const auto* d = std::get_if<std::vector<double>>(a)) return *d;
    if (const auto* s = std::get_if<std::vector<int64_t>>(a)) {
      return std::vector<double>(s->begin(), s->end());
    }
    if (const auto* u = std::get_if<std::vector<uint64_t>>(a)) {
      return std::vector<double>(u->begin(), u->end());
    }
  }
  return Mismatch(path(), key, v, "an array of numbers");
}

#undef TM_GGUF_LOOKUP_

}  // namespace tokenmill

#include "metrics/exposition_parser.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace tokenmill::metrics::testing {
namespace {

absl::Status Err(int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

absl::StatusOr<double> ParseValue(absl::string_view s) {
  if (s == "+Inf") return INFINITY;
  if (s == "-Inf") return -INFINITY;
  if (s == "NaN") return NAN;
  double v = 0;
  if (!absl::SimpleAtod(s, &v)) return absl::InvalidArgumentError(absl::StrCat("value ", s));
  return v;
}

bool IsNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

// Parses `name{a="x",b="y"} value` into `out`.
absl::Status ParseSampleLine(absl::string_view line, int n, Sample& out) {
  size_t i = 0;
  while (i < line.size() && IsNameChar(line[i], i == 0)) ++i;
  if (i == 0) return Err(n, "missing metric name");
  out.name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const size_t eq = line.find('=', i);
      if (eq == absl::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
        return Err(n, "bad label");
      }
      const std::string key(line.substr(i, eq - i));
      std::string value;
      size_t j = eq + 2;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] != '\\') {
          value += line[j];
          continue;
        }
        if (++j >= line.size()) return Err(n, "dangling escape");
        if (line[j] == 'n') {
          value += '\n';
        } else if (line[j] == '\\' || line[j] == '"') {
          value += line[j];
        } else {
          return Err(n, "bad escape in label value");
        }
      }
      if (j >= line.size()) return Err(n, "unterminated label value");
      if (!out.labels.emplace(key, value).second) return Err(n, "duplicate label " + key);
      i = j + 1;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return Err(n, "unterminated label set");
    ++i;
  }
  if (i >= line.size() || line[i] != ' ') return Err(n, "expected a space before the value");
  std::vector<absl::string_view> rest = absl::StrSplit(line.substr(i + 1), ' ');
  if (rest.empty() || rest.size() > 2) return Err(n, "expected value [timestamp]");
  auto v = ParseValue(rest[0]);
  if (!v.ok()) return Err(n, std::string(v.status().message()));
  out.value = *v;
  return absl::OkStatus();
}

std::string UnescapeHelp(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '\\' || s[i + 1] == 'n')) {
      out += s[i + 1] == 'n' ? '\n' : '\\';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool BelongsTo(const ParsedFamily& f, const std::string& sample_name) {
  if (f.type != "histogram") return sample_name == f.name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    if (sample_name == f.name + suffix) return true;
  }
  return false;
}

// Buckets cumulative, +Inf present and equal to _count, per label set.
absl::Status CheckHistogram(const ParsedFamily& f) {
  std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
  std::map<std::map<std::string, std::string>, double> counts;
  for (const Sample& s : f.samples) {
    auto labels = s.labels;
    if (s.name == f.name + "_bucket") {
      auto le = labels.find("le");
      if (le == labels.end()) return absl::InvalidArgumentError(f.name + ": bucket without le");
      auto bound = ParseValue(le->second);
      if (!bound.ok()) return bound.status();
      labels.erase(le);
      buckets[labels].emplace_back(*bound, s.value);
    } else if (s.name == f.name + "_count") {
      counts[labels] = s.value;
    }
  }
  for (const auto& [labels, list] : buckets) {
    for (size_t i = 1; i < list.size(); ++i) {
      if (!(list[i].first > list[i - 1].first) || list[i].second < list[i - 1].second) {
        return absl::InvalidArgumentError(f.name + ": buckets not increasing/cumulative");
      }
    }
    if (list.empty() || !std::isinf(list.back().first)) {
      return absl::InvalidArgumentError(f.name + ": missing +Inf bucket");
    }
    if (!counts.count(labels) || counts[labels] != list.back().second) {
      return absl::InvalidArgumentError(f.name + ": _count differs from the +Inf bucket");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::map<std::string, ParsedFamily>> ParseExposition(absl::string_view text) {
  std::map<std::string, ParsedFamily> families;
  ParsedFamily* current = nullptr;
  int n = 0;
  if (!text.empty() && text.back() != '\n') return Err(0, "text must end with a newline");
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++n;
    if (line.empty()) continue;
    if (absl::StartsWith(line, "# HELP ") || absl::StartsWith(line, "# TYPE ")) {
      const bool is_help = line[2] == 'H';
      absl::string_view rest = line.substr(7);
      const size_t sp = rest.find(' ');
      if (sp == absl::string_view::npos) return Err(n, "comment without text");
      const std::string name(rest.substr(0, sp));
      ParsedFamily& f = families[name];
      if (!f.name.empty() && current != &f) return Err(n, "family " + name + " split up");
      f.name = name;
      current = &f;
      std::string& field = is_help ? f.help : f.type;
      if (!field.empty()) return Err(n, "duplicate HELP/TYPE for " + name);
      field = is_help ? UnescapeHelp(rest.substr(sp + 1)) : std::string(rest.substr(sp + 1));
      continue;
    }
    if (line[0] == '#') continue;
    Sample s;
    if (absl::Status st = ParseSampleLine(line, n, s); !st.ok()) return st;
    if (current == nullptr || current->type.empty() || !BelongsTo(*current, s.name)) {
      return Err(n, "sample " + s.name + " outside its family");
    }
    current->samples.push_back(std::move(s));
  }
  for (const auto& [name, f] : families) {
    if (f.type == "histogram") {
      if (absl::Status st = CheckHistogram(f); !st.ok()) return st;
    }
  }
  return families;
}

namespace {

const Sample* Find(const std::map<std::string, ParsedFamily>& families, const std::string& family,
                   const std::string& name, const std::map<std::string, std::string>& labels) {
  auto it = families.find(family);
  if (it == families.end()) return nullptr;
  for (const Sample& s : it->second.samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto l = s.labels.find(k);
      match = match && l != s.labels.end() && l->second == v;
    }
    if (match) return &s;
  }
  return nullptr;
}

}  // namespace

double SampleValue(const std::map<std::string, ParsedFamily>& families, const std::string& family,
                   const std::string& name, const std::map<std::string, std::string>& labels) {
  const Sample* s = Find(families, family, name, labels);
  EXPECT_NE(s, nullptr) << "no sample " << name << " in family " << family;
  return s != nullptr ? s->value : NAN;
}

bool HasSample(const std::map<std::string, ParsedFamily>& families, const std::string& family,
               const std::string& name, const std::map<std::string, std::string>& labels) {
  return Find(families, family, name, labels) != nullptr;
}

}  // namespace tokenmill::metrics::testing

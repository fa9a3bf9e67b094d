// Parsing of workload spec strings (workload.h) and their JSON form for report.json.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tokenmill/core/status.h"
#include "tokenmill/loadgen/workload.h"

namespace tokenmill::loadgen {
namespace {

absl::Status Bad(absl::string_view spec, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--workload '", spec, "': ", why));
}

absl::StatusOr<int> ParseLength(absl::string_view spec, absl::string_view text, int min) {
  int v = 0;
  if (!absl::SimpleAtoi(text, &v) || v < min) {
    return Bad(spec, absl::StrCat("'", text, "' is not a length >= ", min));
  }
  return v;
}

// "A-B" (or "A", meaning A-A) into [lo, hi] with min <= lo <= hi.
absl::Status ParseRange(absl::string_view spec, absl::string_view text, int min, int* lo, int* hi) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '-');
  if (parts.size() > 2) return Bad(spec, absl::StrCat("'", text, "' is not a range A-B"));
  TM_ASSIGN_OR_RETURN(*lo, ParseLength(spec, parts[0], min));
  TM_ASSIGN_OR_RETURN(*hi, ParseLength(spec, parts.back(), min));
  if (*hi < *lo) return Bad(spec, absl::StrCat("range '", text, "' is empty"));
  return absl::OkStatus();
}

using Setter = std::function<absl::Status(absl::string_view value)>;

Setter Double(absl::string_view spec, double* out, double min) {
  return [spec, out, min](absl::string_view v) -> absl::Status {
    double d = 0;
    if (!absl::SimpleAtod(v, &d) || !(d >= min)) {
      return Bad(spec, absl::StrCat("'", v, "' is not a number >= ", min));
    }
    *out = d;
    return absl::OkStatus();
  };
}

Setter Int(absl::string_view spec, int* out, int min) {
  return [spec, out, min](absl::string_view v) -> absl::Status {
    TM_ASSIGN_OR_RETURN(*out, ParseLength(spec, v, min));
    return absl::OkStatus();
  };
}

// "key=value,key=value" against the known keys.
absl::Status ApplyParams(absl::string_view spec, absl::string_view params,
                         const std::map<std::string, Setter>& setters) {
  for (absl::string_view kv : absl::StrSplit(params, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.size() != 2) return Bad(spec, absl::StrCat("'", kv, "' is not key=value"));
    auto it = setters.find(std::string(p[0]));
    if (it == setters.end()) {
      std::string keys;
      for (const auto& [k, _] : setters) absl::StrAppend(&keys, keys.empty() ? "" : ", ", k);
      return Bad(spec, absl::StrCat("unknown key '", p[0], "' (keys: ", keys, ")"));
    }
    TM_RETURN_IF_ERROR(it->second(p[1]));
  }
  return absl::OkStatus();
}

absl::Status ParseChat(absl::string_view spec, absl::string_view params, ChatParams* c) {
  TM_RETURN_IF_ERROR(ApplyParams(spec, params,
                                 {{"in_median", Double(spec, &c->input_median, 1)},
                                  {"in_sigma", Double(spec, &c->input_sigma, 0)},
                                  {"in_min", Int(spec, &c->input_min, 1)},
                                  {"in_max", Int(spec, &c->input_max, 1)},
                                  {"out_median", Double(spec, &c->output_median, 1)},
                                  {"out_sigma", Double(spec, &c->output_sigma, 0)},
                                  {"out_min", Int(spec, &c->output_min, 1)},
                                  {"out_max", Int(spec, &c->output_max, 1)}}));
  if (c->input_max < c->input_min) return Bad(spec, "in_max < in_min");
  if (c->output_max < c->output_min) return Bad(spec, "out_max < out_min");
  return absl::OkStatus();
}

absl::Status ParseAgentic(absl::string_view spec, absl::string_view params, AgenticParams* a) {
  Setter turns = [spec, a](absl::string_view v) {
    return ParseRange(spec, v, 1, &a->min_turns, &a->max_turns);
  };
  return ApplyParams(spec, params,
                     {{"system", Int(spec, &a->system_tokens, 1)},
                      {"turns", turns},
                      {"user_median", Double(spec, &a->user_median, 1)},
                      {"user_sigma", Double(spec, &a->user_sigma, 0)},
                      {"user_max", Int(spec, &a->user_max, 1)},
                      {"out_median", Double(spec, &a->output_median, 1)},
                      {"out_sigma", Double(spec, &a->output_sigma, 0)},
                      {"out_max", Int(spec, &a->output_max, 1)},
                      {"think", Double(spec, &a->think_mean_s, 0)}});
}

}  // namespace

absl::StatusOr<WorkloadSpec> ParseWorkloadSpec(absl::string_view text) {
  WorkloadSpec s;
  s.text = std::string(text);
  std::vector<absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  const absl::string_view kind = parts[0];
  const absl::string_view rest = parts.size() > 1 ? parts[1] : absl::string_view();
  if (kind == "fixed" || kind == "random") {
    std::vector<absl::string_view> io = absl::StrSplit(rest, ':');
    if (io.size() != 2) {
      return Bad(text, kind == "fixed" ? "expected fixed:IN:OUT"
                                       : "expected random:IN_MIN-IN_MAX:OUT_MIN-OUT_MAX");
    }
    s.kind = kind == "fixed" ? WorkloadKind::kFixed : WorkloadKind::kRandom;
    if (s.kind == WorkloadKind::kFixed) {
      TM_ASSIGN_OR_RETURN(s.input_min, ParseLength(text, io[0], 1));
      TM_ASSIGN_OR_RETURN(s.output_min, ParseLength(text, io[1], 1));
      s.input_max = s.input_min;
      s.output_max = s.output_min;
    } else {
      TM_RETURN_IF_ERROR(ParseRange(text, io[0], 1, &s.input_min, &s.input_max));
      TM_RETURN_IF_ERROR(ParseRange(text, io[1], 1, &s.output_min, &s.output_max));
    }
    return s;
  }
  if (kind == "chat") {
    s.kind = WorkloadKind::kChat;
    TM_RETURN_IF_ERROR(ParseChat(text, rest, &s.chat));
    return s;
  }
  if (kind == "agentic") {
    s.kind = WorkloadKind::kAgentic;
    TM_RETURN_IF_ERROR(ParseAgentic(text, rest, &s.agentic));
    return s;
  }
  return Bad(text, "unknown workload (fixed:IN:OUT, random:A-B:C-D, chat, agentic)");
}

nlohmann::ordered_json WorkloadSpecJson(const WorkloadSpec& s) {
  nlohmann::ordered_json j;
  j["spec"] = s.text;
  switch (s.kind) {
    case WorkloadKind::kFixed:
    case WorkloadKind::kRandom:
      j["kind"] = s.kind == WorkloadKind::kFixed ? "fixed" : "random";
      j["input_tokens"] = {{"min", s.input_min}, {"max", s.input_max}};
      j["output_tokens"] = {{"min", s.output_min}, {"max", s.output_max}};
      break;
    case WorkloadKind::kChat: {
      const ChatParams& c = s.chat;
      j["kind"] = "chat";
      j["input_tokens"] = {{"distribution", "lognormal"},
                           {"median", c.input_median},
                           {"sigma", c.input_sigma},
                           {"min", c.input_min},
                           {"max", c.input_max}};
      j["output_tokens"] = {{"distribution", "lognormal"},
                            {"median", c.output_median},
                            {"sigma", c.output_sigma},
                            {"min", c.output_min},
                            {"max", c.output_max}};
      break;
    }
    case WorkloadKind::kAgentic: {
      const AgenticParams& a = s.agentic;
      j["kind"] = "agentic";
      j["system_tokens"] = a.system_tokens;
      j["turns"] = {{"min", a.min_turns}, {"max", a.max_turns}};
      j["user_tokens"] = {{"distribution", "lognormal"},
                          {"median", a.user_median},
                          {"sigma", a.user_sigma},
                          {"max", a.user_max}};
      j["output_tokens"] = {{"distribution", "lognormal"},
                            {"median", a.output_median},
                            {"sigma", a.output_sigma},
                            {"max", a.output_max}};
      j["think_time_s"] = {{"distribution", "exponential"}, {"mean", a.think_mean_s}};
      break;
    }
  }
  return j;
}

}  // namespace tokenmill::loadgen

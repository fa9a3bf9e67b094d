#include "tokenmill/scheduler/step_plan.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tokenmill {
namespace {

std::string Name(RequestId request_id, int sample_index) {
  if (sample_index == 0) return absl::StrCat("r", request_id);
  return absl::StrCat("r", request_id, ".", sample_index);
}

}  // namespace

void StepPlan::Clear() {
  sequences.clear();
  block_copies.clear();
  preempted.clear();
  aborted.clear();
  finished_requests.clear();
  num_batched_tokens = 0;
}

std::string StepPlan::ToString() const {
  std::vector<std::string> prefills;
  std::vector<std::string> decodes;
  for (const ScheduledSequence& s : sequences) {
    std::string name = Name(s.request_id, s.sample_index);
    if (s.is_decode) {
      decodes.push_back(std::move(name));
      continue;
    }
    absl::StrAppend(&name, "[", s.start_position, ",", s.context_len(), ")");
    if (s.num_samples > 1) absl::StrAppend(&name, "x", s.num_samples);
    prefills.push_back(std::move(name));
  }
  std::vector<std::string> sections;
  if (!prefills.empty()) sections.push_back(absl::StrCat("P ", absl::StrJoin(prefills, " ")));
  if (!decodes.empty()) sections.push_back(absl::StrCat("D ", absl::StrJoin(decodes, " ")));
  if (!preempted.empty()) {
    sections.push_back(absl::StrCat(
        "preempt ", absl::StrJoin(preempted, " ", [](std::string* out, const SequenceRef& r) {
          absl::StrAppend(out, Name(r.request_id, r.sample_index));
        })));
  }
  if (!aborted.empty()) {
    sections.push_back(absl::StrCat(
        "abort ", absl::StrJoin(aborted, " ", [](std::string* out, const SequenceRef& r) {
          absl::StrAppend(out, Name(r.request_id, r.sample_index), ":", FinishReasonName(r.reason));
        })));
  }
  if (!block_copies.empty()) {
    sections.push_back(absl::StrCat(
        "copy ", absl::StrJoin(block_copies, " ", [](std::string* out, const BlockCopy& c) {
          absl::StrAppend(out, c.src, ">", c.dst);
        })));
  }
  return sections.empty() ? "idle" : absl::StrJoin(sections, " | ");
}

}  // namespace tokenmill

#include "tokenmill/metrics/step_accounting.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tokenmill/core/status.h"

namespace tokenmill::metrics {
namespace {

// Splits `total` units over `work` by token share with largest-remainder rounding. The floor
// shares leave fewer than work.size() units over; those go one each to the largest remainders,
// so the result sums to `total` exactly and no share is off by a whole unit from its ideal.
std::vector<int64_t> SplitByTokens(int64_t total, const std::vector<SequenceWork>& work,
                                   int64_t sum_tokens) {
  std::vector<int64_t> share(work.size(), 0);
  if (sum_tokens == 0 || total == 0) return share;
  std::vector<uint64_t> remainder(work.size(), 0);
  int64_t given = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    // 128-bit: a long step in ns times a large prefill overflows 64 bits.
    const unsigned __int128 scaled =
        static_cast<unsigned __int128>(total) * static_cast<uint64_t>(work[i].num_tokens);
    share[i] = static_cast<int64_t>(scaled / static_cast<uint64_t>(sum_tokens));
    remainder[i] = static_cast<uint64_t>(scaled % static_cast<uint64_t>(sum_tokens));
    given += share[i];
  }
  int64_t left = total - given;
  std::vector<size_t> order(work.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return remainder[a] > remainder[b]; });
  for (size_t k = 0; left > 0; ++k, --left) ++share[order[k]];
  return share;
}

}  // namespace

std::vector<SequenceShare> AttributeStep(const StepSample& step) {
  TM_CHECK(step.duration_ns >= 0, "step duration must be >= 0 ns, got ", step.duration_ns);
  TM_CHECK(!step.energy_uj.has_value() || *step.energy_uj >= 0, "step energy must be >= 0 uJ, got ",
           step.energy_uj.value_or(0));
  int64_t sum_tokens = 0;
  for (const SequenceWork& w : step.work) {
    TM_CHECK(w.num_tokens >= 0, "sequence ", w.sequence_id, ": negative token count");
    sum_tokens += w.num_tokens;
  }
  const std::vector<int64_t> ns = SplitByTokens(step.duration_ns, step.work, sum_tokens);
  std::vector<int64_t> uj;
  if (step.energy_uj.has_value()) uj = SplitByTokens(*step.energy_uj, step.work, sum_tokens);
  std::vector<SequenceShare> shares(step.work.size());
  for (size_t i = 0; i < step.work.size(); ++i) {
    shares[i].sequence_id = step.work[i].sequence_id;
    shares[i].device_ns = ns[i];
    if (step.energy_uj.has_value()) shares[i].energy_uj = uj[i];
  }
  return shares;
}

SequenceUsage& SequenceUsage::operator+=(const SequenceUsage& other) {
  num_steps += other.num_steps;
  num_tokens += other.num_tokens;
  device_ns += other.device_ns;
  energy_uj += other.energy_uj;
  is_energy_known = is_energy_known && other.is_energy_known;
  return *this;
}

std::optional<double> SequenceUsage::joules() const {
  if (!is_energy_known) return std::nullopt;
  return static_cast<double>(energy_uj) / 1e6;  // one rounding: 25 uJ -> 25e-6
}

void StepAccountant::RecordStep(const StepSample& step) {
  const std::vector<SequenceShare> shares = AttributeStep(step);
  ++totals_.num_steps;
  totals_.device_ns += step.duration_ns;
  if (step.energy_uj.has_value()) {
    totals_.energy_uj += *step.energy_uj;
  } else {
    ++totals_.num_steps_without_energy;
  }
  for (size_t i = 0; i < shares.size(); ++i) {
    SequenceUsage& u = usage_[shares[i].sequence_id];
    ++u.num_steps;
    u.num_tokens += step.work[i].num_tokens;
    u.device_ns += shares[i].device_ns;
    totals_.attributed_ns += shares[i].device_ns;
    if (shares[i].energy_uj.has_value()) {
      u.energy_uj += *shares[i].energy_uj;
      totals_.attributed_uj += *shares[i].energy_uj;
    } else {
      u.is_energy_known = false;
    }
  }
}

SequenceUsage StepAccountant::Release(uint64_t sequence_id) {
  auto it = usage_.find(sequence_id);
  if (it == usage_.end()) return SequenceUsage{};
  SequenceUsage u = it->second;
  usage_.erase(it);
  return u;
}

const SequenceUsage* StepAccountant::Find(uint64_t sequence_id) const {
  auto it = usage_.find(sequence_id);
  return it == usage_.end() ? nullptr : &it->second;
}

void StepProbe::Begin() {
  begin_s_ = clock_.NowSeconds();
  begin_uj_ = meter_ != nullptr ? meter_->ReadEnergyMicrojoules() : std::nullopt;
}

StepSample StepProbe::End(std::vector<SequenceWork> work) {
  StepSample s;
  s.duration_ns = std::max<int64_t>(0, std::llround((clock_.NowSeconds() - begin_s_) * 1e9));
  if (meter_ != nullptr && begin_uj_.has_value()) {
    const std::optional<int64_t> end_uj = meter_->ReadEnergyMicrojoules();
    if (end_uj.has_value()) s.energy_uj = std::max<int64_t>(0, *end_uj - *begin_uj_);
  }
  s.work = std::move(work);
  return s;
}

}  // namespace tokenmill::metrics

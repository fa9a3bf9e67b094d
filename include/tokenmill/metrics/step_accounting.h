// Step accounting: every step's wall time and energy are split among the sequences that ran in
// it, in proportion to the tokens each one processed (src/metrics/README.md states the rule).
// Quantities are integers (nanoseconds, microjoules) and the split uses largest-remainder
// rounding, so the shares of a step add up exactly to the step, and per-sequence totals add up
// exactly to the sum of the steps.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/metrics/energy_meter.h"

namespace tokenmill::metrics {

// Tokens one sequence processed in a step: its prefill chunk, or 1 for a decode step
// (speculative decoding: the tokens verified). Requires: num_tokens >= 0.
struct SequenceWork {
  uint64_t sequence_id = 0;
  int64_t num_tokens = 0;
};

// One step as measured by the engine.
struct StepSample {
  int64_t duration_ns = 0;           // wall time of the step, >= 0
  std::optional<int64_t> energy_uj;  // meter delta over the step; nullopt = unknown
  std::vector<SequenceWork> work;    // sequence ids unique within the step
};

struct SequenceShare {
  uint64_t sequence_id = 0;
  int64_t device_ns = 0;
  std::optional<int64_t> energy_uj;  // nullopt when the step's energy is unknown
};

// Splits `step` among its sequences in proportion to num_tokens (largest remainder; ties go to
// the earlier entry). Shares come back in the order of step.work; their device_ns (and
// energy_uj) sum exactly to the step's. A step whose sequences processed no token at all
// attributes nothing: every share is 0.
std::vector<SequenceShare> AttributeStep(const StepSample& step);

// What a sequence accumulated over its steps. Merge the usages of a request's sequences (n > 1)
// with operator+=.
struct SequenceUsage {
  int64_t num_steps = 0;
  int64_t num_tokens = 0;  // tokens processed (prefill + decode), the attribution weight
  int64_t device_ns = 0;
  int64_t energy_uj = 0;        // meaningful only when is_energy_known
  bool is_energy_known = true;  // false once any step of this sequence had unknown energy

  SequenceUsage& operator+=(const SequenceUsage& other);
  double device_seconds() const { return static_cast<double>(device_ns) / 1e9; }
  // Joules, or nullopt when unknown (never 0 for unknown).
  std::optional<double> joules() const;
};

struct StepTotals {
  int64_t num_steps = 0;
  int64_t device_ns = 0;      // sum of every step's duration
  int64_t attributed_ns = 0;  // part of device_ns given to sequences
  int64_t energy_uj = 0;      // sum of every known step energy
  int64_t attributed_uj = 0;  // part of energy_uj given to sequences
  int64_t num_steps_without_energy = 0;
};

// Accumulates per-sequence usage over steps. Thread-compatible: owned by the engine's step
// thread (no locking).
class StepAccountant {
 public:
  void RecordStep(const StepSample& step);
  // Returns the usage accumulated for `sequence_id` and forgets the sequence. An unknown id
  // returns an empty usage (energy "known" and zero: it took no step).
  SequenceUsage Release(uint64_t sequence_id);
  const SequenceUsage* Find(uint64_t sequence_id) const;
  const StepTotals& totals() const { return totals_; }
  int num_active_sequences() const { return static_cast<int>(usage_.size()); }

 private:
  absl::flat_hash_map<uint64_t, SequenceUsage> usage_;
  StepTotals totals_;
};

// Measures one step: wall time from `clock` and the energy delta from `meter` (nullopt when
// the meter is absent or either reading fails). Requires: clock (and meter, when given)
// outlive the probe; Begin() before End(). Thread-compatible.
class StepProbe {
 public:
  StepProbe(const Clock& clock, EnergyMeter* meter) : clock_(clock), meter_(meter) {}
  void Begin();
  StepSample End(std::vector<SequenceWork> work);

 private:
  const Clock& clock_;
  EnergyMeter* const meter_;
  double begin_s_ = 0.0;
  std::optional<int64_t> begin_uj_;
};

}  // namespace tokenmill::metrics

// Fault injection, for tests only: a ModelExecutor decorator that fails, slows or throws in
// chosen steps, so that the engine's failure paths (a failed step fails its requests with
// INTERNAL and the engine keeps serving; an exception kills the step thread and the engine
// fails for good) and the servers' replies to them can be exercised on purpose.
//
// Enabled by `--inject-faults SPEC` (serve, generate, bench) or
// ExecutorOptions::inject_faults. Off by default; when off, MakeModelExecutor wraps nothing,
// so the serving path pays nothing for this file.
//
// SPEC is one or more clauses joined by ';':
//   step_error:every=N       fail steps N, 2N, 3N, ...            (N >= 1)
//   step_error:at=K[,K...]   fail steps K, ...                    (K >= 1)
//   step_delay_ms=D          sleep D ms before every step         (0 <= D <= 60000)
//   step_throw:at=K          throw from step K                    (K >= 1)
// Steps are numbered from 1 in the order Execute() is called, failed steps included. A
// failed step runs nothing (no block copies, no forward pass: like a launch error) and
// returns INTERNAL "injected fault: step K (SPEC)". A throwing step runs nothing either and
// throws std::runtime_error "injected fault: step K throws (SPEC)", as a stray third-party
// exception (std::bad_alloc, a library's own) would: the engine cannot continue after it.
// When a step both fails and throws, it throws.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/engine/model_executor.h"

namespace tokenmill {

struct FaultSpec {
  int64_t error_every = 0;              // 0: no periodic failure
  std::vector<int64_t> error_at_steps;  // sorted, no duplicates
  int delay_ms = 0;
  int64_t throw_at_step = 0;  // 0: never throws

  bool is_empty() const {
    return error_every == 0 && error_at_steps.empty() && delay_ms == 0 && throw_at_step == 0;
  }
  // Whether step `step` (1-based) fails.
  bool FailsStep(int64_t step) const;
  // Whether step `step` (1-based) throws.
  bool ThrowsAtStep(int64_t step) const { return throw_at_step != 0 && step == throw_at_step; }
  // Canonical text, parseable by ParseFaultSpec:
  // "step_error:at=2,5;step_delay_ms=10;step_throw:at=7".
  std::string ToString() const;
};

// Parses SPEC (grammar above). InvalidArgument naming the clause and what is wrong, e.g.
// "clause 'step_error:every=0': every must be an integer >= 1". An empty or all-blank SPEC
// is an error too (leave the option unset to turn injection off).
absl::StatusOr<FaultSpec> ParseFaultSpec(const std::string& spec);

// Wraps `inner`: Execute() delays, fails and throws as `spec` says and otherwise forwards;
// every other method forwards (Describe() adds "FAULT INJECTION <spec>"). Same thread
// contract as `inner`: one caller at a time (the engine's step thread).
std::unique_ptr<ModelExecutor> MakeFaultInjectingExecutor(std::unique_ptr<ModelExecutor> inner,
                                                          FaultSpec spec);

}  // namespace tokenmill

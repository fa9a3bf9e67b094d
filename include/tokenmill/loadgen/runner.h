// Drives a target with a workload at one load point: closed loop at a concurrency, or
// Poisson arrivals at a rate. Client threads block in Target::Send, one per request in
// flight.
//
// Closed loop (concurrency C): C client threads each run whole sessions one after another,
// so C sessions are active at once; an agentic session's think time leaves its slot idle,
// as an agent's does. Rate R: sessions arrive as a Poisson process of R per second (seeded
// exponential gaps); each runs on its own client thread (at most max_concurrency threads;
// beyond that arrivals queue on the client, visible as dispatch delay).
// Bounds: `num_requests` measured requests issued and/or `duration_s` seconds of issuing;
// requests in flight at the bound run to completion and count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/core/clock.h"
#include "tokenmill/loadgen/progress.h"
#include "tokenmill/loadgen/stats.h"
#include "tokenmill/loadgen/target.h"
#include "tokenmill/loadgen/workload.h"

namespace tokenmill::loadgen {

enum class LoadMode { kConcurrency, kRate };

struct LoadPoint {
  LoadMode mode = LoadMode::kConcurrency;
  double value = 1;  // concurrency (integral) or requests (sessions) per second
};
std::string LoadPointName(const LoadPoint& p);  // "concurrency 4", "rate 2 req/s"

// Turns a session's turn into what the target is sent (prompt ids, text for text-only
// targets, sampling). Called on client threads; must be thread-safe.
using RequestBuilder =
    std::function<absl::StatusOr<TargetRequest>(const Session& session, int turn)>;

struct RunOptions {
  LoadPoint load;
  int64_t num_requests = 0;    // 0: bounded by duration_s only
  double duration_s = 0;       // 0: bounded by num_requests only
  int max_concurrency = 1024;  // rate mode: most client threads
  uint64_t arrival_seed = 0;   // rate mode: the Poisson gaps
  const Clock* clock = &SystemClock::Get();
};

struct RunResult {
  std::vector<RequestSample> samples;  // in completion order
  int64_t num_sessions = 0;            // sessions started
  int64_t num_truncated_sessions = 0;  // of those, cut by the context length
  double start_s = 0, end_s = 0;       // the phase on the client clock
};

// Runs one load point to its bounds. Requires: num_requests > 0 or duration_s > 0. A
// RequestBuilder error aborts the run with that error (a bug or a bad tokenizer, not load).
absl::StatusOr<RunResult> RunLoad(Target& target, const WorkloadGenerator& workload,
                                  const RequestBuilder& build, const RunOptions& options,
                                  Progress* progress, const std::string& label);

}  // namespace tokenmill::loadgen

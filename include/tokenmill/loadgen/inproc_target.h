// The in-process target: requests go straight to an Engine through the same completion
// path the servers use (PrepareRequest, Submit, CollectCompletion with detokenization), so
// the figures are the engine's ceiling without a network or serialization in the way.
#pragma once

#include <memory>

#include "tokenmill/api/model_bundle.h"
#include "tokenmill/engine/engine.h"
#include "tokenmill/loadgen/target.h"

namespace tokenmill::loadgen {

struct InprocTargetOptions {
  Engine* engine = nullptr;             // not owned; outlives the target
  const ModelBundle* bundle = nullptr;  // not owned; the engine's model
  // Whether the engine's cost model has prices; without them the engine reports cost 0,
  // which the bench shows as unknown (null) rather than free.
  bool has_prices = false;
  const Clock* clock = &SystemClock::Get();
};

std::unique_ptr<Target> MakeInprocTarget(const InprocTargetOptions& options);

}  // namespace tokenmill::loadgen

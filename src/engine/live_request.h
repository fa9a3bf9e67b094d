// Engine-private bookkeeping of one request and of the inbox. Step-thread owned.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tokenmill/engine/engine.h"

namespace tokenmill {

struct Engine::InboxItem {
  enum Kind { kSubmit, kCancel, kStopSequence } kind = kSubmit;
  RequestId rid = 0;
  EngineRequest request;                   // kSubmit
  std::shared_ptr<RequestStream> stream;   // kSubmit
  double arrival_s = 0;                    // kSubmit
  FinishReason reason = FinishReason::kNone;  // kCancel
  int index = 0;                           // kStopSequence
};

struct Engine::LiveRequest {
  RequestId rid = 0;
  EngineRequest request;
  std::shared_ptr<RequestStream> stream;
  std::vector<Sampler> samplers;  // one per sample index
  std::vector<bool> finished;     // a finished event was pushed for this sample
  std::vector<bool> stopped;      // the front end matched a stop string
  std::vector<FinishReason> reasons;     // per sample, once finished
  std::vector<double> sample_last_token_s;  // per sample, for inter-token latency
  double arrival_s = 0;
  double first_scheduled_s = -1;
  double first_token_s = -1;
  double last_token_s = -1;
  int num_generated = 0;          // over all samples
  int prefill_tokens_computed = 0;
  int cached_tokens = -1;         // prefix-cache hit at first admission (-1: not yet known)
  int num_preemptions = 0;
  absl::Status error;             // why the request failed, for kError events
  int num_finished() const {
    int k = 0;
    for (bool f : finished) k += f;
    return k;
  }
};

}  // namespace tokenmill

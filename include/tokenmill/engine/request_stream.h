// The per-request output channel: the engine thread pushes TokenEvents, one consumer
// (a front-end thread or the CLI) pops them. Unbounded (a request's events are bounded by
// its max_tokens), thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "tokenmill/engine/request.h"

namespace tokenmill {

class RequestStream {
 public:
  RequestStream(std::string request_id, int num_sequences)
      : request_id_(std::move(request_id)), num_open_sequences_(num_sequences) {}

  const std::string& request_id() const { return request_id_; }

  // Waits up to `timeout_s` for the next event. Returns false on timeout or once every
  // event has been consumed after the last sequence finished.
  bool Next(TokenEvent* event, double timeout_s = 1e9);
  // True once the final event has been pushed (it may not be consumed yet).
  bool IsClosed() const;
  // Calls `fn` (on the engine thread, without the lock) whenever events arrive; for async
  // front ends. Set before submitting.
  void SetNotify(std::function<void()> fn) { notify_ = std::move(fn); }

  // Engine side. Requires: not closed.
  void Push(TokenEvent event);

 private:
  const std::string request_id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_ ABSL_GUARDED_BY(mu_);
  int num_open_sequences_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> notify_;
};

}  // namespace tokenmill

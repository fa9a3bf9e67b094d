#include "tokenmill/engine/request_stream.h"

#include <chrono>

#include "tokenmill/core/status.h"

namespace tokenmill {

bool RequestStream::Next(TokenEvent* event, double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto ready = [&] { return !events_.empty() || closed_; };
  if (timeout_s >= 1e8) {
    cv_.wait(lock, ready);
  } else if (!cv_.wait_for(lock, std::chrono::duration<double>(timeout_s), ready)) {
    return false;
  }
  if (events_.empty()) return false;  // closed and drained
  *event = std::move(events_.front());
  events_.pop_front();
  return true;
}

bool RequestStream::IsClosed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void RequestStream::Push(TokenEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    TM_CHECK(!closed_, "event pushed on closed stream ", request_id_);
    if (event.finished && --num_open_sequences_ <= 0) closed_ = true;
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
  if (notify_) notify_();
}

}  // namespace tokenmill

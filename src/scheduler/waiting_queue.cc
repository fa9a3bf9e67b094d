#include "tokenmill/scheduler/waiting_queue.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenmill/core/status.h"

namespace tokenmill {

double WaitingQueue::Weight(const std::string& tenant) const {
  const auto it = options_.tenant_weights.find(tenant);
  return it == options_.tenant_weights.end() ? options_.default_tenant_weight : it->second;
}

void WaitingQueue::Push(Sequence* seq) {
  Class& c = classes_[seq->priority()];
  auto [it, inserted] = c.tenants.try_emplace(seq->tenant());
  Tenant& t = it->second;
  if (inserted) t.weight = Weight(seq->tenant());
  if (t.fifo.empty()) {
    // A tenant that (re)joins waits for the end of the current round: it goes just before
    // whoever's turn it is, and starts without credit.
    c.ring.insert(c.ring.begin() + static_cast<std::ptrdiff_t>(c.cursor), &t);
    if (c.ring.size() > 1) ++c.cursor;
    t.deficit = 0;
    t.is_credited = false;
  }
  t.fifo.push_back(seq);
  ++c.size;
  ++size_;
}

void WaitingQueue::PushPreempted(Sequence* seq) {
  Class& c = classes_[seq->priority()];
  const auto later = [seq](const Sequence* other) {
    return std::tie(other->arrival_order, other->sample_index) >
           std::tie(seq->arrival_order, seq->sample_index);
  };
  c.preempted.insert(std::find_if(c.preempted.begin(), c.preempted.end(), later), seq);
  ++c.size;
  ++size_;
}

WaitingQueue::Class* WaitingQueue::PickClass(double now_s) {
  if (classes_.empty()) return nullptr;
  if (options_.aging_s <= 0) return &classes_.begin()->second;
  Class* best = nullptr;
  double best_priority = std::numeric_limits<double>::infinity();
  for (auto& [priority, c] : classes_) {
    double oldest_s = std::numeric_limits<double>::infinity();
    if (!c.preempted.empty()) oldest_s = c.preempted.front()->arrival_s;
    for (const Tenant* t : c.ring) oldest_s = std::min(oldest_s, t->fifo.front()->arrival_s);
    const double waited_s = std::max(0.0, now_s - oldest_s);
    const double effective = priority - std::floor(waited_s / options_.aging_s);
    // Strictly better only: on a tie the more urgent nominal class (visited first) keeps it.
    if (effective < best_priority) {
      best_priority = effective;
      best = &c;
    }
  }
  return best;
}

Sequence* WaitingQueue::Peek(double now_s) {
  Class* c = PickClass(now_s);
  if (c == nullptr) return nullptr;
  if (!c->preempted.empty()) return c->preempted.front();
  return PeekFairShare(*c);
}

Sequence* WaitingQueue::PeekFairShare(Class& c) {
  TM_CHECK(!c.ring.empty(), "non-empty class without active tenants");
  const double quantum = options_.quantum_tokens;
  size_t misses = 0;
  while (true) {
    Tenant* t = c.ring[c.cursor];
    if (!t->is_credited) {
      t->deficit += quantum * t->weight;
      t->is_credited = true;
    }
    Sequence* head = t->fifo.front();
    if (Cost(head) <= t->deficit) return head;
    t->is_credited = false;
    c.cursor = (c.cursor + 1) % c.ring.size();
    if (++misses < c.ring.size()) continue;
    // A whole round admitted nothing (requests much larger than a quantum): credit at once
    // the rounds in which still nobody could admit. Same winner as going round by round.
    double rounds = std::numeric_limits<double>::infinity();
    for (const Tenant* u : c.ring) {
      rounds =
          std::min(rounds, std::ceil((Cost(u->fifo.front()) - u->deficit) / (quantum * u->weight)));
    }
    if (rounds > 1) {
      for (Tenant* u : c.ring) u->deficit += (rounds - 1) * quantum * u->weight;
    }
    misses = 0;
  }
}

void WaitingQueue::Pop(Sequence* seq) {
  const auto it = classes_.find(seq->priority());
  TM_CHECK(it != classes_.end(), "Pop of a sequence that is not waiting");
  Class& c = it->second;
  if (!c.preempted.empty() && c.preempted.front() == seq) {
    c.preempted.pop_front();
  } else {
    const auto t = c.tenants.find(seq->tenant());
    TM_CHECK(t != c.tenants.end() && !t->second.fifo.empty() && t->second.fifo.front() == seq,
             "Pop of sequence ", seq->id, " which is not at the head of its queue");
    Tenant& tenant = t->second;
    tenant.deficit -= Cost(seq);
    tenant.fifo.pop_front();
    if (tenant.fifo.empty()) Deactivate(c, &tenant);
  }
  --size_;
  if (--c.size == 0) classes_.erase(it);
}

bool WaitingQueue::Remove(Sequence* seq) {
  const auto it = classes_.find(seq->priority());
  if (it == classes_.end()) return false;
  Class& c = it->second;
  auto p = std::find(c.preempted.begin(), c.preempted.end(), seq);
  if (p != c.preempted.end()) {
    c.preempted.erase(p);
  } else {
    const auto t = c.tenants.find(seq->tenant());
    if (t == c.tenants.end()) return false;
    std::deque<Sequence*>& fifo = t->second.fifo;
    auto f = std::find(fifo.begin(), fifo.end(), seq);
    if (f == fifo.end()) return false;
    fifo.erase(f);
    if (fifo.empty()) Deactivate(c, &t->second);
  }
  --size_;
  if (--c.size == 0) classes_.erase(it);
  return true;
}

void WaitingQueue::Deactivate(Class& c, Tenant* tenant) {
  const auto pos = std::find(c.ring.begin(), c.ring.end(), tenant);
  TM_CHECK(pos != c.ring.end(), "tenant missing from the round-robin ring");
  const size_t index = static_cast<size_t>(pos - c.ring.begin());
  c.ring.erase(pos);
  if (index < c.cursor) --c.cursor;
  if (c.cursor >= c.ring.size()) c.cursor = 0;
  // DRR: an idle tenant does not bank credit for later.
  tenant->deficit = 0;
  tenant->is_credited = false;
}

}  // namespace tokenmill

// WaitingQueue: the admission order of waiting sequences.
//
//   1. Priority class: the most urgent (lowest number) non-empty class goes first. With
//      aging on, a class's effective priority improves by one level per `aging_s` seconds
//      its oldest member has waited, so no class starves (ties go to the nominal priority).
//   2. Inside a class, preempted sequences come first (they hold progress and their blocks
//      are likely still cached), oldest arrival first.
//   3. Then tenants share by weighted deficit round robin: a tenant's turn adds
//      quantum_tokens * weight of credit; it admits its head request while the credit
//      covers the request's cost (its token count). An emptied tenant forfeits its credit.
//   4. Inside a tenant: first come, first served.
//
// Peek() is repeatable: it may credit the tenant whose turn it is, but returns the same
// sequence until Pop() or a Push/Remove changes the queue. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "tokenmill/scheduler/sequence.h"

namespace tokenmill {

class WaitingQueue {
 public:
  struct Options {
    int quantum_tokens = 512;
    double aging_s = 0;  // 0: strict priority
    absl::flat_hash_map<std::string, double> tenant_weights = {};
    double default_tenant_weight = 1.0;
  };

  explicit WaitingQueue(Options options) : options_(std::move(options)) {}

  // A new arrival: back of its tenant's FIFO in its priority class.
  void Push(Sequence* seq);
  // A preempted sequence: ahead of every new arrival of its class, by arrival order.
  void PushPreempted(Sequence* seq);
  // The sequence to admit next at time `now_s`, or nullptr when empty.
  Sequence* Peek(double now_s);
  // Removes `seq` after admission, charging its cost to its tenant.
  // Requires: seq was returned by the last Peek().
  void Pop(Sequence* seq);
  // Removes `seq` wherever it is, without charge (abort). False if it is not queued.
  bool Remove(Sequence* seq);

  int size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Tenant {
    double weight = 1.0;
    std::deque<Sequence*> fifo;
    double deficit = 0;
    bool is_credited = false;  // got this turn's quantum already
  };
  struct Class {
    std::deque<Sequence*> preempted;
    absl::node_hash_map<std::string, Tenant> tenants;  // stable addresses for `ring`
    std::vector<Tenant*> ring;  // tenants with waiting requests, in turn order
    size_t cursor = 0;          // whose turn it is
    int size = 0;
  };

  static int Cost(const Sequence* seq) { return seq->num_tokens(); }
  Class* PickClass(double now_s);
  Sequence* PeekFairShare(Class& c);
  void Deactivate(Class& c, Tenant* tenant);
  double Weight(const std::string& tenant) const;

  Options options_;
  std::map<int, Class> classes_;  // by priority, most urgent first
  int size_ = 0;
};

}  // namespace tokenmill

#include "tokenmill/scheduler/waiting_queue.h"

#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenmill {
namespace {

using ::testing::ElementsAre;

class WaitingQueueTest : public ::testing::Test {
 protected:
  // A waiting sequence of `num_tokens` prompt tokens, arriving now.
  Sequence* Add(const std::string& tenant, int num_tokens, int priority = 0) {
    auto spec = std::make_unique<RequestSpec>();
    spec->tenant = tenant;
    spec->priority = priority;
    auto seq = std::make_unique<Sequence>();
    seq->id = static_cast<SeqId>(seqs_.size());
    seq->spec = spec.get();
    seq->token_ids.assign(num_tokens, 1);
    seq->arrival_order = seqs_.size();
    seq->arrival_s = now_s_;
    specs_.push_back(std::move(spec));
    seqs_.push_back(std::move(seq));
    return seqs_.back().get();
  }

  // Pops everything, returning ids in admission order.
  std::vector<SeqId> Drain(WaitingQueue& q) {
    std::vector<SeqId> order;
    while (Sequence* s = q.Peek(now_s_)) {
      EXPECT_EQ(q.Peek(now_s_), s) << "Peek must be repeatable";
      q.Pop(s);
      order.push_back(s->id);
    }
    EXPECT_TRUE(q.empty());
    return order;
  }

  double now_s_ = 0;
  std::vector<std::unique_ptr<RequestSpec>> specs_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
};

TEST_F(WaitingQueueTest, PreemptedSequencesGoFirstOldestArrivalFirst) {
  WaitingQueue q({.quantum_tokens = 4});
  Sequence* a = Add("t", 4);
  Sequence* b = Add("t", 4);
  Sequence* c = Add("t", 4);
  q.Push(c);
  q.PushPreempted(b);
  q.PushPreempted(a);
  EXPECT_THAT(Drain(q), ElementsAre(a->id, b->id, c->id));
}

TEST_F(WaitingQueueTest, MoreUrgentClassFirstUnlessAged) {
  WaitingQueue q({.quantum_tokens = 4, .aging_s = 10});
  Sequence* old_low = Add("t", 4, /*priority=*/2);
  now_s_ = 25;  // old_low has waited 2.5 agings: effective priority 0, ties with class 0
  Sequence* urgent = Add("t", 4, 0);
  q.Push(old_low);
  q.Push(urgent);
  EXPECT_EQ(q.Peek(now_s_), urgent);  // tie: nominal priority decides
  now_s_ = 30;                        // effective -1
  EXPECT_EQ(q.Peek(now_s_), old_low);
}

TEST_F(WaitingQueueTest, RemoveTakesASequenceOutAndIdleTenantsLoseCredit) {
  WaitingQueue q({.quantum_tokens = 10});
  Sequence* a1 = Add("a", 4);
  Sequence* a2 = Add("a", 4);
  Sequence* b1 = Add("b", 4);
  q.Push(a1);
  q.Push(a2);
  q.Push(b1);
  EXPECT_TRUE(q.Remove(a2));
  EXPECT_FALSE(q.Remove(a2));
  EXPECT_EQ(q.size(), 2);
  EXPECT_THAT(Drain(q), ElementsAre(a1->id, b1->id));
}

TEST_F(WaitingQueueTest, ANewTenantWaitsForTheEndOfTheRound) {
  WaitingQueue q({.quantum_tokens = 8});
  std::vector<Sequence*> a = {Add("a", 4), Add("a", 4), Add("a", 4)};
  for (Sequence* s : a) q.Push(s);
  Sequence* first = q.Peek(now_s_);
  q.Pop(first);  // a's turn: credit 8, one admitted, one more to go this turn
  Sequence* b = Add("b", 4);
  q.Push(b);
  EXPECT_THAT(Drain(q), ElementsAre(a[1]->id, b->id, a[2]->id));
}

// Reference DRR, round by round (Shreedhar & Varghese), to check the skip-ahead.
std::vector<SeqId> ReferenceOrder(std::vector<std::deque<Sequence*>> queues,
                                  const std::vector<double>& weights, double quantum) {
  std::vector<SeqId> order;
  std::vector<double> deficit(queues.size(), 0);
  size_t remaining = 0;
  for (const auto& q : queues) remaining += q.size();
  while (remaining > 0) {
    for (size_t t = 0; t < queues.size(); ++t) {
      if (queues[t].empty()) continue;
      deficit[t] += quantum * weights[t];
      while (!queues[t].empty() && queues[t].front()->num_tokens() <= deficit[t]) {
        deficit[t] -= queues[t].front()->num_tokens();
        order.push_back(queues[t].front()->id);
        queues[t].pop_front();
        --remaining;
      }
      if (queues[t].empty()) deficit[t] = 0;
    }
  }
  return order;
}

TEST_F(WaitingQueueTest, MatchesRoundByRoundDeficitRoundRobin) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    const int num_tenants = 1 + static_cast<int>(rng() % 4);
    std::vector<double> weights;
    WaitingQueue::Options options{.quantum_tokens = 7};
    std::vector<std::deque<Sequence*>> queues(num_tenants);
    for (int t = 0; t < num_tenants; ++t) {
      weights.push_back(0.5 + (rng() % 4));
      options.tenant_weights[std::to_string(t)] = weights.back();
    }
    WaitingQueue q(options);
    for (int i = 0; i < 40; ++i) {
      const int t = static_cast<int>(rng() % num_tenants);
      const int cost = 1 + static_cast<int>(rng() % (rng() % 2 ? 20 : 3000));
      queues[t].push_back(Add(std::to_string(t), cost));
    }
    std::vector<int> join_order;
    for (int t = 0; t < num_tenants; ++t) {
      if (!queues[t].empty()) join_order.push_back(t);
    }
    for (const int t : join_order) {
      for (Sequence* s : queues[t]) q.Push(s);
    }
    // Each joiner goes to the end of the current round, so turns follow join order.
    std::vector<std::deque<Sequence*>> ordered;
    std::vector<double> ordered_weights;
    for (const int t : join_order) {
      ordered.push_back(queues[t]);
      ordered_weights.push_back(weights[t]);
    }
    EXPECT_EQ(Drain(q), ReferenceOrder(ordered, ordered_weights, 7)) << "trial " << trial;
  }
}

}  // namespace
}  // namespace tokenmill

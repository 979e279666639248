// Scheduler implementation (see scheduler.h).
#include "engine/scheduler.h"

#include <algorithm>

namespace deltaserve {

void Scheduler::Plan(const SchedulerInput& in, SchedulerPlan* plan) {
  plan->Clear();
  const size_t n_run = in.running.size();
  preempted_.assign(n_run, 0);

  // 1. Preemption.
  for (size_t i = 0; i < n_run; ++i) {
    if (in.running[i].force_preempt) {
      preempted_[i] = 1;
      plan->preempt.push_back(in.running[i].key);
    }
  }
  int free = in.free_slots + static_cast<int>(plan->preempt.size());
  if (config_.enable_swap && !in.waiting.empty()) {
    int starving = 0;
    for (const SchedRequest& w : in.waiting) {
      if (w.waited_steps >= config_.preempt_after_steps) ++starving;
    }
    int need = starving - free;
    need = std::min(need, config_.max_swapped - in.swapped - static_cast<int>(plan->preempt.size()));
    if (need > 0) {
      order_.clear();
      for (size_t i = 0; i < n_run; ++i) {
        const SchedRequest& r = in.running[i];
        if (!preempted_[i] && r.resident_steps >= config_.preempt_after_steps) {
          order_.push_back(&r);
        }
      }
      const size_t take = std::min<size_t>(static_cast<size_t>(need), order_.size());
      std::partial_sort(order_.begin(), order_.begin() + take, order_.end(),
                        [](const SchedRequest* a, const SchedRequest* b) {
                          if (a->remaining_work != b->remaining_work) {
                            return a->remaining_work > b->remaining_work;
                          }
                          return a->arrival > b->arrival;
                        });
      for (size_t t = 0; t < take; ++t) {
        const size_t idx = static_cast<size_t>(order_[t] - in.running.data());
        preempted_[idx] = 1;
        plan->preempt.push_back(order_[t]->key);
      }
      free += static_cast<int>(take);
    }
  }

  // 2. Admission.
  const size_t n_admit = std::min<size_t>(static_cast<size_t>(std::max(free, 0)), in.waiting.size());
  for (size_t i = 0; i < n_admit; ++i) plan->admit.push_back(in.waiting[i].key);

  // 3. The batch. Candidates: running (not preempted), then admitted.
  const int64_t max_seqs = config_.max_batch_sequences;
  int64_t budget = config_.max_step_tokens;
  auto candidate = [&](size_t i) -> const SchedRequest* {
    if (i < n_run) return preempted_[i] ? nullptr : &in.running[i];
    return &in.waiting[i - n_run];
  };
  const size_t n_cand = n_run + n_admit;

  int64_t decodes = 0;
  for (size_t i = 0; i < n_cand; ++i) {
    const SchedRequest* r = candidate(i);
    if (r != nullptr && r->prompt_remaining == 0) ++decodes;
  }
  // While a prefill is pending, one seat and up to one chunk (at most half the budget) stay
  // free for the oldest one, so admitted requests always make progress.
  const SchedRequest* oldest_prefill = nullptr;
  for (size_t i = 0; i < n_cand; ++i) {
    const SchedRequest* r = candidate(i);
    if (r != nullptr && r->prompt_remaining > 0 &&
        (oldest_prefill == nullptr || r->arrival < oldest_prefill->arrival)) {
      oldest_prefill = r;
    }
  }
  int64_t reserve_seqs = 0;
  int64_t reserve_tokens = 0;
  if (oldest_prefill != nullptr && max_seqs > 1) {
    reserve_seqs = 1;
    reserve_tokens = std::min({oldest_prefill->prompt_remaining, config_.prefill_chunk, budget / 2});
  }
  const int64_t decode_cap =
      std::max<int64_t>(0, std::min(max_seqs - reserve_seqs, budget - reserve_tokens));
  if (decodes <= decode_cap) {
    for (size_t i = 0; i < n_cand; ++i) {
      const SchedRequest* r = candidate(i);
      if (r != nullptr && r->prompt_remaining == 0) plan->batch.push_back({r->key, 1, true});
    }
  } else {
    // Too many decodes: those scheduled least recently win; the batch keeps candidate order.
    idx_.clear();
    for (size_t i = 0; i < n_cand; ++i) {
      const SchedRequest* r = candidate(i);
      if (r != nullptr && r->prompt_remaining == 0) idx_.push_back(i);
    }
    std::partial_sort(idx_.begin(), idx_.begin() + decode_cap, idx_.end(),
                      [&](size_t a, size_t b) {
                        const SchedRequest* ra = candidate(a);
                        const SchedRequest* rb = candidate(b);
                        if (ra->last_scheduled != rb->last_scheduled) {
                          return ra->last_scheduled < rb->last_scheduled;
                        }
                        if (ra->arrival != rb->arrival) return ra->arrival < rb->arrival;
                        return a < b;
                      });
    idx_.resize(decode_cap);
    std::sort(idx_.begin(), idx_.end());
    for (size_t i : idx_) plan->batch.push_back({candidate(i)->key, 1, true});
  }
  budget -= static_cast<int64_t>(plan->batch.size());

  // Prefill chunks, FCFS by arrival.
  order_.clear();
  for (size_t i = 0; i < n_cand; ++i) {
    const SchedRequest* r = candidate(i);
    if (r != nullptr && r->prompt_remaining > 0) order_.push_back(r);
  }
  std::stable_sort(order_.begin(), order_.end(), [](const SchedRequest* a, const SchedRequest* b) {
    return a->arrival < b->arrival;
  });
  for (const SchedRequest* r : order_) {
    if (budget <= 0 || static_cast<int64_t>(plan->batch.size()) >= max_seqs) break;
    const int64_t chunk = std::min({r->prompt_remaining, config_.prefill_chunk, budget});
    plan->batch.push_back({r->key, chunk, chunk == r->prompt_remaining});
    budget -= chunk;
  }
  for (const ScheduledSeq& s : plan->batch) plan->num_tokens += s.num_tokens;
}

}  // namespace deltaserve

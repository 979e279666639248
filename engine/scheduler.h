// Scheduler: the engine's step policy, pure and table-testable. Given the requests holding a slot
// (running), those waiting for one (new or swapped out), and the number of free slots, it plans
// one iteration; the engine then commits the plan (swap-outs, slot acquisitions, one model step).
//
// Policy, in order:
//  1. Preemption. Running requests marked force_preempt are swapped out. Further, when swapping
//     is enabled, every waiting request that has waited >= preempt_after_steps iterations and
//     would not get one of the free slots claims a victim: among running requests that have held
//     their slot for >= preempt_after_steps iterations, the one with the most remaining work
//     (ties: the newest arrival). At most max_swapped requests are swapped out at once.
//  2. Admission, first-come-first-served: the first (free slots + preempted) waiting requests, in
//     the given order (the engine orders them by arrival, so a swapped-out request resumes ahead
//     of requests that arrived after it). A request preempted in this plan is not re-admitted.
//  3. The step batch, under max_step_tokens and max_batch_sequences: first every decoding request
//     (one token each, sampled); when they exceed the limits, those scheduled least recently win
//     (ties: earlier arrival). While a prefill is pending, decodes leave one seat and
//     min(its prompt left, prefill_chunk, budget / 2) tokens for the oldest prefill, so prompts
//     always advance. Then prefill chunks of min(prompt left, prefill_chunk, budget left) tokens,
//     FCFS, while budget and batch room last; a chunk that finishes its prompt samples the first
//     generated token.
//
// Thread-safety: a Scheduler holds only scratch buffers; one caller at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace deltaserve {

struct SchedulerConfig {
  int64_t max_step_tokens = 2048;
  int64_t prefill_chunk = 512;
  int max_batch_sequences = 256;
  bool enable_swap = true;
  int64_t preempt_after_steps = 256;
  int max_swapped = 64;
};

// One request as the scheduler sees it.
struct SchedRequest {
  int64_t key = 0;               // the caller's handle, echoed in the plan
  int64_t arrival = 0;           // submission order
  int64_t prompt_remaining = 0;  // prompt tokens not yet fed; 0: decoding
  int64_t remaining_work = 0;    // prompt_remaining + tokens it may still generate
  int64_t resident_steps = 0;    // running: iterations since it got its current slot
  int64_t waited_steps = 0;      // waiting: iterations since it (re)entered the queue
  int64_t last_scheduled = -1;   // iteration it was last in a step (-1: never)
  bool swapped = false;          // waiting: resumes from a swap-out copy
  bool force_preempt = false;    // running: swap out in this iteration
};

struct SchedulerInput {
  std::span<const SchedRequest> running;  // holding a slot
  std::span<const SchedRequest> waiting;  // in admission order (arrival)
  int free_slots = 0;
  int swapped = 0;  // requests currently swapped out
};

struct ScheduledSeq {
  int64_t key = 0;
  int64_t num_tokens = 0;  // 1 for a decode; a chunk for a prefill
  bool sample = false;
  bool operator==(const ScheduledSeq&) const = default;
};

struct SchedulerPlan {
  std::vector<int64_t> preempt;      // running keys to swap out (before admissions)
  std::vector<int64_t> admit;        // waiting keys that get a slot, in order
  std::vector<ScheduledSeq> batch;   // this iteration's step: decodes, then prefill chunks
  int64_t num_tokens = 0;            // tokens in `batch`
  void Clear() {
    preempt.clear();
    admit.clear();
    batch.clear();
    num_tokens = 0;
  }
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerConfig& config) : config_(config) {}
  const SchedulerConfig& config() const { return config_; }

  // Fills `plan` (cleared first) for one iteration; see the file comment. Deterministic.
  void Plan(const SchedulerInput& input, SchedulerPlan* plan);

 private:
  SchedulerConfig config_;
  // Scratch, reused across calls.
  std::vector<uint8_t> preempted_;
  std::vector<const SchedRequest*> order_;
  std::vector<size_t> idx_;
};

}  // namespace deltaserve

// EngineImpl: the Engine behind Engine::Create. One engine thread owns the runner, the slot
// allocator, the swap store, the scheduler and every admitted request; clients touch only the
// inbox, the id registry and their EventStream, under mu_.
//
// One iteration of the engine thread:
//   take new requests, cancels and rejections from the inbox (one lock);
//   finish cancelled / expired requests (their slots are released now);
//   plan (Scheduler) and commit: swap-outs, slot acquisitions (reset, or restore a swap copy);
//   one ModelRunner::Step over the planned batch;
//   per sampled token: stop checks, incremental detokenization, stop-string matching;
//   hand each request's delta to its stream (one lock per request per step), finish requests.
// Everything per iteration is O(batch + waiting) with reused buffers.
//
// Invariants (engine thread): a request is in exactly one of waiting_ (new or swapped out, in
// arrival order) or running_ (holding a slot); a finished request holds no slot, no swap entry,
// and has pushed exactly one terminal event.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "engine/engine.h"
#include "engine/event_stream.h"
#include "engine/scheduler.h"
#include "engine/slot_allocator.h"
#include "engine/swap_store.h"
#include "engine/text_streamer.h"

namespace deltaserve {

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineConfig& config, std::unique_ptr<ModelRunner> runner,
             std::shared_ptr<const Tokenizer> tokenizer, std::shared_ptr<EngineObserver> observer);
  ~EngineImpl() override;

  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerationRequest request) override;
  void Cancel(const std::string& request_id) override;
  void StopAdmitting() override;
  int InFlight() const override { return in_flight_.load(std::memory_order_acquire); }
  EngineStats Stats() const override;
  void Shutdown() override;
  const ModelConfig& model_config() const override { return runner_->config(); }
  const Tokenizer& tokenizer() const override { return *tokenizer_; }

  // Swaps `request_id` out at the next iteration if it then holds a slot (tests, operators).
  // It resumes like any preempted request. Unknown or finished ids are ignored.
  void ForcePreempt(const std::string& request_id);

 private:
  struct Sequence;

  void Start();
  void Loop();
  // Engine-thread steps of one iteration.
  void TakeInbox() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReapCancelledAndExpired(Clock::time_point now);
  void PlanAndCommit(Clock::time_point now);
  bool RunStep(Clock::time_point* after);
  void HandleToken(Sequence& seq, SampledToken& sampled, Clock::time_point now);
  void Finish(Sequence& seq, FinishReason reason, absl::Status status, Clock::time_point now);
  void Deliver();
  void PublishStats();
  void FinishAllForShutdown();

  const EngineConfig config_;
  std::unique_ptr<ModelRunner> runner_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::shared_ptr<EngineObserver> observer_;
  int32_t eos_id_ = -1;
  int vocab_size_ = 0;

  // Client-facing state.
  // std::mutex rather than absl::Mutex: ThreadSanitizer sees through it without an instrumented
  // Abseil build.
  mutable std::mutex mu_;
  std::condition_variable cv_;  // wakes an idle engine thread
  bool sleeping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Sequence>> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, absl::Status>> rejected_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<EventStream>> active_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> force_preempt_ ABSL_GUARDED_BY(mu_);
  bool admitting_ ABSL_GUARDED_BY(mu_) = true;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // something for an idle engine thread to look at
  int64_t next_arrival_ ABSL_GUARDED_BY(mu_) = 0;
  // Admission control (Submit): a consistent snapshot of the engine thread's state, taken under
  // mu_ once per iteration: requests taken from the inbox but never admitted, and free slots.
  // Submit accepts while inbox + queued_published_ < max_waiting + free_published_.
  int queued_published_ ABSL_GUARDED_BY(mu_) = 0;
  int free_published_ ABSL_GUARDED_BY(mu_) = 0;
  std::mutex join_mu_;  // serialises Shutdown callers
  std::thread thread_;

  // Published by the engine thread.
  std::atomic<int> in_flight_{0};
  std::atomic<int> slots_used_{0};
  std::atomic<int> running_count_{0};
  std::atomic<int> waiting_count_{0};
  std::atomic<int> swapped_count_{0};
  std::atomic<int64_t> swap_outs_total_{0};
  std::atomic<int64_t> steps_total_{0};

  // Engine-thread state.
  SlotAllocator slots_;
  SwapStore swap_;
  Scheduler scheduler_;
  int64_t iteration_ = 0;
  int queued_local_ = 0;  // taken from the inbox, never admitted, not finished
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> new_arrivals_;
  std::vector<std::pair<std::string, absl::Status>> rejected_local_;
  std::vector<std::string> force_local_;
  // Per-iteration scratch.
  std::vector<SchedRequest> sched_running_;
  std::vector<SchedRequest> sched_waiting_;
  std::vector<Sequence*> by_key_;
  SchedulerPlan plan_;
  StepBatch batch_;
  std::vector<Sequence*> batch_seqs_;
  std::vector<SampledToken> sampled_;
  std::vector<Sequence*> touched_;   // requests with a delta or terminal to deliver
  std::vector<std::string> finished_ids_;
  StepReport report_;
};

}  // namespace deltaserve

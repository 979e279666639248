// EngineImpl (see engine_impl.h) and Engine::Create.
#include "engine/engine_impl.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace deltaserve {

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

SchedulerConfig MakeSchedulerConfig(const EngineConfig& c, const ModelRunner& runner) {
  SchedulerConfig s;
  s.max_step_tokens = std::min(c.max_step_tokens, runner.max_step_tokens());
  s.prefill_chunk = c.prefill_chunk;
  s.max_batch_sequences = c.max_batch_sequences;
  s.enable_swap = c.enable_swap;
  s.preempt_after_steps = c.preempt_after_steps;
  s.max_swapped = c.enable_swap ? c.max_swapped : 0;
  return s;
}

}  // namespace

// One request, owned by the engine thread once taken from the inbox.
struct EngineImpl::Sequence {
  std::string id;
  int64_t arrival = 0;
  SamplingParams sampling;
  StoppingParams stopping;
  std::optional<Clock::time_point> deadline;
  std::shared_ptr<EventStream> stream;
  int64_t max_total = 0;  // prompt + generated cap

  SamplerState sampler;   // prompt_tokens holds the prompt; generated_tokens the output
  TextStreamer text;
  bool want_logprobs = false;

  int slot = -1;
  int swap_handle = -1;
  bool admitted_once = false;
  int64_t prompt_fed = 0;
  int32_t last_token = -1;  // sampled, not yet fed
  int64_t since_iteration = 0;     // when it entered running_ or waiting_
  int64_t last_scheduled = -1;
  bool force_preempt = false;
  bool done = false;

  Clock::time_point submit_time;
  Clock::time_point admit_time;
  Clock::time_point first_token_time;
  Clock::time_point last_token_time;

  RequestEvent delta;     // tokens of this iteration, not yet delivered
  RequestEvent terminal;  // set when done, delivered after the delta
  bool pending_delivery = false;

  int64_t prompt_len() const { return static_cast<int64_t>(sampler.prompt_tokens.size()); }
  int64_t generated() const { return static_cast<int64_t>(sampler.generated_tokens.size()); }
};

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config,
                                                       std::unique_ptr<ModelRunner> runner,
                                                       std::shared_ptr<const Tokenizer> tokenizer,
                                                       std::shared_ptr<EngineObserver> observer) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (runner == nullptr) return absl::InvalidArgumentError("engine: no model runner");
  if (tokenizer == nullptr) return absl::InvalidArgumentError("engine: no tokenizer");
  if (runner->state().num_slots() < 1) {
    return absl::InvalidArgumentError("engine: the state pool has no slots");
  }
  if (runner->max_step_tokens() < 1) {
    return absl::InvalidArgumentError("engine: the runner's max_step_tokens must be >= 1");
  }
  auto engine = std::make_unique<EngineImpl>(config, std::move(runner), std::move(tokenizer),
                                             std::move(observer));
  return std::unique_ptr<Engine>(std::move(engine));
}

EngineImpl::EngineImpl(const EngineConfig& config, std::unique_ptr<ModelRunner> runner,
                       std::shared_ptr<const Tokenizer> tokenizer,
                       std::shared_ptr<EngineObserver> observer)
    : config_(config),
      runner_(std::move(runner)),
      tokenizer_(std::move(tokenizer)),
      observer_(std::move(observer)),
      slots_(&runner_->state()),
      swap_(runner_->state().bytes_per_slot(), config.enable_swap ? config.max_swapped : 0),
      scheduler_(MakeSchedulerConfig(config, *runner_)) {
  const ModelConfig& mc = runner_->config();
  eos_id_ = mc.eos_token_id >= 0 ? mc.eos_token_id : tokenizer_->eos_id();
  vocab_size_ = mc.vocab_size;
  free_published_ = slots_.slots_free();
  thread_ = std::thread([this] { Loop(); });
}

EngineImpl::~EngineImpl() { Shutdown(); }

absl::StatusOr<std::shared_ptr<RequestStream>> EngineImpl::Submit(GenerationRequest request) {
  // Validation needs no lock.
  absl::Status invalid;
  const ModelConfig& mc = runner_->config();
  const int64_t cap = request.stopping.max_total_tokens > 0
                          ? std::min(request.stopping.max_total_tokens, mc.max_context)
                          : mc.max_context;
  if (request.id.empty()) {
    invalid = absl::InvalidArgumentError("id: must be non-empty");
  } else if (request.prompt_tokens.empty()) {
    invalid = absl::InvalidArgumentError("prompt_tokens: must be non-empty");
  } else if (absl::Status s = request.sampling.Validate(); !s.ok()) {
    invalid = s;
  } else if (request.stopping.max_new_tokens < 1 ||
             request.stopping.max_new_tokens > config_.max_new_tokens_cap) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("stopping.max_new_tokens must be in [1, ", config_.max_new_tokens_cap,
                     "], got ", request.stopping.max_new_tokens));
  } else if (request.stopping.max_total_tokens < 0) {
    invalid = absl::InvalidArgumentError(absl::StrCat(
        "stopping.max_total_tokens must be >= 0, got ", request.stopping.max_total_tokens));
  } else if (static_cast<int64_t>(request.prompt_tokens.size()) >= cap) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("prompt_tokens: ", request.prompt_tokens.size(),
                     " tokens leave no room to generate under the total-length cap of ", cap));
  }
  if (invalid.ok()) {
    for (size_t i = 0; i < request.prompt_tokens.size(); ++i) {
      const int32_t t = request.prompt_tokens[i];
      if (t < 0 || t >= vocab_size_) {
        invalid = absl::InvalidArgumentError(absl::StrCat(
            "prompt_tokens[", i, "]: token id ", t, " is outside the vocabulary [0, ",
            vocab_size_, ")"));
        break;
      }
    }
  }
  if (invalid.ok()) {
    for (size_t i = 0; i < request.stopping.stop_token_ids.size(); ++i) {
      const int32_t t = request.stopping.stop_token_ids[i];
      if (t < 0 || t >= vocab_size_) {
        invalid = absl::InvalidArgumentError(absl::StrCat(
            "stopping.stop_token_ids[", i, "]: token id ", t, " is outside the vocabulary"));
        break;
      }
    }
    for (size_t i = 0; invalid.ok() && i < request.stopping.stop_strings.size(); ++i) {
      if (request.stopping.stop_strings[i].empty()) {
        invalid = absl::InvalidArgumentError(
            absl::StrCat("stopping.stop_strings[", i, "]: must be non-empty"));
      }
    }
  }

  auto seq = std::make_unique<Sequence>();
  std::shared_ptr<EventStream> stream;
  if (invalid.ok()) {
    seq->id = request.id;
    seq->sampling = request.sampling;
    seq->stopping = std::move(request.stopping);
    seq->deadline = request.deadline;
    seq->max_total = cap;
    seq->sampler.prompt_tokens = std::move(request.prompt_tokens);
    seq->sampler.generated_tokens.reserve(
        static_cast<size_t>(std::min<int64_t>(seq->stopping.max_new_tokens, 256)));
    seq->text = TextStreamer(seq->stopping.stop_strings);
    seq->want_logprobs = seq->sampling.logprobs || seq->sampling.top_logprobs > 0;
    seq->submit_time = Clock::now();
    stream = std::make_shared<EventStream>(request.id);
    seq->stream = stream;
  }

  std::unique_lock<std::mutex> lock(mu_);
  absl::Status status = invalid;
  if (status.ok()) {
    if (!admitting_ || shutdown_) {
      status = absl::UnavailableError("the engine is not admitting requests (draining or shut down)");
    } else if (active_.contains(request.id)) {
      status = absl::AlreadyExistsError(
          absl::StrCat("id: a request with id '", request.id, "' is already in flight"));
    } else if (static_cast<int>(inbox_.size()) + queued_published_ >=
               config_.max_waiting + free_published_) {
      status = absl::ResourceExhaustedError(absl::StrCat(
          "the waiting queue is full (", config_.max_waiting, " requests wait for a slot)"));
    }
  }
  if (!status.ok()) {
    if (observer_ != nullptr) {
      rejected_.emplace_back(request.id, status);
      WakeLocked();
    }
    return status;
  }
  seq->arrival = next_arrival_++;
  active_.emplace(seq->id, stream);
  inbox_.push_back(std::move(seq));
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  WakeLocked();
  return std::shared_ptr<RequestStream>(std::move(stream));
}

void EngineImpl::Cancel(const std::string& request_id) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = active_.find(request_id);
  if (it == active_.end()) return;
  it->second->MarkCancelled();
  WakeLocked();
}

void EngineImpl::ForcePreempt(const std::string& request_id) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!active_.contains(request_id)) return;
  force_preempt_.insert(request_id);
  WakeLocked();
}

void EngineImpl::StopAdmitting() {
  std::unique_lock<std::mutex> lock(mu_);
  admitting_ = false;
}

EngineStats EngineImpl::Stats() const {
  EngineStats s;
  s.slots_total = slots_.slots_total();
  s.slots_used = slots_used_.load(std::memory_order_relaxed);
  s.bytes_per_slot = slots_.bytes_per_slot();
  s.running_requests = running_count_.load(std::memory_order_relaxed);
  s.waiting_requests = waiting_count_.load(std::memory_order_relaxed);
  s.swapped_requests = swapped_count_.load(std::memory_order_relaxed);
  s.swap_outs_total = swap_outs_total_.load(std::memory_order_relaxed);
  s.steps_total = steps_total_.load(std::memory_order_relaxed);
  std::unique_lock<std::mutex> lock(mu_);
  s.admitting = admitting_ && !shutdown_;
  return s;
}

void EngineImpl::Shutdown() {
  std::lock_guard<std::mutex> join_lock(join_mu_);
  {
    std::unique_lock<std::mutex> lock(mu_);
    shutdown_ = true;
    admitting_ = false;
    WakeLocked();
  }
  if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------------------------------------
// Engine thread.

void EngineImpl::Loop() {
  for (;;) {
    bool shutdown = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (running_.empty() && waiting_.empty()) {
        sleeping_ = true;
        cv_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_; });
        sleeping_ = false;
      }
      wake_ = false;
      shutdown = shutdown_;
      TakeInbox();
    }
    const Clock::time_point start = Clock::now();
    if (observer_ != nullptr) {
      for (auto& [id, status] : rejected_local_) observer_->OnRequestRejected(id, status);
    }
    rejected_local_.clear();
    for (auto& seq : new_arrivals_) {
      seq->since_iteration = iteration_;
      waiting_.push_back(std::move(seq));
    }
    new_arrivals_.clear();
    if (shutdown) {
      FinishAllForShutdown();
      return;
    }

    ReapCancelledAndExpired(start);
    PlanAndCommit(start);
    PublishStats();
    Clock::time_point after_step = start;
    const bool stepped = RunStep(&after_step);
    Deliver();
    PublishStats();
    ++iteration_;
    if (stepped) {
      const Clock::time_point end = Clock::now();
      report_.engine_seconds = Seconds(end - start) - report_.runner_seconds;
      steps_total_.fetch_add(1, std::memory_order_relaxed);
      if (observer_ != nullptr) observer_->OnStep(report_);
    }
  }
}

void EngineImpl::WakeLocked() {
  wake_ = true;
  if (sleeping_) cv_.notify_one();
}

void EngineImpl::TakeInbox() {
  new_arrivals_.swap(inbox_);
  queued_local_ += static_cast<int>(new_arrivals_.size());
  queued_published_ = queued_local_;
  rejected_local_.swap(rejected_);
  if (!force_preempt_.empty()) {
    force_local_.assign(force_preempt_.begin(), force_preempt_.end());
    force_preempt_.clear();
  }
}

void EngineImpl::ReapCancelledAndExpired(Clock::time_point now) {
  auto check = [&](Sequence& seq) {
    if (seq.done) return;
    if (seq.stream->cancelled()) {
      Finish(seq, FinishReason::kCancelled, absl::OkStatus(), now);
    } else if (seq.deadline.has_value() && now >= *seq.deadline) {
      Finish(seq, FinishReason::kDeadline, absl::OkStatus(), now);
    }
  };
  for (auto& seq : running_) check(*seq);
  for (auto& seq : waiting_) check(*seq);
  if (!force_local_.empty()) {
    for (const std::string& id : force_local_) {
      for (auto& seq : running_) {
        if (seq->id == id && !seq->done) seq->force_preempt = true;
      }
    }
    force_local_.clear();
  }
}

void EngineImpl::PlanAndCommit(Clock::time_point now) {
  sched_running_.clear();
  sched_waiting_.clear();
  by_key_.clear();
  int swapped = 0;
  for (auto& p : running_) {
    Sequence& s = *p;
    if (s.done) continue;
    SchedRequest r;
    r.key = static_cast<int64_t>(by_key_.size());
    r.arrival = s.arrival;
    r.prompt_remaining = s.prompt_len() - s.prompt_fed;
    r.remaining_work = r.prompt_remaining + (s.stopping.max_new_tokens - s.generated());
    r.resident_steps = iteration_ - s.since_iteration;
    r.last_scheduled = s.last_scheduled;
    r.force_preempt = s.force_preempt;
    sched_running_.push_back(r);
    by_key_.push_back(&s);
  }
  for (auto& p : waiting_) {
    Sequence& s = *p;
    if (s.done) continue;
    SchedRequest r;
    r.key = static_cast<int64_t>(by_key_.size());
    r.arrival = s.arrival;
    r.prompt_remaining = s.prompt_len() - s.prompt_fed;
    r.remaining_work = r.prompt_remaining + (s.stopping.max_new_tokens - s.generated());
    r.waited_steps = iteration_ - s.since_iteration;
    r.last_scheduled = s.last_scheduled;
    r.swapped = s.swap_handle >= 0;
    swapped += r.swapped ? 1 : 0;
    sched_waiting_.push_back(r);
    by_key_.push_back(&s);
  }
  SchedulerInput in;
  in.running = sched_running_;
  in.waiting = sched_waiting_;
  in.free_slots = slots_.slots_free();
  in.swapped = swapped;
  scheduler_.Plan(in, &plan_);

  // Swap-outs: the slot goes to host memory; the request rejoins waiting_ in arrival order.
  bool moved = false;
  for (int64_t key : plan_.preempt) {
    Sequence& s = *by_key_[key];
    s.force_preempt = false;
    absl::StatusOr<int> handle = swap_.SwapOut(slots_.storage(), s.slot);
    if (!handle.ok()) {
      if (absl::IsResourceExhausted(handle.status())) continue;  // stays running
      Finish(s, FinishReason::kError,
             absl::InternalError(absl::StrCat("swap-out failed: ", handle.status().message())),
             now);
      continue;
    }
    s.swap_handle = *handle;
    slots_.Release(s.slot);
    s.slot = -1;
    s.since_iteration = iteration_ + 1;  // waiting from the next iteration on
    swap_outs_total_.fetch_add(1, std::memory_order_relaxed);
    moved = true;
  }
  // Admissions: a fresh slot (reset), or a slot restored from the swap copy.
  for (int64_t key : plan_.admit) {
    Sequence& s = *by_key_[key];
    if (s.done) continue;
    if (s.swap_handle >= 0) {
      absl::StatusOr<int> slot = slots_.AcquireForRestore();
      if (!slot.ok()) continue;  // a failed swap-out above kept a slot busy; retry next time
      absl::Status st = swap_.SwapIn(s.swap_handle, slots_.storage(), *slot);
      s.swap_handle = -1;
      s.slot = *slot;
      if (!st.ok()) {
        Finish(s, FinishReason::kError,
               absl::InternalError(absl::StrCat("swap-in failed: ", st.message())), now);
        continue;
      }
    } else {
      absl::StatusOr<int> slot = slots_.Acquire();
      if (!slot.ok()) {
        if (absl::IsResourceExhausted(slot.status())) continue;
        Finish(s, FinishReason::kError, slot.status(), now);
        continue;
      }
      s.slot = *slot;
    }
    s.since_iteration = iteration_;
    moved = true;
    if (!s.admitted_once) {
      s.admitted_once = true;
      s.admit_time = now;
      --queued_local_;
      if (observer_ != nullptr) observer_->OnRequestAdmitted(s.id, Seconds(now - s.submit_time));
    }
  }
  if (moved) {
    // Re-partition: holders of a slot to running_, the rest (swapped-out ones included) to
    // waiting_, which stays in arrival order.
    std::vector<std::unique_ptr<Sequence>> still_running;
    still_running.reserve(running_.size() + plan_.admit.size());
    std::vector<std::unique_ptr<Sequence>> swapped_out;
    for (auto& p : running_) {
      if (p->slot >= 0 || p->done) {
        still_running.push_back(std::move(p));
      } else {
        swapped_out.push_back(std::move(p));
      }
    }
    std::vector<std::unique_ptr<Sequence>> still_waiting;
    still_waiting.reserve(waiting_.size() + swapped_out.size());
    for (auto& p : waiting_) {
      if (p->slot >= 0) {
        still_running.push_back(std::move(p));
      } else {
        still_waiting.push_back(std::move(p));
      }
    }
    std::sort(swapped_out.begin(), swapped_out.end(),
              [](const auto& a, const auto& b) { return a->arrival < b->arrival; });
    running_.swap(still_running);
    waiting_.clear();
    std::merge(std::make_move_iterator(still_waiting.begin()),
               std::make_move_iterator(still_waiting.end()),
               std::make_move_iterator(swapped_out.begin()),
               std::make_move_iterator(swapped_out.end()), std::back_inserter(waiting_),
               [](const auto& a, const auto& b) { return a->arrival < b->arrival; });
  }
}

bool EngineImpl::RunStep(Clock::time_point* after) {
  batch_.seqs.clear();
  batch_seqs_.clear();
  report_ = StepReport();
  int64_t prompt_tokens = 0;
  int64_t samples = 0;
  for (const ScheduledSeq& p : plan_.batch) {
    Sequence& s = *by_key_[p.key];
    if (s.done || s.slot < 0) continue;
    SequenceStep step;
    step.slot = s.slot;
    const bool decoding = s.prompt_fed == s.prompt_len();
    if (decoding) {
      step.tokens = std::span<const int32_t>(&s.last_token, 1);
    } else {
      step.tokens = std::span<const int32_t>(s.sampler.prompt_tokens.data() + s.prompt_fed,
                                             static_cast<size_t>(p.num_tokens));
      prompt_tokens += p.num_tokens;
    }
    step.sample = p.sample;
    if (p.sample) {
      step.sampling = &s.sampling;
      step.sampler_state = &s.sampler;
      ++samples;
    }
    batch_.seqs.push_back(step);
    batch_seqs_.push_back(&s);
  }
  if (batch_.seqs.empty()) return false;

  report_.batch_size = static_cast<int>(batch_.seqs.size());
  report_.prompt_tokens = prompt_tokens;
  report_.generated_tokens = samples;
  const bool has_prefill = prompt_tokens > 0;
  bool has_decode = false;
  for (size_t i = 0; i < batch_.seqs.size(); ++i) {
    if (batch_seqs_[i]->prompt_fed == batch_seqs_[i]->prompt_len()) has_decode = true;
  }
  report_.phase = has_prefill ? (has_decode ? StepPhase::kMixed : StepPhase::kPrefill)
                              : StepPhase::kDecode;

  sampled_.clear();
  const Clock::time_point before = Clock::now();
  absl::Status status = runner_->Step(batch_, &sampled_);
  const Clock::time_point now = Clock::now();
  *after = now;
  report_.runner_seconds = Seconds(now - before);
  if (status.ok() && static_cast<int64_t>(sampled_.size()) != samples) {
    status = absl::InternalError(absl::StrCat("the model runner returned ", sampled_.size(),
                                              " sampled tokens for ", samples, " requests"));
  }
  if (!status.ok()) {
    const absl::Status err =
        absl::InternalError(absl::StrCat("model step failed: ", status.message()));
    for (Sequence* s : batch_seqs_) {
      if (s->slot >= 0) (void)slots_.storage().Reset(s->slot);
      Finish(*s, FinishReason::kError, err, now);
    }
    report_.generated_tokens = 0;
    return true;
  }
  size_t k = 0;
  for (size_t i = 0; i < batch_.seqs.size(); ++i) {
    Sequence& s = *batch_seqs_[i];
    const SequenceStep& step = batch_.seqs[i];
    s.last_scheduled = iteration_;
    if (s.prompt_fed < s.prompt_len()) s.prompt_fed += static_cast<int64_t>(step.tokens.size());
    if (step.sample) HandleToken(s, sampled_[k++], now);
  }
  return true;
}

void EngineImpl::HandleToken(Sequence& s, SampledToken& sampled, Clock::time_point now) {
  const int32_t t = sampled.token;
  s.sampler.generated_tokens.push_back(t);
  if (s.generated() == 1) {
    s.first_token_time = now;
  } else if (observer_ != nullptr) {
    observer_->OnInterTokenLatency(Seconds(now - s.last_token_time));
  }
  s.last_token_time = now;
  if (!s.pending_delivery) {
    s.pending_delivery = true;
    touched_.push_back(&s);
  }

  if (t < 0 || t >= vocab_size_) {
    Finish(s, FinishReason::kError,
           absl::InternalError(absl::StrCat("the model runner sampled token id ", t,
                                            " outside the vocabulary")),
           now);
    return;
  }
  if (t == eos_id_ && !s.stopping.ignore_eos) {
    Finish(s, FinishReason::kEos, absl::OkStatus(), now);
    return;
  }
  for (int32_t stop : s.stopping.stop_token_ids) {
    if (t == stop) {
      Finish(s, FinishReason::kStop, absl::OkStatus(), now);
      return;
    }
  }
  if (s.text.Append(tokenizer_->TokenBytes(t), &s.delta.text)) {
    Finish(s, FinishReason::kStop, absl::OkStatus(), now);
    return;
  }
  s.delta.tokens.push_back(t);
  if (s.want_logprobs) {
    TokenLogprob lp;
    lp.token = t;
    lp.logprob = sampled.logprob;
    lp.top = std::move(sampled.top_logprobs);
    s.delta.logprobs.push_back(std::move(lp));
  }
  if (s.generated() >= s.stopping.max_new_tokens || s.prompt_len() + s.generated() >= s.max_total) {
    Finish(s, FinishReason::kLength, absl::OkStatus(), now);
    return;
  }
  s.last_token = t;
}

void EngineImpl::Finish(Sequence& s, FinishReason reason, absl::Status status,
                        Clock::time_point now) {
  if (s.done) return;
  s.done = true;
  s.text.Flush(&s.delta.text);
  if (s.slot >= 0) {
    if (reason == FinishReason::kError) (void)slots_.storage().Reset(s.slot);
    slots_.Release(s.slot);
    s.slot = -1;
  }
  if (s.swap_handle >= 0) {
    swap_.Drop(s.swap_handle);
    s.swap_handle = -1;
  }
  if (!s.admitted_once) --queued_local_;

  RequestEvent& e = s.terminal;
  e.finished = true;
  e.finish_reason = reason;
  e.status = std::move(status);
  e.usage.prompt_tokens = s.prompt_len();
  e.usage.generated_tokens = s.generated();
  e.timings.queue_seconds = Seconds((s.admitted_once ? s.admit_time : now) - s.submit_time);
  e.timings.first_token_seconds =
      s.generated() > 0 ? Seconds(s.first_token_time - s.submit_time) : 0.0;
  e.timings.total_seconds = Seconds(now - s.submit_time);
  if (!s.pending_delivery) {
    s.pending_delivery = true;
    touched_.push_back(&s);
  }
  finished_ids_.push_back(s.id);
  if (observer_ != nullptr) {
    RequestReport r;
    r.id = s.id;
    r.finish_reason = reason;
    r.status = e.status;
    r.usage = e.usage;
    r.timings = e.timings;
    if (s.generated() > 1) {
      r.mean_inter_token_seconds =
          Seconds(s.last_token_time - s.first_token_time) / static_cast<double>(s.generated() - 1);
    }
    observer_->OnRequestFinished(r);
  }
}

void EngineImpl::Deliver() {
  // 1. Forget finished ids, so that an id can be reused once its terminal is out; publish the
  // admission-control snapshot (one lock per iteration).
  {
    std::unique_lock<std::mutex> lock(mu_);
    for (const std::string& id : finished_ids_) active_.erase(id);
    queued_published_ = queued_local_;
    free_published_ = slots_.slots_free();
  }
  finished_ids_.clear();
  // 2. Hand deltas and terminals to the streams.
  int finished = 0;
  for (Sequence* s : touched_) {
    s->pending_delivery = false;
    if (!s->delta.tokens.empty() || !s->delta.text.empty()) s->stream->PushDelta(s->delta);
    if (s->done) {
      s->stream->PushTerminal(std::move(s->terminal));
      ++finished;
    }
  }
  touched_.clear();
  if (finished > 0) in_flight_.fetch_sub(finished, std::memory_order_acq_rel);
  // 3. Drop finished requests.
  auto gone = [](const std::unique_ptr<Sequence>& p) { return p->done; };
  running_.erase(std::remove_if(running_.begin(), running_.end(), gone), running_.end());
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), gone), waiting_.end());
}

void EngineImpl::PublishStats() {
  int swapped = 0;
  for (const auto& p : waiting_) swapped += p->swap_handle >= 0 ? 1 : 0;
  slots_used_.store(slots_.slots_used(), std::memory_order_relaxed);
  running_count_.store(static_cast<int>(running_.size()), std::memory_order_relaxed);
  waiting_count_.store(static_cast<int>(waiting_.size()), std::memory_order_relaxed);
  swapped_count_.store(swapped, std::memory_order_relaxed);
}

void EngineImpl::FinishAllForShutdown() {
  const Clock::time_point now = Clock::now();
  for (;;) {
    for (auto& p : running_) Finish(*p, FinishReason::kCancelled, absl::OkStatus(), now);
    for (auto& p : waiting_) Finish(*p, FinishReason::kCancelled, absl::OkStatus(), now);
    Deliver();
    PublishStats();
    // Submits that raced with Shutdown were refused; the inbox was taken before this call.
    std::unique_lock<std::mutex> lock(mu_);
    if (inbox_.empty()) break;
    new_arrivals_.swap(inbox_);
    for (auto& seq : new_arrivals_) waiting_.push_back(std::move(seq));
    new_arrivals_.clear();
  }
}

}  // namespace deltaserve

// Table-driven tests of the scheduler's decisions (no model, no engine): each row gives the
// requests holding a slot, those waiting, the free slots and the limits, and the exact plan.
#include "engine/scheduler.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace deltaserve {
namespace {

// Compact constructors for table rows.
SchedRequest Decoding(int64_t key, int64_t remaining_work = 100, int64_t resident = 0,
                      int64_t last_scheduled = 0) {
  SchedRequest r;
  r.key = key;
  r.arrival = key;
  r.remaining_work = remaining_work;
  r.resident_steps = resident;
  r.last_scheduled = last_scheduled;
  return r;
}

SchedRequest Prefilling(int64_t key, int64_t prompt_remaining, int64_t resident = 0) {
  SchedRequest r;
  r.key = key;
  r.arrival = key;
  r.prompt_remaining = prompt_remaining;
  r.remaining_work = prompt_remaining + 100;
  r.resident_steps = resident;
  return r;
}

SchedRequest Waiting(int64_t key, int64_t prompt, int64_t waited = 0) {
  SchedRequest r;
  r.key = key;
  r.arrival = key;
  r.prompt_remaining = prompt;
  r.remaining_work = prompt + 100;
  r.waited_steps = waited;
  return r;
}

SchedRequest SwappedDecoding(int64_t key, int64_t waited = 0) {
  SchedRequest r = Waiting(key, 0, waited);
  r.swapped = true;
  return r;
}

SchedRequest Forced(SchedRequest r) {
  r.force_preempt = true;
  return r;
}

SchedulerConfig Config(int64_t budget, int64_t chunk, int max_seqs, bool swap = true,
                       int64_t preempt_after = 10, int max_swapped = 100) {
  SchedulerConfig c;
  c.max_step_tokens = budget;
  c.prefill_chunk = chunk;
  c.max_batch_sequences = max_seqs;
  c.enable_swap = swap;
  c.preempt_after_steps = preempt_after;
  c.max_swapped = max_swapped;
  return c;
}

struct Row {
  std::string name;
  SchedulerConfig config;
  std::vector<SchedRequest> running;
  std::vector<SchedRequest> waiting;
  int free_slots;
  int swapped;
  // Expected plan.
  std::vector<int64_t> preempt;
  std::vector<int64_t> admit;
  std::vector<ScheduledSeq> batch;
};

std::vector<Row> Table() {
  return {
      {"all_decodes_fit", Config(64, 16, 8),
       {Decoding(1), Decoding(2), Decoding(3)}, {}, 5, 0,
       {}, {}, {{1, 1, true}, {2, 1, true}, {3, 1, true}}},
      {"prefill_chunked_beside_decodes", Config(300, 256, 8),
       {Decoding(1), Prefilling(2, 1000), Decoding(3)}, {}, 0, 0,
       {}, {}, {{1, 1, true}, {3, 1, true}, {2, 256, false}}},
      {"prefill_chunk_limited_by_budget", Config(100, 256, 8),
       {Decoding(1), Prefilling(2, 1000)}, {}, 0, 0,
       {}, {}, {{1, 1, true}, {2, 99, false}}},
      {"last_chunk_samples", Config(300, 256, 8),
       {Prefilling(2, 40)}, {}, 0, 0,
       {}, {}, {{2, 40, true}}},
      {"admit_fcfs_into_free_slots", Config(64, 16, 8),
       {Decoding(1)}, {Waiting(5, 10), Waiting(6, 30), Waiting(7, 5)}, 2, 0,
       {}, {5, 6}, {{1, 1, true}, {5, 10, true}, {6, 16, false}}},
      {"budget_exhausted_by_earlier_prefill", Config(20, 16, 8),
       {}, {Waiting(5, 30), Waiting(6, 30)}, 2, 0,
       {}, {5, 6}, {{5, 16, false}, {6, 4, false}}},
      {"prefills_fcfs_by_arrival", Config(20, 16, 8),
       {Prefilling(9, 30), Prefilling(4, 30)}, {}, 0, 0,
       {}, {}, {{4, 16, false}, {9, 4, false}}},
      {"batch_sequence_limit_stops_prefills", Config(100, 16, 2),
       {Decoding(1), Prefilling(2, 5), Prefilling(3, 5)}, {}, 0, 0,
       {}, {}, {{1, 1, true}, {2, 5, true}}},
      {"too_many_decodes_least_recently_scheduled_win", Config(100, 16, 2),
       {Decoding(1, 100, 0, 7), Decoding(2, 100, 0, 5), Decoding(3, 100, 0, 6)}, {}, 0, 0,
       {}, {}, {{2, 1, true}, {3, 1, true}}},
      {"no_preemption_before_waiting_long_enough", Config(64, 16, 8, true, 10),
       {Decoding(1, 100, 50)}, {Waiting(5, 10, 9)}, 0, 0,
       {}, {}, {{1, 1, true}}},
      {"preempt_most_remaining_work", Config(64, 16, 8, true, 10),
       {Decoding(1, 50, 20), Decoding(2, 300, 20), Decoding(3, 200, 20)}, {Waiting(5, 10, 10)},
       0, 0,
       {2}, {5}, {{1, 1, true}, {3, 1, true}, {5, 10, true}}},
      {"preempt_ties_go_to_newest", Config(64, 16, 8, true, 10),
       {Decoding(1, 300, 20), Decoding(2, 300, 20)}, {Waiting(5, 10, 12)}, 0, 0,
       {2}, {5}, {{1, 1, true}, {5, 10, true}}},
      {"victims_must_have_run_long_enough", Config(64, 16, 8, true, 10),
       {Decoding(1, 50, 20), Decoding(2, 300, 3)}, {Waiting(5, 10, 10)}, 0, 0,
       {1}, {5}, {{2, 1, true}, {5, 10, true}}},
      {"no_preemption_without_swap", Config(64, 16, 8, false, 10),
       {Decoding(1, 300, 50)}, {Waiting(5, 10, 100)}, 0, 0,
       {}, {}, {{1, 1, true}}},
      {"no_preemption_when_free_slots_cover_waiters", Config(64, 16, 8, true, 10),
       {Decoding(1, 300, 50)}, {Waiting(5, 10, 100)}, 1, 0,
       {}, {5}, {{1, 1, true}, {5, 10, true}}},
      {"max_swapped_limits_preemption", Config(64, 16, 8, true, 10, 3),
       {Decoding(1, 300, 50)}, {Waiting(5, 10, 100)}, 0, 3,
       {}, {}, {{1, 1, true}}},
      {"one_victim_per_starving_waiter", Config(64, 16, 8, true, 10),
       {Decoding(1, 10, 50), Decoding(2, 20, 50), Decoding(3, 30, 50)},
       {Waiting(5, 4, 10), Waiting(6, 4, 11), Waiting(7, 4, 2)}, 0, 0,
       {3, 2}, {5, 6}, {{1, 1, true}, {5, 4, true}, {6, 4, true}}},
      {"forced_preemption_frees_a_slot", Config(64, 16, 8, true, 1000),
       {Decoding(1), Forced(Decoding(2))}, {Waiting(5, 3)}, 0, 0,
       {2}, {5}, {{1, 1, true}, {5, 3, true}}},
      {"swapped_decoder_resumes_with_a_decode", Config(64, 16, 8),
       {Decoding(1)}, {SwappedDecoding(2), Waiting(5, 8)}, 1, 1,
       {}, {2}, {{1, 1, true}, {2, 1, true}}},
      {"decodes_leave_a_seat_for_a_prefill", Config(100, 16, 3),
       {Decoding(1, 100, 0, 7), Decoding(2, 100, 0, 5), Decoding(3, 100, 0, 6), Prefilling(4, 40)},
       {}, 0, 0,
       {}, {}, {{2, 1, true}, {3, 1, true}, {4, 16, false}}},
      {"decodes_leave_budget_for_a_prefill", Config(10, 8, 20),
       {Decoding(1), Decoding(2), Decoding(3), Decoding(4), Decoding(5), Decoding(6), Decoding(7),
        Decoding(8), Prefilling(9, 30)},
       {}, 0, 0,
       {}, {}, {{1, 1, true}, {2, 1, true}, {3, 1, true}, {4, 1, true}, {5, 1, true},
                {9, 5, false}}},
      {"empty", Config(64, 16, 8), {}, {}, 4, 0, {}, {}, {}},
  };
}

TEST(SchedulerTableTest, Decisions) {
  for (const Row& row : Table()) {
    SCOPED_TRACE(row.name);
    Scheduler s(row.config);
    SchedulerInput in;
    in.running = row.running;
    in.waiting = row.waiting;
    in.free_slots = row.free_slots;
    in.swapped = row.swapped;
    SchedulerPlan plan;
    s.Plan(in, &plan);
    EXPECT_EQ(plan.preempt, row.preempt);
    EXPECT_EQ(plan.admit, row.admit);
    EXPECT_EQ(plan.batch.size(), row.batch.size());
    for (size_t i = 0; i < std::min(plan.batch.size(), row.batch.size()); ++i) {
      EXPECT_EQ(plan.batch[i].key, row.batch[i].key) << "batch[" << i << "]";
      EXPECT_EQ(plan.batch[i].num_tokens, row.batch[i].num_tokens) << "batch[" << i << "]";
      EXPECT_EQ(plan.batch[i].sample, row.batch[i].sample) << "batch[" << i << "]";
    }
    int64_t tokens = 0;
    for (const auto& b : row.batch) tokens += b.num_tokens;
    EXPECT_EQ(plan.num_tokens, tokens);
    EXPECT_LE(plan.num_tokens, row.config.max_step_tokens);
    EXPECT_LE(static_cast<int>(plan.batch.size()), row.config.max_batch_sequences);
  }
}

TEST(SchedulerTest, PlanIsReusableAndDeterministic) {
  Scheduler s(Config(32, 8, 4));
  std::vector<SchedRequest> running = {Decoding(1), Prefilling(2, 50)};
  std::vector<SchedRequest> waiting = {Waiting(3, 9)};
  SchedulerInput in{running, waiting, 1, 0};
  SchedulerPlan a, b;
  s.Plan(in, &a);
  s.Plan(in, &b);
  s.Plan(in, &b);  // cleared, not appended
  EXPECT_EQ(a.batch, b.batch);
  EXPECT_EQ(a.admit, b.admit);
}

}  // namespace
}  // namespace deltaserve

// ThreadPool (kernels/cpu/parallel.h): every item runs exactly once, results written by workers
// are visible to the caller, per-thread indices are in range, and back-to-back jobs do not mix.
// Labelled tsan: it also runs under ThreadSanitizer.
#include <atomic>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/parallel.h"

namespace deltaserve::cpu {
namespace {

TEST(ThreadPoolTest, RunsEveryItemOnceAcrossManyJobs) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int job = 0; job < 200; ++job) {
      const int n = job % 37;
      std::vector<int> hits(n, 0);  // each item written by exactly one thread
      std::vector<int> thread_of(n, -1);
      pool.ParallelFor(n, [&](int64_t i, int t) {
        hits[i] += 1 + job;
        thread_of[i] = t;
      });
      for (int i = 0; i < n; ++i) {
        EXPECT_EQ(hits[i], 1 + job);
        EXPECT_GE(thread_of[i], 0);
        EXPECT_LT(thread_of[i], threads);
      }
    }
  }
}

TEST(ThreadPoolTest, UsesWorkersForSlowItems) {
  ThreadPool pool(3);
  std::atomic<int> in_flight{0}, max_in_flight{0};
  pool.ParallelFor(12, [&](int64_t, int) {
    const int now = ++in_flight;
    int m = max_in_flight.load();
    while (now > m && !max_in_flight.compare_exchange_weak(m, now)) {
    }
    volatile double x = 0;
    for (int k = 0; k < 2000000; ++k) x = x + k;
    --in_flight;
  });
  EXPECT_GE(max_in_flight.load(), 1);
  EXPECT_EQ(in_flight.load(), 0);
}

}  // namespace
}  // namespace deltaserve::cpu

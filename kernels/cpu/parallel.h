// ThreadPool: a fixed set of worker threads for data-parallel loops of the CPU model
// (per-head recurrences, per-sequence convolutions). ParallelFor(n, fn) calls fn(i, thread)
// exactly once for every i in [0, n), on the calling thread (thread 0) and the workers (threads
// 1 .. num_threads()-1; use it to pick per-thread scratch), and returns when all calls have
// finished; memory written by fn is visible to the caller afterwards.
//
// Thread-safety: ParallelFor may be called from one thread at a time (the model's caller);
// calls do not nest. A pool of 1 thread runs everything inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace deltaserve::cpu {

class ThreadPool {
 public:
  // `num_threads` counts the caller: num_threads - 1 workers are started (>= 1 is enforced).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }
  void ParallelFor(int64_t n, const std::function<void(int64_t, int)>& fn);

 private:
  void WorkerLoop(int thread);
  // Claims and runs items of the current job until none is left.
  void RunItems(const std::function<void(int64_t, int)>& fn, int64_t n, uint64_t gen, int thread);

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int64_t, int)>* job_ = nullptr;  // guarded by mu_
  int64_t job_n_ = 0;                                       // guarded by mu_
  int64_t next_ = 0;                                        // guarded by mu_
  int64_t finished_ = 0;                                    // guarded by mu_
  uint64_t generation_ = 0;                                 // guarded by mu_
  bool stop_ = false;                                       // guarded by mu_
  std::vector<std::thread> workers_;
};

// Number of hardware threads (>= 1).
int HardwareThreads();

}  // namespace deltaserve::cpu

// ThreadPool implementation (see parallel.h). Items are claimed one at a time under the mutex;
// the items of the CPU model are coarse (a head's recurrence over a chunk), so the lock is cheap.
#include "kernels/cpu/parallel.h"

namespace deltaserve::cpu {

int HardwareThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(int num_threads) {
  const int workers = num_threads > 1 ? num_threads - 1 : 0;
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { WorkerLoop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunItems(const std::function<void(int64_t, int)>& fn, int64_t n, uint64_t gen,
                          int thread) {
  std::unique_lock<std::mutex> lock(mu_);
  // A late worker must not claim items of a later job with this job's function.
  while (generation_ == gen && next_ < n) {
    const int64_t i = next_++;
    lock.unlock();
    fn(i, thread);
    lock.lock();
    if (++finished_ == n) done_cv_.notify_all();
  }
}

void ThreadPool::WorkerLoop(int thread) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || (job_ != nullptr && generation_ != seen); });
    if (stop_) return;
    seen = generation_;
    const std::function<void(int64_t, int)>* fn = job_;
    const int64_t n = job_n_;
    lock.unlock();
    RunItems(*fn, n, seen, thread);
    lock.lock();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    next_ = 0;
    finished_ = 0;
    gen = ++generation_;
  }
  work_cv_.notify_all();
  RunItems(fn, n, gen, 0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return finished_ == n; });
  job_ = nullptr;
}

}  // namespace deltaserve::cpu

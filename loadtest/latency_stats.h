// LatencySamples: collected latencies (seconds) and their percentiles. Not thread-safe; the
// load generator keeps one per worker and merges them at the end.
#pragma once

#include <cstddef>
#include <vector>

namespace deltaserve::loadtest {

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0, max = 0;
  size_t count = 0;
};

class LatencySamples {
 public:
  void Add(double seconds) { samples_.push_back(seconds); }
  void Merge(const LatencySamples& other) {
    samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
  }
  size_t size() const { return samples_.size(); }
  // Nearest-rank percentiles; all zero when empty.
  Percentiles Compute() const;

 private:
  std::vector<double> samples_;
};

}  // namespace deltaserve::loadtest

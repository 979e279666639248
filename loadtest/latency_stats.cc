// Nearest-rank percentiles (see latency_stats.h).
#include "loadtest/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace deltaserve::loadtest {

Percentiles LatencySamples::Compute() const {
  Percentiles p;
  p.count = samples_.size();
  if (samples_.empty()) return p;
  std::vector<double> s = samples_;
  std::sort(s.begin(), s.end());
  auto rank = [&s](double q) {
    size_t r = static_cast<size_t>(std::ceil(q * static_cast<double>(s.size())));
    return s[std::clamp<size_t>(r, 1, s.size()) - 1];
  };
  p.p50 = rank(0.50);
  p.p90 = rank(0.90);
  p.p99 = rank(0.99);
  p.mean = std::accumulate(s.begin(), s.end(), 0.0) / static_cast<double>(s.size());
  p.max = s.back();
  return p;
}

}  // namespace deltaserve::loadtest

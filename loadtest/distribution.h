// Length distributions for the load generator: "N" or "fixed:N", "uniform:A:B" (inclusive),
// "exp:MEAN" (exponential, at least 1), "normal:MEAN:STDDEV" (clipped to >= 1).
// Thread-safety: Sample uses the caller's generator; a Distribution is immutable.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "absl/status/statusor.h"

namespace deltaserve::loadtest {

class LengthDistribution {
 public:
  static absl::StatusOr<LengthDistribution> Parse(const std::string& spec);
  int64_t Sample(std::mt19937_64& rng) const;
  int64_t max() const;  // largest value Sample can return (a bound for clipping)
  const std::string& spec() const { return spec_; }

 private:
  enum class Kind { kFixed, kUniform, kExponential, kNormal };
  Kind kind_ = Kind::kFixed;
  double a_ = 1, b_ = 1;
  int64_t cap_ = 1;
  std::string spec_;
};

}  // namespace deltaserve::loadtest

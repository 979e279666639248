// LengthDistribution parsing and sampling (see distribution.h).
#include "loadtest/distribution.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace deltaserve::loadtest {
namespace {

constexpr int64_t kMaxLength = int64_t{1} << 24;

}  // namespace

absl::StatusOr<LengthDistribution> LengthDistribution::Parse(const std::string& spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  auto bad = [&spec](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("length distribution \"", spec, "\": ", why,
                                                   " (use N, uniform:A:B, exp:MEAN or "
                                                   "normal:MEAN:STDDEV)"));
  };
  LengthDistribution d;
  d.spec_ = spec;
  std::vector<double> nums;
  const std::string kind = parts.size() == 1 ? "fixed" : parts[0];
  for (size_t i = parts.size() == 1 ? 0 : 1; i < parts.size(); ++i) {
    double x = 0;
    if (!absl::SimpleAtod(parts[i], &x) || !std::isfinite(x)) return bad("not a number");
    nums.push_back(x);
  }
  if (kind == "fixed" && nums.size() == 1) {
    d.kind_ = Kind::kFixed;
    d.a_ = nums[0];
    if (d.a_ < 1) return bad("must be >= 1");
    d.cap_ = static_cast<int64_t>(d.a_);
  } else if (kind == "uniform" && nums.size() == 2) {
    d.kind_ = Kind::kUniform;
    d.a_ = nums[0];
    d.b_ = nums[1];
    if (d.a_ < 1 || d.b_ < d.a_) return bad("needs 1 <= A <= B");
    d.cap_ = static_cast<int64_t>(d.b_);
  } else if (kind == "exp" && nums.size() == 1) {
    d.kind_ = Kind::kExponential;
    d.a_ = nums[0];
    if (d.a_ < 1) return bad("mean must be >= 1");
    d.cap_ = static_cast<int64_t>(std::min<double>(kMaxLength, 20 * d.a_));
  } else if (kind == "normal" && nums.size() == 2) {
    d.kind_ = Kind::kNormal;
    d.a_ = nums[0];
    d.b_ = nums[1];
    if (d.a_ < 1 || d.b_ < 0) return bad("needs MEAN >= 1 and STDDEV >= 0");
    d.cap_ = static_cast<int64_t>(std::min<double>(kMaxLength, d.a_ + 6 * d.b_));
  } else {
    return bad("unknown form");
  }
  if (d.cap_ > kMaxLength) return bad("too large");
  return d;
}

int64_t LengthDistribution::Sample(std::mt19937_64& rng) const {
  double x = a_;
  switch (kind_) {
    case Kind::kFixed: break;
    case Kind::kUniform:
      return std::uniform_int_distribution<int64_t>(static_cast<int64_t>(a_),
                                                    static_cast<int64_t>(b_))(rng);
    case Kind::kExponential: x = std::exponential_distribution<double>(1.0 / a_)(rng); break;
    case Kind::kNormal: x = std::normal_distribution<double>(a_, b_)(rng); break;
  }
  return std::clamp<int64_t>(std::llround(x), 1, cap_);
}

int64_t LengthDistribution::max() const { return cap_; }

}  // namespace deltaserve::loadtest

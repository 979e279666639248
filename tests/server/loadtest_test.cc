// Tests for the load generator's length distributions and percentile computation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "loadtest/distribution.h"
#include "loadtest/latency_stats.h"

namespace deltaserve::loadtest {
namespace {

TEST(LengthDistributionTest, ParsesEveryForm) {
  std::mt19937_64 rng(1);
  auto fixed = LengthDistribution::Parse("32");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->Sample(rng), 32);
  EXPECT_EQ(LengthDistribution::Parse("fixed:7")->Sample(rng), 7);
  auto uniform = LengthDistribution::Parse("uniform:10:20");
  ASSERT_TRUE(uniform.ok());
  int64_t lo = 100, hi = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t x = uniform->Sample(rng);
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  EXPECT_EQ(lo, 10);
  EXPECT_EQ(hi, 20);
  EXPECT_EQ(uniform->max(), 20);
  auto exp = LengthDistribution::Parse("exp:50");
  ASSERT_TRUE(exp.ok());
  double sum = 0;
  for (int i = 0; i < 20000; ++i) {
    const int64_t x = exp->Sample(rng);
    ASSERT_GE(x, 1);
    ASSERT_LE(x, exp->max());
    sum += static_cast<double>(x);
  }
  EXPECT_NEAR(sum / 20000, 50, 3);
  auto normal = LengthDistribution::Parse("normal:100:10");
  ASSERT_TRUE(normal.ok());
  EXPECT_EQ(normal->max(), 160);
}

TEST(LengthDistributionTest, RejectsBadSpecs) {
  for (const char* spec : {"", "0", "-3", "uniform:5", "uniform:9:3", "exp:0", "normal:10",
                           "poisson:3", "abc", "uniform:1:x"}) {
    EXPECT_FALSE(LengthDistribution::Parse(spec).ok()) << spec;
  }
}

TEST(LatencySamplesTest, NearestRankPercentiles) {
  LatencySamples s;
  EXPECT_EQ(s.Compute().count, 0u);
  EXPECT_EQ(s.Compute().p99, 0);
  for (int i = 100; i >= 1; --i) s.Add(i);
  const Percentiles p = s.Compute();
  EXPECT_EQ(p.count, 100u);
  EXPECT_EQ(p.p50, 50);
  EXPECT_EQ(p.p90, 90);
  EXPECT_EQ(p.p99, 99);
  EXPECT_EQ(p.max, 100);
  EXPECT_DOUBLE_EQ(p.mean, 50.5);
  LatencySamples one;
  one.Add(3);
  s.Merge(one);
  EXPECT_EQ(s.size(), 101u);
  EXPECT_EQ(one.Compute().p50, 3);
}

}  // namespace
}  // namespace deltaserve::loadtest

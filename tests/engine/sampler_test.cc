// Sampler tests: the Philox generator against published known answers, penalties and logprobs
// against hand-computed values, seeded reproducibility, and chi-square tests of the sampling
// distributions (temperature, top-k, top-p, min-p) against exact probabilities computed here
// independently from the contract in sampler.h.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace deltaserve {
namespace {

TEST(PhiloxTest, KnownAnswers) {
  // Random123 known-answer vectors for philox4x32_10.
  EXPECT_EQ(Philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(Philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                          {0xffffffff, 0xffffffff}),
            (std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(Philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                          {0xa4093822, 0x299f31d0}),
            (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(SamplerUniformTest, RangeMomentsAndKeying) {
  const int n = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = SamplerUniform(42, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum2 += u * u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sum2 / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
  EXPECT_EQ(SamplerUniform(7, 3), SamplerUniform(7, 3));
  EXPECT_NE(SamplerUniform(7, 3), SamplerUniform(8, 3));
  EXPECT_NE(SamplerUniform(7, 3), SamplerUniform(7, 4));
  // Counters above 2^32 use the high word.
  EXPECT_NE(SamplerUniform(7, 1), SamplerUniform(7, (1ull << 32) + 1));
  // The definition in sampler.h.
  const auto r = Philox4x32_10({5, 0, 0, 0}, {9, 0});
  EXPECT_EQ(SamplerUniform(9, 5),
            static_cast<double>((static_cast<uint64_t>(r[1]) << 32 | r[0]) >> 11) * 0x1.0p-53);
}

TEST(SamplerTest, GreedyArgmaxTiesToLowestId) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 9.0f};  // id 5 is padding
  SamplingParams p;
  p.temperature = 0.0f;
  SamplerState st;
  SampledToken t = SampleToken(logits, 5, p, &st);
  EXPECT_EQ(t.token, 1);
  EXPECT_EQ(st.rng_counter, 1u);
}

double LogSoftmaxAt(const std::vector<double>& l, int i) {
  double m = *std::max_element(l.begin(), l.end());
  double s = 0;
  for (double v : l) s += std::exp(v - m);
  return l[i] - m - std::log(s);
}

TEST(SamplerTest, PenaltiesAndLogprobs) {
  // vocab 6; prompt {0, 1}; generated {2, 2, 3}.
  const std::vector<float> raw = {1.0f, -1.0f, 2.0f, 0.5f, 0.0f, 0.25f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.logprobs = true;
  p.top_logprobs = 3;
  SamplerState st;
  st.prompt_tokens = {0, 1};
  st.generated_tokens = {2, 2, 3};
  std::vector<float> logits = raw;
  SampledToken t = SampleToken(logits, 6, p, &st);
  // Expected penalised logits.
  std::vector<double> e = {1.0 / 2, -1.0 * 2, 2.0 / 2 - 0.5 - 0.25 * 2, 0.5 / 2 - 0.5 - 0.25, 0.0,
                           0.25};
  // e = {0.5, -2, 0, -0.5, 0, 0.25}: argmax is 0.
  EXPECT_EQ(t.token, 0);
  EXPECT_NEAR(t.logprob, LogSoftmaxAt(e, 0), 1e-5);
  ASSERT_EQ(t.top_logprobs.size(), 3u);
  EXPECT_EQ(t.top_logprobs[0].first, 0);
  EXPECT_EQ(t.top_logprobs[1].first, 5);
  EXPECT_EQ(t.top_logprobs[2].first, 2);  // ties (0.0 at ids 2 and 4): lower id first
  EXPECT_NEAR(t.top_logprobs[1].second, LogSoftmaxAt(e, 5), 1e-5);
  EXPECT_NEAR(t.top_logprobs[2].second, LogSoftmaxAt(e, 2), 1e-5);

  // A second call with the same state gives the same penalties (scratch is reset).
  std::vector<float> again = raw;
  SampledToken t2 = SampleToken(again, 6, p, &st);
  EXPECT_EQ(t2.token, t.token);
  EXPECT_FLOAT_EQ(t2.logprob, t.logprob);
}

TEST(SamplerTest, NoLogprobsUnlessRequested) {
  std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  SamplingParams p;
  SamplerState st;
  SampledToken t = SampleToken(logits, 3, p, &st);
  EXPECT_TRUE(t.top_logprobs.empty());
}

TEST(SamplerTest, SeedReproducibility) {
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-3, 3);
  std::vector<float> base(100);
  for (float& v : base) v = dist(gen);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  auto run = [&](uint64_t seed) {
    SamplingParams q = p;
    q.seed = seed;
    SamplerState st;
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> l = base;
      out.push_back(SampleToken(l, 100, q, &st).token);
    }
    return out;
  };
  EXPECT_EQ(run(1234), run(1234));
  EXPECT_NE(run(1234), run(1235));
}

// Exact probabilities per the contract, in double.
std::vector<double> ExpectedProbs(const std::vector<float>& logits, const SamplingParams& p) {
  const int v = static_cast<int>(logits.size());
  double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> w(v);
  for (int i = 0; i < v; ++i) w[i] = std::exp((logits[i] - m) / p.temperature);
  std::vector<int> order(v);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return w[a] > w[b]; });
  int n = v;
  if (p.top_k > 0 && p.top_k < v) n = p.top_k;
  double z = 0;
  for (int i = 0; i < n; ++i) z += w[order[i]];
  if (p.top_p < 1.0f) {
    double acc = 0;
    for (int i = 0; i < n; ++i) {
      acc += w[order[i]];
      if (acc >= p.top_p * z) {
        n = i + 1;
        break;
      }
    }
  }
  std::vector<double> prob(v, 0.0);
  double kept = 0;
  for (int i = 0; i < n; ++i) {
    const int id = order[i];
    if (w[id] >= p.min_p * 1.0) {
      prob[id] = w[id];
      kept += w[id];
    }
  }
  for (double& q : prob) q /= kept;
  return prob;
}

// Chi-square upper critical value for `df` degrees of freedom at tail probability ~1e-6
// (Wilson-Hilferty).
double ChiSquareCritical(int df) {
  const double z = 4.753;
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

struct DistCase {
  const char* name;
  SamplingParams params;
};

class SamplerDistributionTest : public ::testing::TestWithParam<DistCase> {};

TEST_P(SamplerDistributionTest, ChiSquareAgainstExactProbabilities) {
  const int vocab = 40;
  std::mt19937 gen(99);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = dist(gen);
  const SamplingParams& p = GetParam().params;
  const std::vector<double> prob = ExpectedProbs(logits, p);

  const int draws = 60000;
  std::vector<int> counts(vocab, 0);
  SamplerState st;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> l = logits;
    ++counts[SampleToken(l, vocab, p, &st).token];
  }
  double chi2 = 0;
  int df = -1;
  for (int i = 0; i < vocab; ++i) {
    if (prob[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is filtered out but was drawn";
      continue;
    }
    const double e = prob[i] * draws;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
    ++df;
  }
  ASSERT_GE(df, 1);
  EXPECT_LT(chi2, ChiSquareCritical(df)) << "df=" << df;
  // A sanity check that the test has power: a wrong temperature is detected.
  SamplingParams wrong = p;
  wrong.temperature = p.temperature * 1.3f;
  const std::vector<double> wrong_prob = ExpectedProbs(logits, wrong);
  double chi2_wrong = 0;
  for (int i = 0; i < vocab; ++i) {
    if (wrong_prob[i] == 0.0) continue;
    const double e = wrong_prob[i] * draws;
    chi2_wrong += (counts[i] - e) * (counts[i] - e) / e;
  }
  EXPECT_GT(chi2_wrong, ChiSquareCritical(df));
}

SamplingParams Make(float temperature, int top_k, float top_p, float min_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = 2024;
  return p;
}

INSTANTIATE_TEST_SUITE_P(
    Filters, SamplerDistributionTest,
    ::testing::Values(DistCase{"temperature", Make(0.7f, 0, 1.0f, 0.0f)},
                      DistCase{"top_k", Make(1.0f, 7, 1.0f, 0.0f)},
                      DistCase{"top_p", Make(1.0f, 0, 0.8f, 0.0f)},
                      DistCase{"min_p", Make(1.0f, 0, 1.0f, 0.15f)},
                      DistCase{"combined", Make(0.9f, 12, 0.9f, 0.05f)}),
    [](const ::testing::TestParamInfo<DistCase>& info) { return std::string(info.param.name); });

TEST(SamplerTest, TopPLargeVocabularyMatchesExactKeptSet) {
  // A flat distribution over a large vocabulary exercises the incremental partial sort.
  const int vocab = 5000;
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> dist(0.0f, 0.01f);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = dist(gen);
  SamplingParams p = Make(1.0f, 0, 0.5f, 0.0f);
  const std::vector<double> prob = ExpectedProbs(logits, p);
  SamplerState st;
  for (int i = 0; i < 300; ++i) {
    std::vector<float> l = logits;
    const int32_t t = SampleToken(l, vocab, p, &st).token;
    ASSERT_GT(prob[t], 0.0) << "draw " << i << " picked a token outside the top-p set";
  }
}

TEST(SamplingParamsTest, ValidateNamesField) {
  SamplingParams p;
  EXPECT_TRUE(p.Validate().ok());
  p.top_p = 0.0f;
  EXPECT_NE(p.Validate().message().find("top_p"), std::string::npos);
  p = SamplingParams();
  p.temperature = -1;
  EXPECT_NE(p.Validate().message().find("temperature"), std::string::npos);
  p = SamplingParams();
  p.top_logprobs = 21;
  EXPECT_NE(p.Validate().message().find("top_logprobs"), std::string::npos);
  p = SamplingParams();
  p.min_p = 1.0f;
  EXPECT_FALSE(p.Validate().ok());
}

}  // namespace
}  // namespace deltaserve

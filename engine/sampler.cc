// Host sampler: penalties, log-probabilities, greedy / temperature / top-k / top-p / min-p
// sampling with the Philox counter RNG, exactly as specified in sampler.h.
//
// Scratch buffers are thread_local, so steady-state sampling allocates only the SampledToken's
// top-logprob vector (when requested).
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace deltaserve {
namespace {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

// Penalty bookkeeping: per-token occurrence counts of the generated tokens and a flag for the
// prompt, reset after each call through the `touched` list (O(history), not O(vocab)).
struct PenaltyScratch {
  std::vector<uint32_t> gen_count;
  std::vector<uint8_t> in_prompt;
  std::vector<int32_t> touched;
};

void ApplyPenalties(float* logits, int vocab, const SamplingParams& p, const SamplerState& st) {
  const bool rep = p.repetition_penalty != 1.0f;
  const bool pres_freq = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!rep && !pres_freq) return;
  thread_local PenaltyScratch s;
  if (static_cast<int>(s.gen_count.size()) < vocab) {
    s.gen_count.resize(vocab, 0);
    s.in_prompt.resize(vocab, 0);
  }
  s.touched.clear();
  for (int32_t t : st.generated_tokens) {
    if (t < 0 || t >= vocab) continue;
    if (s.gen_count[t] == 0 && s.in_prompt[t] == 0) s.touched.push_back(t);
    ++s.gen_count[t];
  }
  if (rep) {
    for (int32_t t : st.prompt_tokens) {
      if (t < 0 || t >= vocab) continue;
      if (s.gen_count[t] == 0 && s.in_prompt[t] == 0) s.touched.push_back(t);
      s.in_prompt[t] = 1;
    }
  }
  for (int32_t t : s.touched) {
    float l = logits[t];
    const uint32_t count = s.gen_count[t];
    if (rep) l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
    if (count > 0) {
      l -= p.presence_penalty;
      l -= p.frequency_penalty * static_cast<float>(count);
    }
    logits[t] = l;
    s.gen_count[t] = 0;
    s.in_prompt[t] = 0;
  }
}

// Argmax over finite logits, ties to the lowest id; 0 when none is finite.
int32_t Argmax(const float* x, int n) {
  int32_t best = 0;
  float best_v = -std::numeric_limits<float>::infinity();
  bool found = false;
  for (int i = 0; i < n; ++i) {
    const float v = x[i];
    if (std::isnan(v)) continue;
    if (!found || v > best_v) {
      best = i;
      best_v = v;
      found = true;
    }
  }
  return best;
}

double LogSumExp(const float* x, int n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) {
    if (x[i] > m) m = x[i];
  }
  if (!std::isfinite(m)) return m;
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    if (!std::isnan(x[i])) sum += std::exp(static_cast<double>(x[i]) - m);
  }
  return m + std::log(sum);
}

// The best `n` (logit desc, id asc) as (id, logprob), best first.
std::vector<std::pair<int32_t, float>> TopLogprobs(const float* x, int vocab, int n, double lse) {
  std::vector<std::pair<int32_t, float>> top;
  if (n <= 0) return top;
  n = std::min(n, vocab);
  top.reserve(n + 1);
  auto better = [](float a_v, int32_t a_i, float b_v, int32_t b_i) {
    return a_v > b_v || (a_v == b_v && a_i < b_i);
  };
  for (int i = 0; i < vocab; ++i) {
    const float v = std::isnan(x[i]) ? -std::numeric_limits<float>::infinity() : x[i];
    if (static_cast<int>(top.size()) == n && !better(v, i, top.back().second, top.back().first)) {
      continue;
    }
    auto it = top.end();
    while (it != top.begin() && better(v, i, (it - 1)->second, (it - 1)->first)) --it;
    top.insert(it, {i, v});
    if (static_cast<int>(top.size()) > n) top.pop_back();
  }
  for (auto& [id, v] : top) v = static_cast<float>(v - lse);
  return top;
}

struct DrawScratch {
  std::vector<float> w;
  std::vector<int32_t> cand;
};

int32_t Draw(const float* x, int vocab, const SamplingParams& p, double u) {
  thread_local DrawScratch s;
  s.w.resize(vocab);
  float* w = s.w.data();
  float m = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < vocab; ++i) {
    if (std::isfinite(x[i]) && x[i] > m) m = x[i];
  }
  if (!std::isfinite(m)) return 0;
  const float inv_t = 1.0f / p.temperature;
  double total = 0.0;
  for (int i = 0; i < vocab; ++i) {
    const float wi = std::isfinite(x[i]) ? std::exp((x[i] - m) * inv_t) : 0.0f;
    w[i] = wi;
    total += wi;
  }
  const float w_max = 1.0f;  // exp(0) at the argmax
  const float min_w = p.min_p > 0.0f ? p.min_p * w_max : 0.0f;
  const bool use_k = p.top_k > 0 && p.top_k < vocab;
  const bool use_p = p.top_p < 1.0f;

  if (!use_k && !use_p) {
    // Only min-p (or nothing): the kept set is a threshold; scan ids in order.
    double z = 0.0;
    for (int i = 0; i < vocab; ++i) {
      if (w[i] >= min_w && w[i] > 0.0f) z += w[i];
    }
    const double target = u * z;
    double acc = 0.0;
    int32_t last = 0;
    for (int i = 0; i < vocab; ++i) {
      if (!(w[i] >= min_w && w[i] > 0.0f)) continue;
      acc += w[i];
      last = i;
      if (target < acc) return i;
    }
    return last;
  }

  auto by_weight = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  std::vector<int32_t>& cand = s.cand;
  cand.resize(vocab);
  for (int i = 0; i < vocab; ++i) cand[i] = i;
  size_t n = cand.size();
  double z = total;
  bool sorted = false;
  if (use_k) {
    n = static_cast<size_t>(p.top_k);
    std::partial_sort(cand.begin(), cand.begin() + n, cand.end(), by_weight);
    sorted = true;
    z = 0.0;
    for (size_t i = 0; i < n; ++i) z += w[cand[i]];
  }
  if (use_p) {
    // The prefix usually ends within the heaviest few tokens: order those first (O(vocab)),
    // and sort the rest only when they do not reach the mass.
    const double need = static_cast<double>(p.top_p) * z;
    double acc = 0.0;
    size_t cut = n;
    size_t head = sorted ? n : std::min<size_t>(n, 64);
    if (!sorted) {
      std::nth_element(cand.begin(), cand.begin() + (head - 1), cand.begin() + n, by_weight);
      std::sort(cand.begin(), cand.begin() + head, by_weight);
    }
    bool done = false;
    for (size_t i = 0; i < n && !done; ++i) {
      if (i == head) std::sort(cand.begin() + head, cand.begin() + n, by_weight);
      acc += w[cand[i]];
      if (acc >= need) {
        cut = i + 1;
        done = true;
      }
    }
    n = cut;
  }
  // min-p on a weight-sorted prefix is a further prefix cut.
  while (n > 1 && w[cand[n - 1]] < min_w) --n;
  std::sort(cand.begin(), cand.begin() + n);
  double kept = 0.0;
  for (size_t i = 0; i < n; ++i) kept += w[cand[i]];
  const double target = u * kept;
  double acc = 0.0;
  int32_t last = cand[0];
  for (size_t i = 0; i < n; ++i) {
    if (w[cand[i]] <= 0.0f) continue;
    acc += w[cand[i]];
    last = cand[i];
    if (target < acc) return cand[i];
  }
  return last;
}

}  // namespace

std::array<uint32_t, 4> Philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kPhiloxW0;
    k[1] += kPhiloxW1;
  }
  return c;
}

double SamplerUniform(uint64_t seed, uint64_t counter) {
  const std::array<uint32_t, 4> r = Philox4x32_10(
      {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u},
      {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  const uint64_t bits = (static_cast<uint64_t>(r[1]) << 32 | r[0]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

SampledToken SampleToken(std::span<float> logits, int vocab_size, const SamplingParams& params,
                         SamplerState* state) {
  float* x = logits.data();
  const int vocab = std::min<int>(vocab_size, static_cast<int>(logits.size()));
  ApplyPenalties(x, vocab, params, *state);
  const uint64_t counter = state->rng_counter++;

  SampledToken out;
  if (params.greedy()) {
    out.token = Argmax(x, vocab);
  } else {
    out.token = Draw(x, vocab, params, SamplerUniform(params.seed, counter));
  }
  if (params.logprobs || params.top_logprobs > 0) {
    const double lse = LogSumExp(x, vocab);
    out.logprob = static_cast<float>(x[out.token] - lse);
    out.top_logprobs = TopLogprobs(x, vocab, params.top_logprobs, lse);
  }
  return out;
}

}  // namespace deltaserve

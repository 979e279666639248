// The embedded default model (models/default, trained by tools/train) on the fp32 CPU backend:
//  - its mean NLL on a held-out slice of the training corpus equals the value the training code
//    computed for the same bytes (tests/train/data/heldout_slice_nll.json) to 1e-3 relative;
//  - its greedy continuations of fixed prompts, decoded one token at a time after a prefill,
//    are the pinned ones (tests/train/data/greedy_samples.json, produced by the PyTorch model
//    and the NumPy float64 reference, which agree).
// Both files are written by tools/train/export_model.py together with the model directory; a
// model replaced without re-running it fails here.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cpu_model.h"
#include "engine/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace deltaserve {
namespace {

const std::string kModelDir = DELTASERVE_SOURCE_DIR "/models/default";
const std::string kDataDir = DELTASERVE_SOURCE_DIR "/tests/train/data";
constexpr int kThreads = 2;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A zeroed (reset) slot, 8-byte aligned.
struct Slot {
  explicit Slot(size_t bytes) : words((bytes + 7) / 8, 0) {}
  std::byte* data() { return reinterpret_cast<std::byte*>(words.data()); }
  std::vector<uint64_t> words;
};

class TrainedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = CpuModel::Load(kModelDir, StateDtype::kF32, kThreads);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    auto t = Tokenizer::Load(kModelDir, model_->config());
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = std::move(*t);
    ASSERT_GE(tokenizer_->bos_id(), 0) << "the default model's tokenizer has a <bos>";
  }

  std::unique_ptr<CpuModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(TrainedModelTest, HeldOutLossMatchesTrainingCode) {
  const auto info = nlohmann::json::parse(ReadFile(kDataDir + "/heldout_slice_nll.json"));
  const std::string slice = ReadFile(kDataDir + "/" + info.at("slice_file").get<std::string>());
  ASSERT_EQ(static_cast<int64_t>(slice.size()), info.at("slice_bytes").get<int64_t>());
  auto ids = tokenizer_->Encode(slice);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->size(), slice.size()) << "byte tokenizer: one id per byte";

  // Input: <bos>, then the slice without its last byte; target of position t: slice byte t.
  std::vector<int32_t> input = {static_cast<int32_t>(tokenizer_->bos_id())};
  input.insert(input.end(), ids->begin(), ids->end() - 1);
  Slot slot(model_->layout().slot_bytes());
  auto logits = model_->Run(slot.data(), input, /*all_positions=*/true);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const int64_t V = model_->config().padded_vocab_size;
  ASSERT_EQ(static_cast<int64_t>(logits->size()), V * static_cast<int64_t>(input.size()));

  // Softmax over the padded vocabulary, as in training.
  double total = 0;
  for (size_t t = 0; t < input.size(); ++t) {
    const float* row = logits->data() + t * V;
    double mx = row[0];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
    total -= static_cast<double>(row[(*ids)[t]]) - mx - std::log(sum);
  }
  const double nll = total / static_cast<double>(input.size());
  const double want = info.at("mean_nll_nats").get<double>();
  std::printf("held-out slice (%zu bytes): CPU backend %.9f nats/byte, training code %.9f\n",
              slice.size(), nll, want);
  EXPECT_NEAR(nll, want, 1e-3 * want) << "CPU backend " << nll << " nats/byte, training code "
                                      << want << " (models/default and tests/train/data must be "
                                      << "exported together by tools/train/export_model.py)";
  // A trained model: far below the ~4.4 bits/byte of a unigram model of this corpus.
  EXPECT_LT(nll / std::log(2.0), 2.0);
}

TEST_F(TrainedModelTest, GreedyContinuationsArePinned) {
  const auto pinned = nlohmann::json::parse(ReadFile(kDataDir + "/greedy_samples.json"));
  const auto& samples = pinned.at("samples");
  ASSERT_FALSE(samples.empty());
  for (const auto& s : samples) {
    const std::string prompt = s.at("prompt").get<std::string>();
    const auto want = s.at("ids").get<std::vector<int32_t>>();
    auto ids = tokenizer_->Encode(prompt);
    ASSERT_TRUE(ids.ok()) << ids.status();
    std::vector<int32_t> input = {static_cast<int32_t>(tokenizer_->bos_id())};
    input.insert(input.end(), ids->begin(), ids->end());

    Slot slot(model_->layout().slot_bytes());
    auto logits = model_->Run(slot.data(), input);  // prefill; last position's logits
    std::vector<int32_t> got;
    const int vocab = model_->config().vocab_size;
    while (logits.ok() && got.size() < want.size()) {
      int32_t best = 0;
      for (int j = 1; j < vocab; ++j) {
        if ((*logits)[j] > (*logits)[best]) best = j;
      }
      got.push_back(best);
      logits = model_->Run(slot.data(), std::span<const int32_t>(&got.back(), 1));  // decode step
    }
    ASSERT_TRUE(logits.ok()) << logits.status();
    auto text = tokenizer_->Decode(got);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(got, want) << "prompt \"" << prompt << "\": got \"" << *text << "\", pinned \""
                         << s.at("text").get<std::string>() << "\"";
    EXPECT_EQ(*text, s.at("text").get<std::string>());
  }
}

}  // namespace
}  // namespace deltaserve

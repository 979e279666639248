// Tests for request validation against the embedded model's byte tokenizer, and for the
// engine-outcome -> gRPC status mapping.
#include "server/request_validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/model_config.h"
#include "server/status_map.h"

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

class RequestValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = std::string(DELTASERVE_SOURCE_DIR) + "/models/default";
    auto config = ModelConfig::LoadFromDir(dir);
    ASSERT_TRUE(config.ok()) << config.status();
    auto tokenizer = Tokenizer::Load(dir, *config);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
    limits_.vocab_size = tokenizer_->vocab_size();
    limits_.bos_id = tokenizer_->bos_id();
    limits_.max_context = 1000;
    limits_.max_prompt_tokens = 100;
    limits_.max_new_tokens_cap = 200;
    limits_.default_max_new_tokens = 16;
  }

  absl::StatusOr<GenerationRequest> Build(const v1::GenerateRequest& r) {
    return BuildGenerationRequest(r, *tokenizer_, limits_, "id-1", /*random_seed=*/77);
  }

  // Expects INVALID_ARGUMENT whose message starts with `field`.
  void ExpectInvalid(const v1::GenerateRequest& r, const std::string& field,
                     const std::string& detail) {
    auto built = Build(r);
    ASSERT_FALSE(built.ok()) << field;
    EXPECT_EQ(built.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string msg(built.status().message());
    EXPECT_EQ(msg.rfind(field + ": ", 0), 0u) << msg;
    EXPECT_THAT(msg, HasSubstr(detail));
  }

  static v1::GenerateRequest TextRequest(const std::string& text) {
    v1::GenerateRequest r;
    r.set_text(text);
    return r;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  RequestLimits limits_;
};

TEST_F(RequestValidationTest, TextPromptGetsBosAndDefaults) {
  auto built = Build(TextRequest("hi"));
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->id, "id-1");
  EXPECT_EQ(built->prompt_tokens, (std::vector<int32_t>{limits_.bos_id, 'h', 'i'}));
  EXPECT_EQ(built->stopping.max_new_tokens, 16);
  EXPECT_EQ(built->sampling.temperature, 1.0f);
  EXPECT_EQ(built->sampling.top_p, 1.0f);
  EXPECT_EQ(built->sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(built->sampling.seed, 77u);
  EXPECT_FALSE(built->sampling.logprobs);
  EXPECT_FALSE(built->deadline.has_value());
}

TEST_F(RequestValidationTest, TokenPromptIsTakenAsGiven) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->add_ids(5);
  r.mutable_token_ids()->add_ids(6);
  auto built = Build(r);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->prompt_tokens, (std::vector<int32_t>{5, 6}));
  r.set_add_bos(true);
  built = Build(r);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->prompt_tokens, (std::vector<int32_t>{limits_.bos_id, 5, 6}));
  auto text = TextRequest("a");
  text.set_add_bos(false);
  built = Build(text);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->prompt_tokens, (std::vector<int32_t>{'a'}));
}

TEST_F(RequestValidationTest, EveryFieldIsCopied) {
  v1::GenerateRequest r = TextRequest("x");
  r.set_request_id("client-7");
  auto* s = r.mutable_sampling();
  s->set_temperature(0);
  s->set_top_k(5);
  s->set_top_p(0.5f);
  s->set_min_p(0.1f);
  s->set_repetition_penalty(1.2f);
  s->set_presence_penalty(-1);
  s->set_frequency_penalty(2);
  s->set_seed(9);
  s->set_top_logprobs(3);
  auto* st = r.mutable_stopping();
  st->set_max_new_tokens(200);
  st->set_ignore_eos(true);
  st->add_stop_token_ids(10);
  st->add_stop_strings("END");
  st->set_max_total_tokens(1000);
  auto built = Build(r);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_TRUE(built->sampling.greedy());
  EXPECT_EQ(built->sampling.top_k, 5);
  EXPECT_FLOAT_EQ(built->sampling.top_p, 0.5f);
  EXPECT_FLOAT_EQ(built->sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(built->sampling.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(built->sampling.presence_penalty, -1);
  EXPECT_FLOAT_EQ(built->sampling.frequency_penalty, 2);
  EXPECT_EQ(built->sampling.seed, 9u);
  EXPECT_EQ(built->sampling.top_logprobs, 3);
  EXPECT_TRUE(built->sampling.logprobs);  // implied by top_logprobs
  EXPECT_EQ(built->stopping.max_new_tokens, 200);
  EXPECT_TRUE(built->stopping.ignore_eos);
  EXPECT_EQ(built->stopping.stop_token_ids, std::vector<int32_t>{10});
  EXPECT_EQ(built->stopping.stop_strings, std::vector<std::string>{"END"});
  EXPECT_EQ(built->stopping.max_total_tokens, 1000);
}

TEST_F(RequestValidationTest, BadInputsNameTheField) {
  ExpectInvalid(v1::GenerateRequest(), "prompt", "must not be empty");
  ExpectInvalid(TextRequest(""), "prompt.text", "must not be empty");
  {
    v1::GenerateRequest r;
    r.mutable_token_ids();
    ExpectInvalid(r, "prompt.token_ids", "must not be empty");
    r.mutable_token_ids()->add_ids(3);
    r.mutable_token_ids()->add_ids(limits_.vocab_size);
    ExpectInvalid(r, "prompt.token_ids.ids[1]", "is not a token id");
    r.mutable_token_ids()->set_ids(1, -1);
    ExpectInvalid(r, "prompt.token_ids.ids[1]", "-1 is not a token id");
  }
  ExpectInvalid(TextRequest(std::string(100, 'a')), "prompt",
                "101 tokens exceed the server's limit of 100");
  auto with = [](auto mutate) {
    v1::GenerateRequest r = TextRequest("ok");
    mutate(r);
    return r;
  };
  ExpectInvalid(with([](auto& r) { r.set_request_id("bad id"); }), "request_id", "may only contain");
  ExpectInvalid(with([](auto& r) { r.set_request_id(std::string(129, 'a')); }), "request_id",
                "at most 128");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_temperature(-0.5f); }),
                "sampling.temperature", ">= 0");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_temperature(NAN); }),
                "sampling.temperature", "finite");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_top_k(-1); }), "sampling.top_k",
                ">= 0");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_top_p(0); }), "sampling.top_p",
                "(0, 1]");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_top_p(1.5f); }), "sampling.top_p",
                "(0, 1]");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_min_p(1); }), "sampling.min_p",
                "[0, 1)");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_repetition_penalty(0); }),
                "sampling.repetition_penalty", "> 0");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_presence_penalty(3); }),
                "sampling.presence_penalty", "[-2, 2]");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_frequency_penalty(-2.5f); }),
                "sampling.frequency_penalty", "[-2, 2]");
  ExpectInvalid(with([](auto& r) { r.mutable_sampling()->set_top_logprobs(21); }),
                "sampling.top_logprobs", "[0, 20]");
  ExpectInvalid(with([](auto& r) { r.mutable_stopping()->set_max_new_tokens(201); }),
                "stopping.max_new_tokens", "201 exceeds the server's cap of 200");
  ExpectInvalid(with([](auto& r) { r.mutable_stopping()->set_max_new_tokens(-1); }),
                "stopping.max_new_tokens", ">= 0");
  ExpectInvalid(with([](auto& r) { r.mutable_stopping()->add_stop_token_ids(999); }),
                "stopping.stop_token_ids[0]", "999 is not a token id");
  ExpectInvalid(with([](auto& r) { r.mutable_stopping()->add_stop_strings(""); }),
                "stopping.stop_strings[0]", "must not be empty");
  ExpectInvalid(with([](auto& r) { r.mutable_stopping()->set_max_total_tokens(1001); }),
                "stopping.max_total_tokens", "exceeds the model's context limit of 1000");
  ExpectInvalid(with([](auto& r) { r.mutable_stopping()->set_max_total_tokens(3); }),
                "stopping.max_total_tokens", "leaves no room after the prompt's 3 tokens");
}

TEST(StatusMapTest, FinishReasonsMapToCodes) {
  EXPECT_TRUE(FinishStatus(FinishReason::kLength, absl::OkStatus(), false).ok());
  EXPECT_TRUE(FinishStatus(FinishReason::kEos, absl::OkStatus(), false).ok());
  EXPECT_TRUE(FinishStatus(FinishReason::kStop, absl::OkStatus(), false).ok());
  EXPECT_EQ(FinishStatus(FinishReason::kCancelled, absl::OkStatus(), true).error_code(),
            grpc::StatusCode::CANCELLED);
  EXPECT_EQ(FinishStatus(FinishReason::kCancelled, absl::OkStatus(), false).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(FinishStatus(FinishReason::kDeadline, absl::OkStatus(), false).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  const grpc::Status err =
      FinishStatus(FinishReason::kError, absl::InternalError("runner exploded"), false);
  EXPECT_EQ(err.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(err.error_message(), HasSubstr("runner exploded"));
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("full")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("full")).error_message(), "full");
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(ToProtoFinishReason(FinishReason::kEos), v1::FINISH_REASON_EOS);
}

}  // namespace
}  // namespace deltaserve

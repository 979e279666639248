// Tests for `deltaserve serve` flag parsing and ServerConfig validation.
#include "server/serve_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<ServeFlagsResult> Parse(std::vector<std::string> args) {
  return ParseServeFlags(args);
}

TEST(ServeFlagsTest, DefaultsNeedOnlyTheModel) {
  auto r = Parse({"--model", "models/default"});
  ASSERT_TRUE(r.ok()) << r.status();
  const ServerConfig& c = r->config;
  EXPECT_EQ(c.model_dir, "models/default");
  EXPECT_EQ(c.backend, "cpu");
  EXPECT_EQ(c.port, 50051);
  EXPECT_EQ(c.metrics_port, 9400);
  EXPECT_EQ(c.state_dtype, "f32");
  EXPECT_EQ(c.ring_dtype, "state");
  EXPECT_EQ(c.pool_budget_bytes, int64_t{1} << 30);
  EXPECT_EQ(c.engine.max_new_tokens_cap, 4096);
  EXPECT_EQ(c.log_format, LogFormat::kText);
  EXPECT_FALSE(r->help);
}

// Step sizes default per backend: the CUDA backend takes bigger steps; an explicit flag always
// wins, and a prefill chunk that is not given never exceeds the token budget.
TEST(ServeFlagsTest, StepDefaultsFollowTheBackend) {
  auto cpu = Parse({"--model=m"});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->config.engine.max_step_tokens, EngineConfig{}.max_step_tokens);
  EXPECT_EQ(cpu->config.engine.prefill_chunk, EngineConfig{}.prefill_chunk);
  auto cuda = Parse({"--model=m", "--backend=cuda"});
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  EXPECT_EQ(cuda->config.engine.max_step_tokens, kCudaTokenBudget);
  EXPECT_EQ(cuda->config.engine.prefill_chunk, kCudaPrefillChunk);
  auto small_budget = Parse({"--model=m", "--backend=cuda", "--token-budget=1000"});
  ASSERT_TRUE(small_budget.ok()) << small_budget.status();
  EXPECT_EQ(small_budget->config.engine.max_step_tokens, 1000);
  EXPECT_EQ(small_budget->config.engine.prefill_chunk, 1000);
  auto cpu_small = Parse({"--model=m", "--token-budget=100"});
  ASSERT_TRUE(cpu_small.ok()) << cpu_small.status();
  EXPECT_EQ(cpu_small->config.engine.prefill_chunk, 100);
  auto chunk_only = Parse({"--model=m", "--backend=cuda", "--prefill-chunk=256"});
  ASSERT_TRUE(chunk_only.ok()) << chunk_only.status();
  EXPECT_EQ(chunk_only->config.engine.max_step_tokens, kCudaTokenBudget);
  EXPECT_EQ(chunk_only->config.engine.prefill_chunk, 256);
  // An explicit chunk above the budget is still an error.
  EXPECT_FALSE(Parse({"--model=m", "--backend=cuda", "--prefill-chunk=9000"}).ok());
}

TEST(ServeFlagsTest, EveryFlagIsApplied) {
  auto r = Parse({"--model=m", "--backend=cuda", "--host", "127.0.0.1", "--port=0",
                  "--metrics-port=9999", "--pool-budget=64Mi", "--token-budget=1024",
                  "--prefill-chunk=128", "--max-batch=32", "--queue-limit=7", "--swap=false",
                  "--max-new-tokens-cap=100", "--default-max-new-tokens=50",
                  "--max-prompt-tokens=300", "--api-key-file=/k", "--tls-cert=c.pem",
                  "--tls-key=k.pem", "--max-message-bytes=1Mi", "--grpc-threads=64",
                  "--drain-grace=2.5", "--log-format=json", "--log-level=debug",
                  "--state-dtype=bf16", "--ring-dtype=f32", "--prefill-precision=tf32",
                  "--threads=3", "--device=1",
                  "--pool-slots=5",
                  "--preempt-after-steps=9", "--max-swapped=3"});
  ASSERT_TRUE(r.ok()) << r.status();
  const ServerConfig& c = r->config;
  EXPECT_EQ(c.backend, "cuda");
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 0);
  EXPECT_EQ(c.metrics_port, 9999);
  EXPECT_EQ(c.pool_budget_bytes, 64 << 20);
  EXPECT_EQ(c.engine.max_step_tokens, 1024);
  EXPECT_EQ(c.engine.prefill_chunk, 128);
  EXPECT_EQ(c.engine.max_batch_sequences, 32);
  EXPECT_EQ(c.engine.max_waiting, 7);
  EXPECT_FALSE(c.engine.enable_swap);
  EXPECT_EQ(c.engine.preempt_after_steps, 9);
  EXPECT_EQ(c.engine.max_swapped, 3);
  EXPECT_EQ(c.engine.max_new_tokens_cap, 100);
  EXPECT_EQ(c.default_max_new_tokens, 50);
  EXPECT_EQ(c.max_prompt_tokens, 300);
  EXPECT_EQ(c.api_key_file, "/k");
  EXPECT_EQ(c.tls_cert_file, "c.pem");
  EXPECT_EQ(c.tls_key_file, "k.pem");
  EXPECT_EQ(c.max_message_bytes, 1 << 20);
  EXPECT_EQ(c.grpc_threads, 64);
  EXPECT_DOUBLE_EQ(c.drain_grace_seconds, 2.5);
  EXPECT_EQ(c.log_format, LogFormat::kJson);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.state_dtype, "bf16");
  EXPECT_EQ(c.ring_dtype, "f32");
  EXPECT_EQ(c.prefill_precision, "tf32");
  EXPECT_EQ(c.cpu_threads, 3);
  EXPECT_EQ(c.device, 1);
  EXPECT_EQ(c.pool_slots, 5);
}

TEST(ServeFlagsTest, DefaultMaxNewTokensFollowsALowerCap) {
  auto r = Parse({"--model=m", "--max-new-tokens-cap=100"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.default_max_new_tokens, 100);
  r = Parse({"--model=m", "--max-new-tokens-cap=100", "--default-max-new-tokens=200"});
  ASSERT_FALSE(r.ok());
}

TEST(ServeFlagsTest, BareBooleanMeansTrue) {
  auto r = Parse({"--model=m", "--swap", "--port=1"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->config.engine.enable_swap);
  EXPECT_EQ(r->config.port, 1);
}

TEST(ServeFlagsTest, HelpStopsParsing) {
  auto r = Parse({"--help", "--bogus"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->help);
  EXPECT_THAT(ServeUsage(), HasSubstr("--metrics-port"));
  EXPECT_THAT(ServeUsage(), HasSubstr("--drain-grace"));
}

TEST(ServeFlagsTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    const char* expected;
  };
  const Case cases[] = {
      {{}, "--model: is required"},
      {{"--model=m", "--bogus=1"}, "unknown flag --bogus"},
      {{"--model=m", "stray"}, "unexpected argument \"stray\""},
      {{"--model=m", "--port"}, "--port: missing value"},
      {{"--model=m", "--port=abc"}, "--port: expected an integer"},
      {{"--model=m", "--port=70000"}, "--port: must be in 0..65535"},
      {{"--model=m", "--metrics-port=50051"}, "--metrics-port: must differ from --port"},
      {{"--model=m", "--backend=tpu"}, "--backend: must be cpu or cuda"},
      {{"--model=m", "--pool-budget=lots"}, "--pool-budget: expected a byte size"},
      {{"--model=m", "--pool-budget=0"}, "--pool-budget: must be > 0"},
      {{"--model=m", "--token-budget=0"}, "--token-budget: must be >= 1"},
      {{"--model=m", "--prefill-chunk=4096"}, "--prefill-chunk: must be <= --token-budget"},
      {{"--model=m", "--queue-limit=-1"}, "--queue-limit: must be >= 0"},
      {{"--model=m", "--swap=maybe"}, "--swap: expected true or false"},
      {{"--model=m", "--preempt-after-steps=0"}, "--preempt-after-steps: must be >= 1"},
      {{"--model=m", "--max-swapped=-2"}, "--max-swapped: must be >= 0"},
      {{"--model=m", "--default-max-new-tokens=5000"}, "--default-max-new-tokens: must be in 1..4096"},
      {{"--model=m", "--tls-cert=c.pem"}, "--tls-key: --tls-cert and --tls-key must be given together"},
      {{"--model=m", "--max-message-bytes=10"}, "--max-message-bytes: must be in 1024.."},
      {{"--model=m", "--drain-grace=-1"}, "--drain-grace: must be in 0..86400"},
      {{"--model=m", "--log-format=xml"}, "--log-format: expected text or json"},
      {{"--model=m", "--log-level=loud"}, "--log-level: must be trace"},
      {{"--model=m", "--state-dtype=f16"}, "--state-dtype: must be f32 or bf16"},
      {{"--model=m", "--ring-dtype=fp8"}, "--ring-dtype: must be state, f32 or bf16"},
      {{"--model=m", "--prefill-precision=fp16"},
       "--prefill-precision: must be fp32, tf32 or bf16"},
      {{"--model=m", "--pool-slots=-2"}, "--pool-slots: must be >= 0"},
  };
  for (const Case& c : cases) {
    auto r = ParseServeFlags(c.args);
    ASSERT_FALSE(r.ok()) << c.expected;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.expected));
  }
}

TEST(ServeFlagsTest, ByteSizes) {
  EXPECT_EQ(*ParseByteSize("123"), 123);
  EXPECT_EQ(*ParseByteSize("2K"), 2000);
  EXPECT_EQ(*ParseByteSize("2Ki"), 2048);
  EXPECT_EQ(*ParseByteSize("3Mi"), 3 << 20);
  EXPECT_EQ(*ParseByteSize("1G"), 1000000000);
  EXPECT_EQ(*ParseByteSize("4Gi"), int64_t{4} << 30);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("Mi").ok());
  EXPECT_FALSE(ParseByteSize("-1").ok());
  EXPECT_FALSE(ParseByteSize("1.5G").ok());
  EXPECT_FALSE(ParseByteSize("99999999999Ti").ok());
}

}  // namespace
}  // namespace deltaserve

// Tests of `deltaserve generate` flag parsing (server/generate_flags.h).
#include "server/generate_flags.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<GenerateFlagsResult> Parse(std::vector<std::string> args) {
  return ParseGenerateFlags(args);
}

// The error message of parsing `args`, which must fail with InvalidArgument.
std::string Error(std::vector<std::string> args) {
  absl::StatusOr<GenerateFlagsResult> r = Parse(std::move(args));
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

TEST(GenerateFlagsTest, Defaults) {
  absl::StatusOr<GenerateFlagsResult> r = Parse({"--model", "m", "--prompt", "hi"});
  ASSERT_TRUE(r.ok()) << r.status();
  const GenerateOptions& o = r->options;
  EXPECT_FALSE(r->help);
  EXPECT_EQ(o.model_dir, "m");
  EXPECT_EQ(o.prompt, "hi");
  EXPECT_FALSE(o.prompt_ids.has_value());
  EXPECT_EQ(o.max_new_tokens, 64);
  EXPECT_EQ(o.sampling.temperature, 1.0f);
  EXPECT_EQ(o.sampling.seed, 0u);
  EXPECT_EQ(o.backend, "cpu");
  EXPECT_EQ(o.state_dtype, StateDtype::kF32);
  EXPECT_FALSE(o.ring_dtype.has_value());
  EXPECT_FALSE(o.ignore_eos);
  EXPECT_FALSE(o.print_ids);
  EXPECT_FALSE(o.no_bos);
  EXPECT_TRUE(o.stop.empty());
}

TEST(GenerateFlagsTest, EveryFlag) {
  absl::StatusOr<GenerateFlagsResult> r =
      Parse({"--model=dir", "--prompt-ids", "1, 2,3", "--max-new-tokens", "7",
             "--temperature=0.5", "--seed", "18446744073709551615", "--top-k", "40",
             "--top-p", "0.9", "--min-p=0.05", "--repetition-penalty", "1.1", "--stop", "\n\n",
             "--stop=END", "--ignore-eos", "--backend", "cuda", "--state-dtype", "bf16",
             "--ring-dtype", "f32", "--prefill-precision", "tf32",
             "--threads", "3", "--print-ids", "--no-bos"});
  ASSERT_TRUE(r.ok()) << r.status();
  const GenerateOptions& o = r->options;
  EXPECT_EQ(o.model_dir, "dir");
  EXPECT_FALSE(o.prompt.has_value());
  ASSERT_TRUE(o.prompt_ids.has_value());
  EXPECT_THAT(*o.prompt_ids, ElementsAre(1, 2, 3));
  EXPECT_EQ(o.max_new_tokens, 7);
  EXPECT_FLOAT_EQ(o.sampling.temperature, 0.5f);
  EXPECT_EQ(o.sampling.seed, 18446744073709551615ull);
  EXPECT_EQ(o.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(o.sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(o.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(o.sampling.repetition_penalty, 1.1f);
  EXPECT_THAT(o.stop, ElementsAre("\n\n", "END"));
  EXPECT_TRUE(o.ignore_eos);
  EXPECT_EQ(o.backend, "cuda");
  EXPECT_EQ(o.state_dtype, StateDtype::kBF16);
  EXPECT_EQ(o.ring_dtype, StateDtype::kF32);
  EXPECT_EQ(o.prefill_precision, PrefillPrecision::kTf32);
  EXPECT_EQ(o.threads, 3);
  EXPECT_TRUE(o.print_ids);
  EXPECT_TRUE(o.no_bos);
}

TEST(GenerateFlagsTest, PromptMayBeEmptyOrLookLikeAFlag) {
  absl::StatusOr<GenerateFlagsResult> r = Parse({"--model", "m", "--prompt", ""});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.prompt, "");
  r = Parse({"--model", "m", "--prompt", "--not-a-flag"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.prompt, "--not-a-flag");
}

TEST(GenerateFlagsTest, Help) {
  absl::StatusOr<GenerateFlagsResult> r = Parse({"--bogus-is-not-reached", "x"});
  EXPECT_FALSE(r.ok());
  r = Parse({"--help"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->help);
  r = Parse({"-h"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->help);
  const std::string usage = GenerateUsage();
  for (const char* flag : {"--model", "--prompt", "--prompt-ids", "--max-new-tokens",
                           "--temperature", "--seed", "--top-k", "--top-p", "--min-p",
                           "--repetition-penalty", "--stop", "--ignore-eos", "--backend",
                           "--state-dtype", "--ring-dtype", "--prefill-precision",
                           "--print-ids", "--no-bos",
                           "--help"}) {
    EXPECT_THAT(usage, HasSubstr(flag));
  }
}

TEST(GenerateFlagsTest, RequiredFlags) {
  EXPECT_THAT(Error({"--prompt", "x"}), HasSubstr("--model"));
  EXPECT_THAT(Error({"--model", "m"}), HasSubstr("--prompt"));
  EXPECT_THAT(Error({"--model", "m", "--prompt", "x", "--prompt-ids", "1"}),
              HasSubstr("exactly one"));
}

TEST(GenerateFlagsTest, MalformedCommandLines) {
  EXPECT_THAT(Error({"--model", "m", "--prompt", "x", "--bogus"}), HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(Error({"--model", "m", "--prompt"}), HasSubstr("--prompt needs a value"));
  EXPECT_THAT(Error({"--model", "m", "stray", "--prompt", "x"}), HasSubstr("stray"));
  EXPECT_THAT(Error({"--model", "m", "--prompt", "x", "--ignore-eos=yes"}),
              HasSubstr("--ignore-eos takes no value"));
  EXPECT_THAT(Error({"--model", "m", "--prompt", "x", "--"}), HasSubstr("unexpected argument"));
}

TEST(GenerateFlagsTest, OutOfRangeValuesNameTheFlag) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--max-new-tokens", "0"},   {"--max-new-tokens", "x"},    {"--max-new-tokens", "1e3"},
      {"--temperature", "-0.1"},   {"--temperature", "nan"},     {"--temperature", "inf"},
      {"--seed", "-1"},            {"--top-k", "-1"},            {"--top-p", "0"},
      {"--top-p", "1.5"},          {"--min-p", "1"},             {"--min-p", "-0.1"},
      {"--repetition-penalty", "0"}, {"--backend", "tpu"},       {"--state-dtype", "f16"},
      {"--ring-dtype", "f16"},
      {"--threads", "-2"},         {"--stop", ""},               {"--prompt-ids", "1,,2"},
      {"--prompt-ids", "1,-2"},    {"--prompt-ids", "a"},        {"--prompt-ids", ""},
  };
  for (const auto& [flag, value] : bad) {
    EXPECT_THAT(Error({"--model", "m", "--prompt-ids", "1", flag, value}), HasSubstr(flag))
        << flag << " " << value;
  }
}

}  // namespace
}  // namespace deltaserve

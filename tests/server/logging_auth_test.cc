// Tests for the per-request log record formats and API-key checks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "nlohmann/json.hpp"
#include "server/auth.h"
#include "server/logging.h"

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

RequestLogRecord Record() {
  RequestLogRecord r;
  r.id = "req-1";
  r.method = "Generate";
  r.code = "OK";
  r.finish_reason = "length";
  r.prompt_tokens = 12;
  r.generated_tokens = 34;
  r.queue_seconds = 0.5;
  r.first_token_seconds = 0.75;
  r.total_seconds = 2.0;
  return r;
}

TEST(RequestLogTest, TextRecordHasEveryField) {
  const std::string s = FormatRequestText(Record());
  EXPECT_EQ(s,
            "request id=req-1 method=Generate code=OK finish_reason=length prompt_tokens=12 "
            "generated_tokens=34 queue_s=0.500000 ttft_s=0.750000 total_s=2.000000");
  RequestLogRecord r = Record();
  r.code = "INVALID_ARGUMENT";
  r.message = "prompt: must \"not\" be empty";
  EXPECT_THAT(FormatRequestText(r), HasSubstr(" message=\"prompt: must \\\"not\\\" be empty\""));
}

TEST(RequestLogTest, JsonRecordParses) {
  RequestLogRecord r = Record();
  r.message = "a \"quoted\" message";
  const auto j = nlohmann::json::parse("{" + FormatRequestJsonFields(r) + "}");
  EXPECT_EQ(j["event"], "request_finished");
  EXPECT_EQ(j["id"], "req-1");
  EXPECT_EQ(j["method"], "Generate");
  EXPECT_EQ(j["code"], "OK");
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["prompt_tokens"], 12);
  EXPECT_EQ(j["generated_tokens"], 34);
  EXPECT_DOUBLE_EQ(j["ttft_s"].get<double>(), 0.75);
  EXPECT_EQ(j["message"], "a \"quoted\" message");
}

TEST(ApiKeyAuthTest, DisabledAdmitsEverything) {
  ApiKeyAuth auth;
  EXPECT_FALSE(auth.enabled());
  EXPECT_TRUE(auth.CheckHeader(nullptr).ok());
}

TEST(ApiKeyAuthTest, BearerKeysAreChecked) {
  ApiKeyAuth auth({"secret-1", "secret-2"});
  const std::string good = "Bearer secret-2";
  const std::string lower = "bearer secret-1";
  const std::string wrong = "Bearer secret-3";
  const std::string prefix = "Bearer secret-";
  const std::string basic = "Basic secret-1";
  EXPECT_TRUE(auth.CheckHeader(&good).ok());
  EXPECT_TRUE(auth.CheckHeader(&lower).ok());
  for (const std::string* bad : {&wrong, &prefix, &basic}) {
    const grpc::Status s = auth.CheckHeader(bad);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << *bad;
  }
  const grpc::Status missing = auth.CheckHeader(nullptr);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("authorization"));
}

TEST(ApiKeyAuthTest, KeysFromFile) {
  const std::string path = std::string(DELTASERVE_BINARY_DIR) + "/api_keys_test.txt";
  {
    std::ofstream f(path);
    f << "# comment\n\n  key-a  \nkey-b\n";
  }
  auto auth = ApiKeyAuth::FromFile(path);
  ASSERT_TRUE(auth.ok()) << auth.status();
  const std::string a = "Bearer key-a";
  const std::string comment = "Bearer # comment";
  EXPECT_TRUE(auth->CheckHeader(&a).ok());
  EXPECT_FALSE(auth->CheckHeader(&comment).ok());
  {
    std::ofstream f(path);
    f << "# only a comment\n";
  }
  EXPECT_THAT(std::string(ApiKeyAuth::FromFile(path).status().message()), HasSubstr("holds no key"));
  std::remove(path.c_str());
  EXPECT_THAT(std::string(ApiKeyAuth::FromFile(path).status().message()),
              HasSubstr("--api-key-file: cannot read"));
}

}  // namespace
}  // namespace deltaserve

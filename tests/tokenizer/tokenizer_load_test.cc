// Tests of Tokenizer::Load: choosing the tokenizer a config names and checking it against the
// config. Uses the SentencePiece model of the tokenizer_spm_model fixture.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

namespace fs = std::filesystem;

constexpr char kModelPath[] = DELTASERVE_TEST_SPM_MODEL;

ModelConfig ByteConfig() {
  ModelConfig c;
  c.vocab_size = 258;
  c.bos_token_id = 256;
  c.eos_token_id = 257;
  c.tokenizer_type = TokenizerType::kByte;
  return c;
}

ModelConfig SentencePieceConfig(const std::string& file) {
  ModelConfig c;
  c.vocab_size = 400;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.tokenizer_type = TokenizerType::kSentencePiece;
  c.tokenizer_file = file;
  return c;
}

// A fresh directory under the test's temporary directory (per process: ctest runs in parallel),
// removed when the test ends.
class ScopedDir {
 public:
  explicit ScopedDir(const std::string& name)
      : path_((fs::path(::testing::TempDir()) /
               ("tokenizer_load_test_" + std::to_string(getpid()) + "_" + name))
                  .string()) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScopedDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(TokenizerLoadTest, ByteTokenizer) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load("unused-dir", ByteConfig());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 258);
  EXPECT_EQ((*t)->bos_id(), 256);
  absl::StatusOr<std::vector<int32_t>> ids = (*t)->Encode("hi");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 2u);
}

TEST(TokenizerLoadTest, ByteTokenizerVocabMismatch) {
  ModelConfig c = ByteConfig();
  c.vocab_size = 300;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load("dir", c);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("vocab_size"), HasSubstr("300"),
                                          HasSubstr("258")));
}

TEST(TokenizerLoadTest, SpecialIdsMustMatchTheTokenizer) {
  ModelConfig c = ByteConfig();
  c.eos_token_id = 2;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load("dir", c);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("eos_token_id"));
  // -1: the model uses none, which is always consistent.
  c.eos_token_id = -1;
  c.bos_token_id = -1;
  EXPECT_TRUE(Tokenizer::Load("dir", c).ok());
}

TEST(TokenizerLoadTest, SentencePieceRelativeToModelDir) {
  const fs::path model(kModelPath);
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Load(model.parent_path().string(), SentencePieceConfig(model.filename()));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 400);
  EXPECT_EQ((*t)->eos_id(), 2);
  absl::StatusOr<std::vector<int32_t>> ids = (*t)->Encode("the state");
  ASSERT_TRUE(ids.ok());
  absl::StatusOr<std::string> text = (*t)->Decode(*ids);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "the state");
}

TEST(TokenizerLoadTest, SentencePieceAbsolutePath) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Load("/elsewhere", SentencePieceConfig(kModelPath));
  ASSERT_TRUE(t.ok()) << t.status();
}

TEST(TokenizerLoadTest, SentencePieceVocabMismatch) {
  ModelConfig c = SentencePieceConfig(kModelPath);
  c.vocab_size = 32000;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load("dir", c);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr("vocab_size"), HasSubstr("32000"), HasSubstr("400"),
                    HasSubstr(kModelPath)));
}

TEST(TokenizerLoadTest, MissingFileNamesIt) {
  const ScopedDir scoped("missing");
  const std::string& dir = scoped.path();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Load(dir, SentencePieceConfig("tokenizer.model"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr(dir + "/tokenizer.model"));
}

TEST(TokenizerLoadTest, CorruptFileNamesIt) {
  const ScopedDir scoped("corrupt");
  const std::string& dir = scoped.path();
  {
    std::ofstream out(dir + "/tokenizer.model", std::ios::binary);
    out << "this is not a serialized SentencePiece model \x01\x02\x03";
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Load(dir, SentencePieceConfig("tokenizer.model"));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr(dir + "/tokenizer.model"));
}

TEST(TokenizerLoadTest, TruncatedModelFails) {
  const ScopedDir scoped("truncated");
  const std::string& dir = scoped.path();
  std::string bytes;
  {
    std::ifstream in(kModelPath, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 100u);
  {
    std::ofstream out(dir + "/tokenizer.model", std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Load(dir, SentencePieceConfig("tokenizer.model"));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr(dir + "/tokenizer.model"));
}

TEST(TokenizerLoadTest, DirectoryIsNotAFile) {
  const ScopedDir scoped("isdir");
  const std::string& dir = scoped.path();
  fs::create_directories(dir + "/tokenizer.model");
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Load(dir, SentencePieceConfig("tokenizer.model"));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("not a regular file"));
}

TEST(TokenizerLoadTest, EmptyFileNameIsAnError) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load("dir", SentencePieceConfig(""));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.file"));
}

}  // namespace
}  // namespace deltaserve

// Tests of SentencePieceTokenizer against a real SentencePiece model: a tiny BPE model with byte
// fallback, trained by spm_train from data/corpus.txt when the tests run (ctest fixture
// tokenizer_spm_model; its path is DELTASERVE_TEST_SPM_MODEL).
#include "engine/sentencepiece_tokenizer.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

constexpr char kModelPath[] = DELTASERVE_TEST_SPM_MODEL;
constexpr char kSpace[] = "\xE2\x96\x81";  // U+2581

// Texts to round-trip. The first ones use only characters of the training corpus; the rest have
// characters the model never saw (Greek, CJK, an emoji, a newline, a tab), which it must spell
// with byte-fallback pieces.
const std::vector<std::string>& Texts() {
  static const auto* texts = new std::vector<std::string>{
      "The state of one layer is a small matrix per head.",
      "Hello world",
      "  two leading spaces, and two  inside, and one trailing ",
      "Numbers 1024 and 65536!",
      "A caf\xC3\xA9 in Z\xC3\xBCrich",  // "A café in Zürich": in the corpus
      "\xCE\xA9\xCE\xBC\xCE\xAD\xCE\xB3\xCE\xB1 and \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",  // Ωμέγα 日本語
      "emoji \xF0\x9F\x99\x82 inside",                                                    // 🙂
      "line one\nline two\tTabbed",
      "\xE2\x82\xAC",  // "€" alone, first token a byte run
      "x",
  };
  return *texts;
}

class SentencePieceTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> t =
        SentencePieceTokenizer::Load(kModelPath);
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = t->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }

  static std::vector<int32_t> Encode(const std::string& text) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }
  static std::string Decode(const std::vector<int32_t>& ids) {
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : std::string();
  }
  static std::string Concat(const std::vector<int32_t>& ids, size_t begin = 0) {
    std::string out;
    for (size_t i = begin; i < ids.size(); ++i) out += tokenizer_->TokenBytes(ids[i]);
    return out;
  }
  static bool IsBytePiece(int32_t id) { return tokenizer_->Piece(id).starts_with("<0x"); }
  // A byte-fallback piece for a UTF-8 continuation byte (10xxxxxx).
  static bool IsContinuationByte(int32_t id) {
    if (!IsBytePiece(id)) return false;
    std::string_view b = tokenizer_->TokenBytes(id);
    return b.size() == 1 && (static_cast<unsigned char>(b[0]) & 0xC0) == 0x80;
  }

  static SentencePieceTokenizer* tokenizer_;
};

SentencePieceTokenizer* SentencePieceTokenizerTest::tokenizer_ = nullptr;

TEST_F(SentencePieceTokenizerTest, ModelShape) {
  EXPECT_EQ(tokenizer_->vocab_size(), 400);
  EXPECT_EQ(tokenizer_->bos_id(), 1);
  EXPECT_EQ(tokenizer_->eos_id(), 2);
  EXPECT_EQ(tokenizer_->Piece(1), "<s>");
  EXPECT_EQ(tokenizer_->Piece(3), "<0x00>");
}

TEST_F(SentencePieceTokenizerTest, EncodeDecodeRoundTrips) {
  for (const std::string& text : Texts()) {
    const std::vector<int32_t> ids = Encode(text);
    ASSERT_FALSE(ids.empty()) << text;
    EXPECT_EQ(Decode(ids), text);
  }
}

TEST_F(SentencePieceTokenizerTest, UnseenCharactersUseByteFallback) {
  // "日" is E6 97 A5; the model never saw it, so its bytes appear as three byte pieces.
  const std::vector<int32_t> ids = Encode("a\xE6\x97\xA5");
  int byte_pieces = 0;
  std::string bytes;
  for (int32_t id : ids) {
    if (IsBytePiece(id)) {
      ++byte_pieces;
      bytes += tokenizer_->TokenBytes(id);
    }
  }
  EXPECT_EQ(byte_pieces, 3);
  EXPECT_EQ(bytes, "\xE6\x97\xA5");
  // Seen characters are not spelled with bytes.
  for (int32_t id : Encode("the state")) EXPECT_FALSE(IsBytePiece(id)) << id;
}

// Concatenating TokenBytes reproduces Decode, except that Decode drops the dummy-prefix space
// the first piece starts with (the leading-space rule, see sentencepiece_tokenizer.h).
TEST_F(SentencePieceTokenizerTest, TokenBytesConcatenationFollowsTheLeadingSpaceRule) {
  for (const std::string& text : Texts()) {
    const std::vector<int32_t> ids = Encode(text);
    ASSERT_TRUE(tokenizer_->Piece(ids[0]).starts_with(kSpace)) << text;
    std::string with_space = " ";  // (not `" " + Decode(ids)`: GCC 12 -Wrestrict false positive)
    with_space += Decode(ids);
    EXPECT_EQ(Concat(ids), with_space) << text;
  }
}

// Streaming: after any prefix that ends on a complete character, the remaining tokens' bytes
// extend the decoded prefix to exactly the decoded whole.
TEST_F(SentencePieceTokenizerTest, StreamedTokenBytesExtendTheDecodedPrefix) {
  for (const std::string& text : Texts()) {
    const std::vector<int32_t> ids = Encode(text);
    const std::string whole = Decode(ids);
    for (size_t k = 1; k < ids.size(); ++k) {
      if (IsContinuationByte(ids[k])) continue;  // the prefix would end inside a character
      const std::vector<int32_t> prefix(ids.begin(), ids.begin() + k);
      EXPECT_EQ(Decode(prefix) + Concat(ids, k), whole) << text << " split at " << k;
    }
  }
}

// A generation after a BOS-led prompt: the generated tokens' bytes extend the prompt's decode.
TEST_F(SentencePieceTokenizerTest, StreamAfterBosPrompt) {
  std::vector<int32_t> prompt = {tokenizer_->bos_id()};
  for (int32_t id : Encode("The quick brown fox")) prompt.push_back(id);
  EXPECT_EQ(Decode(prompt), "The quick brown fox");
  const std::vector<int32_t> generated = Encode(" jumps over \xCE\xA9 the lazy dog");
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  // Encode adds its own dummy prefix: " jumps" is encoded as if it were "  jumps"; the stream
  // carries both spaces.
  EXPECT_EQ(Decode(prompt) + Concat(generated), Decode(all));
  EXPECT_EQ(Decode(all), "The quick brown fox  jumps over \xCE\xA9 the lazy dog");
}

// Every piece of the vocabulary, placed after a plain piece, adds exactly its TokenBytes to the
// library's decode. Byte pieces >= 0x80 are left out (alone they are not UTF-8; see below).
TEST_F(SentencePieceTokenizerTest, TokenBytesMatchesTheDecoderForEveryPiece) {
  const std::vector<int32_t> anchor = Encode("the");  // one piece, "\u2581the"
  ASSERT_EQ(anchor.size(), 1u);
  const std::string base = Decode(anchor);
  ASSERT_EQ(base, "the");
  for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
    if (IsBytePiece(id) && (static_cast<unsigned char>(tokenizer_->TokenBytes(id)[0]) >= 0x80)) {
      continue;
    }
    std::vector<int32_t> ids = anchor;
    ids.push_back(id);
    EXPECT_EQ(Decode(ids), base + std::string(tokenizer_->TokenBytes(id)))
        << "id " << id << " piece " << tokenizer_->Piece(id);
  }
}

TEST_F(SentencePieceTokenizerTest, SpecialAndUnknownPieces) {
  EXPECT_TRUE(tokenizer_->TokenBytes(tokenizer_->bos_id()).empty());
  EXPECT_TRUE(tokenizer_->TokenBytes(tokenizer_->eos_id()).empty());
  EXPECT_TRUE(tokenizer_->TokenBytes(-1).empty());
  EXPECT_TRUE(tokenizer_->TokenBytes(400).empty());
  // <unk> (id 0) shows as the library's unknown surface " \u2047 ".
  EXPECT_EQ(tokenizer_->TokenBytes(0), " \xE2\x81\x87 ");
  // Byte pieces are the raw byte, and a space piece is a space.
  EXPECT_EQ(tokenizer_->TokenBytes(3 + 0x41), "A");
  EXPECT_EQ(tokenizer_->TokenBytes(3 + 0xE6), "\xE6");
}

TEST_F(SentencePieceTokenizerTest, InvalidUtf8BytesDecodeToReplacementCharacter) {
  // A lone lead byte: Decode substitutes U+FFFD, TokenBytes keeps the raw byte (the streaming
  // consumer holds incomplete UTF-8 back until it completes).
  const std::vector<int32_t> anchor = Encode("x");
  std::vector<int32_t> ids = anchor;
  ids.push_back(3 + 0xE6);
  EXPECT_EQ(Decode(ids), "x\xEF\xBF\xBD");
}

TEST_F(SentencePieceTokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  const std::vector<int32_t> ids = {5, 400};
  absl::StatusOr<std::string> text = tokenizer_->Decode(ids);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("400"));
  const std::vector<int32_t> negative = {-1};
  EXPECT_FALSE(tokenizer_->Decode(negative).ok());
}

TEST(SentencePieceTokenizerLoadTest, MissingFileNamesThePath) {
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> t =
      SentencePieceTokenizer::Load("/nonexistent/dir/tokenizer.model");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("/nonexistent/dir/tokenizer.model"));
}

}  // namespace
}  // namespace deltaserve

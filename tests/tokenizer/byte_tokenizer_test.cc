// Tests of the built-in byte-level tokenizer.
#include "engine/byte_tokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Concat(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += t.TokenBytes(id);
  return out;
}

TEST(ByteTokenizerTest, SpecialIds) {
  ByteTokenizer t;
  EXPECT_EQ(t.vocab_size(), 258);
  EXPECT_EQ(t.bos_id(), 256);
  EXPECT_EQ(t.eos_id(), 257);
}

TEST(ByteTokenizerTest, EncodeGivesUtf8Bytes) {
  ByteTokenizer t;
  // "aé€" is 61 | C3 A9 | E2 82 AC in UTF-8.
  absl::StatusOr<std::vector<int32_t>> ids = t.Encode("a\xC3\xA9\xE2\x82\xAC");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(0x61, 0xC3, 0xA9, 0xE2, 0x82, 0xAC));
  absl::StatusOr<std::vector<int32_t>> empty = t.Encode("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ByteTokenizerTest, RoundTripsEveryByte) {
  ByteTokenizer t;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  absl::StatusOr<std::vector<int32_t>> ids = t.Encode(all);
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ((*ids)[b], b);
  absl::StatusOr<std::string> text = t.Decode(*ids);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, all);
  EXPECT_EQ(Concat(t, *ids), all);
}

TEST(ByteTokenizerTest, SpecialsContributeNothing) {
  ByteTokenizer t;
  EXPECT_TRUE(t.TokenBytes(256).empty());
  EXPECT_TRUE(t.TokenBytes(257).empty());
  EXPECT_TRUE(t.TokenBytes(258).empty());
  EXPECT_TRUE(t.TokenBytes(-1).empty());
  const std::vector<int32_t> ids = {256, 'h', 'i', 257};
  absl::StatusOr<std::string> text = t.Decode(ids);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "hi");
  EXPECT_EQ(Concat(t, ids), "hi");
}

TEST(ByteTokenizerTest, TokenBytesIsOneByte) {
  ByteTokenizer t;
  for (int b = 0; b < 256; ++b) {
    std::string_view s = t.TokenBytes(b);
    ASSERT_EQ(s.size(), 1u) << b;
    EXPECT_EQ(static_cast<unsigned char>(s[0]), b);
  }
}

TEST(ByteTokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  ByteTokenizer t;
  const std::vector<int32_t> ids = {'a', 258};
  absl::StatusOr<std::string> text = t.Decode(ids);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("258"));
  const std::vector<int32_t> negative = {-3};
  EXPECT_FALSE(t.Decode(negative).ok());
}

}  // namespace
}  // namespace deltaserve

// Tests of incremental detokenization: UTF-8 assembly (against the replacement behaviour of
// Python's decode(errors="replace")), and stop-string matching against a brute-force reference
// on random texts fed in random pieces.
#include "engine/text_streamer.h"

#include <random>
#include <string>
#include <vector>

#include "engine/stop_matcher.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

std::string Assemble(const std::vector<std::string>& pieces) {
  Utf8Assembler a;
  std::string out;
  for (const auto& p : pieces) a.Append(p, &out);
  a.Flush(&out);
  return out;
}

TEST(Utf8AssemblerTest, ReplacementMatchesPythonDecode) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(Assemble({"\xC3\xA9"}), "\xC3\xA9");
  EXPECT_EQ(Assemble({"\xFF"}), r);
  EXPECT_EQ(Assemble({"\xC3" "a"}), r + "a");
  EXPECT_EQ(Assemble({"\xE0\x80"}), r + r);
  EXPECT_EQ(Assemble({"\xED\xA0\x80"}), r + r + r);
  EXPECT_EQ(Assemble({"\xF0\x9F\x98\x80"}), "\xF0\x9F\x98\x80");
  EXPECT_EQ(Assemble({"\xF0\x9F\x98"}), r);
  EXPECT_EQ(Assemble({"\xE2\x82"}), r);
  EXPECT_EQ(Assemble({"a\x80" "b"}), "a" + r + "b");
  EXPECT_EQ(Assemble({"\xF4\x90\x80\x80"}), r + r + r + r);
  EXPECT_EQ(Assemble({"\xC0\xAF"}), r + r);
}

TEST(Utf8AssemblerTest, HoldsIncompleteCharacterAcrossPieces) {
  Utf8Assembler a;
  std::string out;
  a.Append("x\xF0", &out);
  EXPECT_EQ(out, "x");
  a.Append("\x9F", &out);
  a.Append("\x98", &out);
  EXPECT_EQ(out, "x");
  EXPECT_EQ(a.held(), 3u);
  a.Append("\x80y", &out);
  EXPECT_EQ(out, "x\xF0\x9F\x98\x80y");
  // Split invalid continuation: held lead then a non-continuation byte.
  a.Append("\xE2", &out);
  a.Append("z", &out);
  EXPECT_EQ(out, "x\xF0\x9F\x98\x80y\xEF\xBF\xBDz");
}

bool ValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (int k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

TEST(Utf8AssemblerTest, RandomBytesGiveValidUtf8AndSplitsDoNotMatter) {
  std::mt19937 gen(3);
  for (int iter = 0; iter < 300; ++iter) {
    std::string bytes;
    const int len = gen() % 40;
    for (int i = 0; i < len; ++i) {
      // Bias towards multi-byte structure.
      const int kind = gen() % 4;
      if (kind == 0) bytes += static_cast<char>('a' + gen() % 26);
      if (kind == 1) bytes += static_cast<char>(0x80 + gen() % 64);
      if (kind == 2) bytes += static_cast<char>(0xC0 + gen() % 64);
      if (kind == 3) bytes += static_cast<char>(gen() % 256);
    }
    const std::string whole = Assemble({bytes});
    EXPECT_TRUE(ValidUtf8(whole));
    std::vector<std::string> pieces;
    for (size_t i = 0; i < bytes.size();) {
      const size_t n = 1 + gen() % 3;
      pieces.push_back(bytes.substr(i, n));
      i += n;
    }
    EXPECT_EQ(Assemble(pieces), whole);
  }
}

// Reference: the text before the first stop string to complete (earliest end; at equal ends,
// the longest), or the whole text.
std::string ReferenceStop(const std::string& text, const std::vector<std::string>& stops,
                          bool* matched) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best = 0;
    for (const auto& s : stops) {
      if (!s.empty() && s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) {
        best = std::max(best, s.size());
      }
    }
    if (best > 0) {
      *matched = true;
      return text.substr(0, end - best);
    }
  }
  *matched = false;
  return text;
}

// The longest suffix of `text` that is a proper prefix of some stop string.
size_t ReferenceHold(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t l = std::min(s.size() - 1, text.size()); l > hold; --l) {
      if (text.compare(text.size() - l, l, s, 0, l) == 0) {
        hold = l;
        break;
      }
    }
  }
  return hold;
}

TEST(StopMatcherTest, MatchesBruteForceOnRandomTexts) {
  std::mt19937 gen(11);
  auto rand_str = [&](int max_len) {
    std::string s;
    const int len = 1 + gen() % max_len;
    for (int i = 0; i < len; ++i) s += static_cast<char>('a' + gen() % 3);
    return s;
  };
  int matches = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<std::string> stops;
    const int n_stops = 1 + gen() % 3;
    for (int i = 0; i < n_stops; ++i) stops.push_back(rand_str(5));
    const std::string text = rand_str(30);
    bool want_match = false;
    const std::string want = ReferenceStop(text, stops, &want_match);

    StopMatcher m(stops);
    std::string out;
    bool matched = false;
    std::string fed;
    for (size_t i = 0; i < text.size() && !matched;) {
      const size_t n = 1 + gen() % 4;
      const std::string piece = text.substr(i, n);
      i += n;
      fed += piece;
      matched = m.Append(piece, &out);
      if (!matched) {
        ASSERT_EQ(out + fed.substr(out.size()), fed);
        ASSERT_EQ(m.held(), ReferenceHold(fed, stops)) << "fed=" << fed;
        ASSERT_EQ(out.size() + m.held(), fed.size());
      }
    }
    if (!matched) m.Flush(&out);
    ASSERT_EQ(matched, want_match) << text;
    ASSERT_EQ(out, want) << text;
    matches += matched ? 1 : 0;
  }
  EXPECT_GT(matches, 500);
}

TEST(TextStreamerTest, StopStringAcrossTokensAndUtf8) {
  const std::vector<std::string> stops = {"\xC3\xA9nd", "XY"};
  TextStreamer ts(stops);
  std::string out;
  EXPECT_FALSE(ts.Append("ab", &out));
  EXPECT_FALSE(ts.Append("\xC3", &out));  // incomplete character held
  EXPECT_EQ(out, "ab");
  EXPECT_FALSE(ts.Append("\xA9", &out));  // "é" could start the stop string: held
  EXPECT_EQ(out, "ab");
  EXPECT_FALSE(ts.Append("n", &out));
  EXPECT_EQ(out, "ab");
  EXPECT_TRUE(ts.Append("d and more", &out));
  EXPECT_EQ(out, "ab");
  EXPECT_TRUE(ts.stopped());
  ts.Flush(&out);
  EXPECT_EQ(out, "ab");
}

TEST(TextStreamerTest, FlushReleasesHeldText) {
  const std::vector<std::string> stops = {"STOP"};
  TextStreamer ts(stops);
  std::string out;
  EXPECT_FALSE(ts.Append("hello ST", &out));
  EXPECT_EQ(out, "hello ");
  EXPECT_FALSE(ts.Append("\xE2\x82", &out));  // an incomplete character: nothing decided yet
  EXPECT_EQ(out, "hello ");
  ts.Flush(&out);
  EXPECT_EQ(out, "hello ST\xEF\xBF\xBD");
}

}  // namespace
}  // namespace deltaserve

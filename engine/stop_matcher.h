// StopMatcher: incremental search for stop strings in a growing text, holding back any suffix
// that could still become the start of a stop string.
//
// Feed text in pieces with Append; each call appends to `out` the text that can no longer be part
// of a stop string. When a stop string completes, Append returns true and `out` receives exactly
// the text before the match (the first stop string to complete wins; among those completing at
// the same byte, the longest, i.e. the one starting earliest). After a match, the matcher stays
// stopped. Flush releases the held-back text when the stream ends without a match.
//
// Matching is byte-wise with one Knuth-Morris-Pratt automaton per stop string: O(bytes x stops)
// per Append, independent of the text length; memory O(total stop-string length).
// Thread-safety: none; one owner.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace deltaserve {

class StopMatcher {
 public:
  StopMatcher() = default;
  // Empty stop strings are ignored.
  explicit StopMatcher(std::span<const std::string> stops);

  bool empty() const { return stops_.empty(); }
  bool stopped() const { return stopped_; }
  // Appends `text`; see the file comment. Returns true iff a stop string completed in `text`.
  bool Append(std::string_view text, std::string* out);
  // Appends whatever is held back (nothing after a match).
  void Flush(std::string* out);
  // Bytes currently held back.
  size_t held() const { return held_.size(); }

 private:
  struct Stop {
    std::string s;
    std::vector<uint32_t> fail;  // KMP failure function
    uint32_t state = 0;          // length of the longest prefix of s that is a suffix of the text
  };
  std::vector<Stop> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace deltaserve

// Incremental detokenization for one request's output: token bytes in, emit-safe text out.
//
// Utf8Assembler turns an arbitrary byte stream into valid UTF-8: complete characters pass
// through, an incomplete character at the end is held back until its remaining bytes arrive,
// and ill-formed bytes become U+FFFD (one per maximal ill-formed subpart, as Unicode recommends).
// TextStreamer chains it with a StopMatcher, so the text it emits never contains an incomplete
// character nor any part of a matched or possibly-matching stop string.
//
// Cost: O(bytes) per token plus the StopMatcher's O(bytes x stops); no allocation when the
// output string has capacity.
// Thread-safety: none; one owner (the engine thread).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "engine/stop_matcher.h"

namespace deltaserve {

class Utf8Assembler {
 public:
  // Appends the valid UTF-8 that `bytes` completes to `out`.
  void Append(std::string_view bytes, std::string* out);
  // Ends the stream: a held incomplete character becomes U+FFFD.
  void Flush(std::string* out);
  size_t held() const { return len_; }

 private:
  // Emits pending_[0..len_) as far as it is decided; keeps an incomplete character.
  void Drain(std::string* out, bool final);
  char pending_[4] = {};
  size_t len_ = 0;
};

class TextStreamer {
 public:
  TextStreamer() = default;
  explicit TextStreamer(std::span<const std::string> stop_strings) : stops_(stop_strings) {}

  // Appends one token's bytes. Emit-safe text goes to `out`. Returns true when a stop string
  // matched: `out` then ends right before it and the streamer emits nothing more.
  bool Append(std::string_view token_bytes, std::string* out);
  // Ends the stream without a match: releases held-back text (after a match: nothing).
  void Flush(std::string* out);
  bool stopped() const { return stops_.stopped(); }

 private:
  Utf8Assembler utf8_;
  StopMatcher stops_;
  std::string scratch_;
};

}  // namespace deltaserve

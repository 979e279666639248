// Utf8Assembler and TextStreamer (see text_streamer.h).
#include "engine/text_streamer.h"

#include <cstdint>

namespace deltaserve {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the character a lead byte starts (0: not a valid lead byte).
int SequenceLength(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Whether `b` may follow lead byte `lead` as the byte at index `i` (>= 1) of its character.
bool ValidContinuation(uint8_t lead, int i, uint8_t b) {
  if (i == 1) {
    switch (lead) {
      case 0xE0: return b >= 0xA0 && b <= 0xBF;  // no overlong 3-byte forms
      case 0xED: return b >= 0x80 && b <= 0x9F;  // no surrogates
      case 0xF0: return b >= 0x90 && b <= 0xBF;  // no overlong 4-byte forms
      case 0xF4: return b >= 0x80 && b <= 0x8F;  // <= U+10FFFF
      default: break;
    }
  }
  return b >= 0x80 && b <= 0xBF;
}

}  // namespace

void Utf8Assembler::Append(std::string_view bytes, std::string* out) {
  size_t i = 0;
  // Complete a held character first, one byte at a time.
  while (len_ > 0 && i < bytes.size()) {
    pending_[len_++] = bytes[i++];
    Drain(out, false);
  }
  // Fast path over the rest: copy runs of complete, valid characters.
  while (i < bytes.size()) {
    const uint8_t b = static_cast<uint8_t>(bytes[i]);
    if (b < 0x80) {
      size_t j = i + 1;
      while (j < bytes.size() && static_cast<uint8_t>(bytes[j]) < 0x80) ++j;
      out->append(bytes.data() + i, j - i);
      i = j;
      continue;
    }
    const int n = SequenceLength(b);
    if (n == 0) {
      out->append(kReplacement);
      ++i;
      continue;
    }
    int k = 1;
    while (k < n && i + k < bytes.size() &&
           ValidContinuation(b, k, static_cast<uint8_t>(bytes[i + k]))) {
      ++k;
    }
    if (k == n) {
      out->append(bytes.data() + i, n);
      i += n;
    } else if (i + k == bytes.size()) {
      // A valid but incomplete character at the end: hold it.
      for (int t = 0; t < k; ++t) pending_[len_++] = bytes[i + t];
      i += k;
    } else {
      out->append(kReplacement);  // the maximal ill-formed subpart
      i += k;
    }
  }
}

void Utf8Assembler::Drain(std::string* out, bool final) {
  while (len_ > 0) {
    const uint8_t lead = static_cast<uint8_t>(pending_[0]);
    const int n = SequenceLength(lead);
    size_t consumed;
    if (n == 0) {
      out->append(kReplacement);
      consumed = 1;
    } else {
      int k = 1;
      while (k < n && static_cast<size_t>(k) < len_ &&
             ValidContinuation(lead, k, static_cast<uint8_t>(pending_[k]))) {
        ++k;
      }
      if (k == n) {
        out->append(pending_, n);
        consumed = n;
      } else if (static_cast<size_t>(k) == len_ && !final) {
        return;  // still incomplete
      } else {
        out->append(kReplacement);
        consumed = k;
      }
    }
    for (size_t t = consumed; t < len_; ++t) pending_[t - consumed] = pending_[t];
    len_ -= consumed;
  }
}

void Utf8Assembler::Flush(std::string* out) { Drain(out, true); }

bool TextStreamer::Append(std::string_view token_bytes, std::string* out) {
  if (stops_.stopped()) return true;
  if (stops_.empty()) {
    utf8_.Append(token_bytes, out);
    return false;
  }
  scratch_.clear();
  utf8_.Append(token_bytes, &scratch_);
  return stops_.Append(scratch_, out);
}

void TextStreamer::Flush(std::string* out) {
  if (stops_.stopped()) return;
  if (stops_.empty()) {
    utf8_.Flush(out);
    return;
  }
  scratch_.clear();
  utf8_.Flush(&scratch_);
  if (stops_.Append(scratch_, out)) return;
  stops_.Flush(out);
}

}  // namespace deltaserve

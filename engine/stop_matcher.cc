// StopMatcher implementation (see stop_matcher.h).
#include "engine/stop_matcher.h"

#include <algorithm>

namespace deltaserve {

StopMatcher::StopMatcher(std::span<const std::string> stops) {
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    Stop st;
    st.s = s;
    st.fail.assign(s.size(), 0);
    uint32_t k = 0;
    for (size_t i = 1; i < s.size(); ++i) {
      while (k > 0 && s[i] != s[k]) k = st.fail[k - 1];
      if (s[i] == s[k]) ++k;
      st.fail[i] = k;
    }
    stops_.push_back(std::move(st));
  }
}

bool StopMatcher::Append(std::string_view text, std::string* out) {
  if (stopped_) return true;
  if (stops_.empty()) {
    out->append(text);
    return false;
  }
  const size_t base = held_.size();
  held_.append(text);
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    size_t match_len = 0;
    for (Stop& st : stops_) {
      uint32_t k = st.state;
      while (k > 0 && st.s[k] != c) k = st.fail[k - 1];
      if (st.s[k] == c) ++k;
      if (k == st.s.size()) {
        match_len = std::max(match_len, st.s.size());
        k = st.fail[k - 1];
      }
      st.state = k;
    }
    if (match_len > 0) {
      const size_t end = base + i + 1;  // one past the match, within held_
      out->append(held_, 0, end - match_len);
      held_.clear();
      stopped_ = true;
      return true;
    }
  }
  uint32_t keep = 0;
  for (const Stop& st : stops_) keep = std::max(keep, st.state);
  if (held_.size() > keep) {
    const size_t emit = held_.size() - keep;
    out->append(held_, 0, emit);
    held_.erase(0, emit);
  }
  return false;
}

void StopMatcher::Flush(std::string* out) {
  if (!stopped_) out->append(held_);
  held_.clear();
  for (Stop& st : stops_) st.state = 0;
}

}  // namespace deltaserve

#include "core/poll_pacer.hpp"

#include <algorithm>

namespace dpsd::core {

using std::chrono::milliseconds;

milliseconds PollPacer::delay(milliseconds now, milliseconds wanted) const {
  const milliseconds asked = std::max(wanted, milliseconds(0));
  if (count_ < kPollsPerWindow) return asked;
  // The oldest of the last five: the next poll may go out once it has left the window.
  const milliseconds earliest = sent_[next_] + kWindow;
  return std::max(asked, earliest - now);
}

void PollPacer::record(milliseconds now) {
  sent_[next_] = now;
  next_ = (next_ + 1) % kPollsPerWindow;
  if (count_ < kPollsPerWindow) ++count_;
}

}  // namespace dpsd::core

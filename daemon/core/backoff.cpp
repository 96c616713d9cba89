#include "core/backoff.hpp"

#include <algorithm>

namespace dpsd::core {

using std::chrono::milliseconds;

Backoff::Backoff(milliseconds initial, milliseconds max)
    : initial_(std::max(initial, milliseconds(1))), max_(std::max(max, initial_)) {}

milliseconds Backoff::ceiling() const {
  if (failures_ == 0) return milliseconds(0);
  // Doubling stops at max; the loop bound keeps the shift far from overflow.
  milliseconds value = initial_;
  for (unsigned i = 1; i < failures_ && value < max_; ++i) value *= 2;
  return std::min(value, max_);
}

milliseconds Backoff::next(std::uint64_t random, std::optional<milliseconds> retry_after) {
  ++failures_;
  const auto top = static_cast<std::uint64_t>(ceiling().count());
  const std::uint64_t floor = top / 10;
  const std::uint64_t span = top - floor + 1;
  const milliseconds drawn(static_cast<milliseconds::rep>(floor + random % span));
  // DPS's retry-after wins when it asks for longer, but never past max: one reply saying 86400
  // must not park an unprovisioned device for a day ([retry] max is the operator's bound).
  if (retry_after) {
    const milliseconds asked = std::clamp(*retry_after, milliseconds(0), max_);
    if (asked > drawn) return asked;
  }
  return drawn;
}

}  // namespace dpsd::core

#pragma once
// Exponential backoff with full jitter (the AWS architecture blog's "full jitter": a delay drawn
// uniformly below an exponentially growing ceiling), so a fleet that lost its uplink together
// does not come back in lockstep. Pure: the caller supplies the random numbers.
#include <chrono>
#include <cstdint>
#include <optional>

namespace dpsd::core {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max);

  // The delay before the next attempt after one more failure. `random` is uniform over the
  // whole uint64 range. The result lies in [ceiling/10, ceiling] where ceiling =
  // min(max, initial * 2^(failures-1)); the floor of a tenth keeps a retry storm from
  // degenerating into a busy loop when the draw is near zero. A DPS retry-after that asks for
  // longer wins, up to max.
  std::chrono::milliseconds next(std::uint64_t random,
                                 std::optional<std::chrono::milliseconds> retry_after = {});
  void reset() { failures_ = 0; }
  unsigned failures() const { return failures_; }
  std::chrono::milliseconds ceiling() const;  // for the current failure count

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  unsigned failures_ = 0;
};

}  // namespace dpsd::core

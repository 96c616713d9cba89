#pragma once
// DPS allows a device 5 operation-status polls per 10 s ("quotas and limits": "Device polling
// operation requests: 5/10 sec/device"). retry-after can ask for 1 s, and a reconnect can resume
// an operation at once, so the registration's own waits do not guarantee the limit. The pacer
// remembers when the last polls went out (across attempts: the daemon owns it) and says how long
// the next one must wait. Pure: the caller passes a monotonic "now".
#include <array>
#include <chrono>
#include <cstddef>

namespace dpsd::core {

class PollPacer {
 public:
  static constexpr std::size_t kPollsPerWindow = 5;
  // 10 s plus a margin, so that network jitter cannot make the service count six polls inside
  // its own 10 s window.
  static constexpr std::chrono::milliseconds kWindow{10500};

  // How long a poll that would go out `wanted` from now must wait instead (never less).
  std::chrono::milliseconds delay(std::chrono::milliseconds now,
                                  std::chrono::milliseconds wanted) const;
  void record(std::chrono::milliseconds now);

 private:
  std::array<std::chrono::milliseconds, kPollsPerWindow> sent_{};
  std::size_t count_ = 0;  // polls recorded, saturating at kPollsPerWindow
  std::size_t next_ = 0;   // ring index of the oldest of the last kPollsPerWindow polls
};

}  // namespace dpsd::core

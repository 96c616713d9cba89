#include "support/loop_run.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace dpsd::test {
namespace {

// One iteration, waiting at most until `deadline` for an event.
void run_once(sd_event* event, std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
      deadline - std::chrono::steady_clock::now());
  // Short slices, so that done() is checked again soon after anything happened.
  const auto slice = std::min(left, std::chrono::microseconds(50'000));
  const int r = sd_event_run(event, slice.count() > 0 ? static_cast<uint64_t>(slice.count()) : 0);
  if (r < 0) throw std::runtime_error(std::string("sd_event_run: ") + std::strerror(-r));
}

}  // namespace

bool run_loop_until(sd_event* event, const std::function<bool()>& done,
                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    run_once(event, deadline);
  }
  return true;
}

void run_loop_for(sd_event* event, std::chrono::milliseconds duration) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < deadline) run_once(event, deadline);
}

}  // namespace dpsd::test

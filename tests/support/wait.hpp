#pragma once
#include <chrono>
#include <functional>

namespace dpsd::test {

using namespace std::chrono_literals;

// Polls `condition` every `step` until it is true or `timeout` has passed; the condition is
// checked once more at the deadline so a slow machine does not lose a last-moment success.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = 20ms);

}  // namespace dpsd::test

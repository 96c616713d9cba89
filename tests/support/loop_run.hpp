#pragma once
// Driving an sd-event loop from a test: the in-process tests (BusService, MqttSession, Attempt)
// run the code under test on a loop of their own, one iteration at a time, until what they wait
// for happened. Bounded, so a test fails with its own message instead of hanging.
#include <systemd/sd-event.h>

#include <chrono>
#include <functional>

namespace dpsd::test {

// Runs `event` until `done()` holds (checked before each iteration) or `timeout` has passed;
// returns done(). Throws std::runtime_error when sd_event_run fails.
bool run_loop_until(sd_event* event, const std::function<bool()>& done,
                    std::chrono::milliseconds timeout);

// Runs `event` for `duration`: for the things a test must let happen before it can say that
// something else did not (the loop is driven, not slept on).
void run_loop_for(sd_event* event, std::chrono::milliseconds duration);

}  // namespace dpsd::test

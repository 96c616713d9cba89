// DPS allows 5 operation-status polls per 10 s per device (issue 11 item 4): the pacer keeps
// every path under it, whatever retry-after says and across reconnects.
#include <gtest/gtest.h>

#include <deque>

#include "core/poll_pacer.hpp"

namespace dpsd::core {
namespace {

using std::chrono::milliseconds;

// Simulates a device that wants to poll every `wanted` ms (retry-after 0 or 1 s, or a resume
// right after a reconnect) and checks every sliding 10 s window.
void expect_within_limit(milliseconds wanted) {
  PollPacer pacer;
  milliseconds now(1000);
  std::deque<milliseconds> sent;
  for (int i = 0; i < 60; ++i) {
    now += pacer.delay(now, wanted);
    pacer.record(now);
    sent.push_back(now);
    while (now - sent.front() >= milliseconds(10000)) sent.pop_front();
    ASSERT_LE(sent.size(), 5U) << "more than 5 polls within 10 s at poll " << i << " (wanted every "
                               << wanted.count() << " ms)";
  }
}

TEST(PollPacer, NoPathExceedsFivePollsPerTenSeconds) {
  for (const int ms : {0, 1, 500, 1000, 1999, 2000, 3000}) expect_within_limit(milliseconds(ms));
}

TEST(PollPacer, FirstFivePollsAreNotDelayed) {
  PollPacer pacer;
  milliseconds now(0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(pacer.delay(now, milliseconds(1000)), milliseconds(1000)) << i;
    now += milliseconds(1000);
    pacer.record(now);
  }
  // The sixth waits until the first has left the window (plus the margin).
  EXPECT_EQ(pacer.delay(now, milliseconds(1000)), milliseconds(1000 + 10500 - 5000));
}

TEST(PollPacer, SlowPollsAreNeverDelayed) {
  PollPacer pacer;
  milliseconds now(0);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(pacer.delay(now, milliseconds(3000)), milliseconds(3000)) << i;
    now += milliseconds(3000);
    pacer.record(now);
  }
}

}  // namespace
}  // namespace dpsd::core

// Backoff schedule: bounds, growth, jitter spread and retry-after precedence.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/backoff.hpp"

namespace dpsd::core {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, CeilingDoublesUpToMax) {
  Backoff backoff(milliseconds(2000), milliseconds(300000));
  std::vector<milliseconds> ceilings;
  for (int i = 0; i < 12; ++i) {
    backoff.next(0);
    ceilings.push_back(backoff.ceiling());
  }
  EXPECT_EQ(ceilings[0], milliseconds(2000));
  EXPECT_EQ(ceilings[1], milliseconds(4000));
  EXPECT_EQ(ceilings[2], milliseconds(8000));
  EXPECT_EQ(ceilings[7], milliseconds(256000));
  EXPECT_EQ(ceilings[8], milliseconds(300000));
  EXPECT_EQ(ceilings[11], milliseconds(300000));
}

TEST(Backoff, DelaysStayWithinTenthOfCeilingAndCeiling) {
  Backoff backoff(milliseconds(1000), milliseconds(60000));
  std::mt19937_64 random(42);
  for (int i = 0; i < 200; ++i) {
    const milliseconds delay = backoff.next(random());
    EXPECT_GE(delay, backoff.ceiling() / 10);
    EXPECT_LE(delay, backoff.ceiling());
  }
}

TEST(Backoff, ExtremeRandomValuesHitTheBounds) {
  Backoff low(milliseconds(2000), milliseconds(2000));
  EXPECT_EQ(low.next(0), milliseconds(200));
  Backoff high(milliseconds(2000), milliseconds(2000));
  EXPECT_EQ(high.next(2000 - 200), milliseconds(2000));
  Backoff huge(milliseconds(2000), milliseconds(2000));
  EXPECT_LE(huge.next(~std::uint64_t{0}), milliseconds(2000));
}

TEST(Backoff, JitterSpreadsAFleet) {
  // 1000 devices failing at the same time must not retry at the same moment.
  std::mt19937_64 random(7);
  std::set<long> distinct;
  for (int device = 0; device < 1000; ++device) {
    Backoff backoff(milliseconds(2000), milliseconds(300000));
    for (int i = 0; i < 5; ++i) backoff.next(random());
    distinct.insert(static_cast<long>(backoff.next(random()).count()));
  }
  EXPECT_GT(distinct.size(), 900U);
}

TEST(Backoff, LongerRetryAfterWins) {
  Backoff backoff(milliseconds(2000), milliseconds(300000));
  EXPECT_EQ(backoff.next(0, milliseconds(30000)), milliseconds(30000));
  // A shorter one does not shorten the backoff.
  Backoff other(milliseconds(2000), milliseconds(2000));
  EXPECT_EQ(other.next(1800, milliseconds(10)), milliseconds(2000));
}

TEST(Backoff, ResetStartsOver) {
  Backoff backoff(milliseconds(1000), milliseconds(60000));
  for (int i = 0; i < 5; ++i) backoff.next(0);
  backoff.reset();
  EXPECT_EQ(backoff.failures(), 0U);
  backoff.next(0);
  EXPECT_EQ(backoff.ceiling(), milliseconds(1000));
}

TEST(Backoff, NoOverflowAfterManyFailures) {
  Backoff backoff(milliseconds(2000), milliseconds(300000));
  for (int i = 0; i < 10000; ++i) backoff.next(static_cast<std::uint64_t>(i));
  EXPECT_EQ(backoff.ceiling(), milliseconds(300000));
}

// issue 10 item 12: one 429 with retry-after=86400 delayed an unprovisioned device by 24 h,
// ignoring [retry] max.
TEST(Backoff, RetryAfterWinsButNeverPastMax) {
  Backoff backoff(std::chrono::milliseconds(1000), std::chrono::milliseconds(60000));
  EXPECT_EQ(backoff.next(0, std::chrono::milliseconds(86400000)), std::chrono::milliseconds(60000));
  EXPECT_EQ(backoff.next(0, std::chrono::milliseconds(30000)), std::chrono::milliseconds(30000));
}

}  // namespace
}  // namespace dpsd::core

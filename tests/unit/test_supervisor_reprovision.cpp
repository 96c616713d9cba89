// Reprovision as the supervisor coalesces it, on a fake clock: a request starts a registration at
// once (even while retrying), joins the running one, and within kReprovisionInterval of the last
// caller-started registration schedules exactly one for the end of the interval.
#include "supervisor_harness.hpp"

namespace dpsd::core::testing {
namespace {

TEST(SupervisorReprovision, WhileRetryingStartsAFreshRegistrationAtOnce) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  for (int i = 0; i < 6; ++i) {  // deep into the backoff: the next retry is a minute away
    h.end_attempt(transient("connection refused", std::nullopt, "4.op-1"));
    if (i < 5) h.advance(h.retry_in());
  }
  ASSERT_FALSE(h.attempt.has_value());
  ASSERT_TRUE(h.retry_at.has_value());

  const std::uint64_t answer = h.reprovision();
  ASSERT_TRUE(h.attempt.has_value()) << "Reprovision waited for the backoff";
  EXPECT_TRUE(h.logged("re-provisioning on request"));
  EXPECT_EQ(answer, h.wall_usec_now()) << "the answer is when the registration runs: now";
  EXPECT_EQ(h.status().last_attempt_usec, answer);
  EXPECT_FALSE(h.retry_at.has_value()) << "the backoff's retry still armed beside it";
  // A caller asks for a fresh registration, not for the old operation's outcome.
  EXPECT_EQ(h.attempt->resume_operation_id, "");
  // And the backoff starts over.
  h.end_attempt(transient("connection refused"));
  EXPECT_LE(h.retry_in(), milliseconds(2000));
}

TEST(SupervisorReprovision, CallsCoalesceIntoOneRegistrationPerInterval) {
  SupervisorHarness h(daemon_policy());
  h.boot(make_cached(kWallStart - 60));
  ASSERT_FALSE(h.attempt.has_value());

  const std::uint64_t first = h.reprovision();
  ASSERT_TRUE(h.attempt.has_value());
  // While it runs, every call joins it.
  h.advance(milliseconds(200));
  EXPECT_EQ(h.reprovision(), first);
  EXPECT_EQ(h.reprovision(), first);
  EXPECT_EQ(h.attempts_started, 1);
  h.end_attempt(assigned("hub-a.example"), milliseconds(800));  // 1 s after the first call

  // Within the interval: one registration is scheduled for its end, and every call says when.
  const std::uint64_t scheduled = h.reprovision();
  EXPECT_FALSE(h.attempt.has_value());
  EXPECT_EQ(scheduled, h.wall_usec_now() + 9'000'000U) << "not at the end of the 10 s interval";
  EXPECT_TRUE(h.logged("Reprovision is limited to one every 10 s, so it runs in 9.000 s"));
  for (int i = 0; i < 40; ++i) {  // 40 calls in 8 s made 40 registrations once
    h.advance(milliseconds(200));
    EXPECT_EQ(h.reprovision(), scheduled);
  }
  EXPECT_EQ(h.attempts_started, 1);
  h.advance(milliseconds(1000));
  ASSERT_TRUE(h.attempt.has_value()) << "the scheduled registration did not run";
  EXPECT_EQ(h.attempts_started, 2);
  EXPECT_EQ(h.status().last_attempt_usec, scheduled);
  // The next interval counts from this one.
  h.end_attempt(assigned("hub-a.example"));
  EXPECT_EQ(h.reprovision(), h.wall_usec_now() + 9'500'000U);
}

TEST(SupervisorReprovision, AScheduledOneJoinsARetryThatStartedFirst) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  h.reprovision();  // joins the boot's attempt: no caller-started one yet
  h.end_attempt(transient("connection refused"));
  h.reprovision();  // starts one now
  ASSERT_TRUE(h.attempt.has_value());
  h.end_attempt(transient("connection refused"), milliseconds(100));
  const std::uint64_t scheduled = h.reprovision();
  ASSERT_TRUE(h.reprovision_at.has_value());
  ASSERT_TRUE(h.retry_at.has_value());
  ASSERT_LT(*h.retry_at, *h.reprovision_at) << "this sequence needs the retry first";
  const int before = h.attempts_started;
  h.advance(h.retry_in());  // the backoff's retry starts an attempt first
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.reprovision(), h.status().last_attempt_usec) << "a call joins the running one";
  h.advance(milliseconds(10000));  // the scheduled one falls due while that attempt runs
  EXPECT_EQ(h.attempts_started, before + 1) << "two registrations for one request";
  EXPECT_NE(scheduled, 0U);
}

}  // namespace
}  // namespace dpsd::core::testing

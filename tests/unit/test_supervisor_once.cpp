// --once as the supervisor runs it, on a fake clock: the exit code for every way it ends, the
// line it prints, the cache it reuses, and --timeout as a bound on the whole run.
#include "supervisor_harness.hpp"

namespace dpsd::core::testing {
namespace {

TEST(SupervisorOnce, AssignedPrintsTheResultAndExitsZero) {
  SupervisorHarness h(once_policy());
  h.boot();
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.readies, 0) << "--once is not a service";
  EXPECT_EQ(h.publications, 0) << "--once has no STATUS=";
  h.end_attempt(assigned("hub-b.example", "dev-1"), milliseconds(1500));
  ASSERT_EQ(h.exit_code, kExitOk);
  ASSERT_EQ(h.printed.size(), 1U);
  EXPECT_EQ(
      h.printed[0],
      "provisioned: hub=hub-b.example device=dev-1 in 1.500 s state=/var/lib/dpsd/state.json");
}

TEST(SupervisorOnce, AMatchingCacheIsReusedWithoutRegistering) {
  SupervisorHarness h(once_policy());
  h.boot(make_cached(kWallStart - 60));
  EXPECT_FALSE(h.attempt.has_value());
  ASSERT_EQ(h.exit_code, kExitOk);
  ASSERT_EQ(h.printed.size(), 1U);
  EXPECT_EQ(h.printed[0],
            "provisioned (cached): hub=hub-a.example device=dev-1 state=/var/lib/dpsd/state.json");
}

TEST(SupervisorOnce, ForceRegistersDespiteTheCache) {
  SupervisorPolicy policy = once_policy();
  policy.force = true;
  SupervisorHarness h(policy);
  h.boot(make_cached(kWallStart - 60));
  EXPECT_TRUE(h.attempt.has_value());
  EXPECT_FALSE(h.exit_code.has_value());
}

TEST(SupervisorOnce, IdentityProblemExitsTwo) {
  SupervisorHarness h(once_policy());
  h.identity = Error{Errc::PermissionDenied, "symmetric_key: key file /k has mode 0644"};
  h.boot();
  EXPECT_EQ(h.exit_code, kExitConfig);
  EXPECT_FALSE(h.attempt.has_value());
}

TEST(SupervisorOnce, RefusalExitsOne) {
  SupervisorHarness h(once_policy());
  h.boot();
  h.end_attempt(refused("DPS refused the registration: 404 Not Found", 404201));
  EXPECT_EQ(h.exit_code, kExitRefused);
  EXPECT_FALSE(h.retry_at.has_value());
}

TEST(SupervisorOnce, StateWriteFailureExitsFour) {
  SupervisorHarness h(once_policy());
  h.boot();
  h.save_error = "cannot write /s/.state.json.tmp: no space left on device";
  h.end_attempt(assigned());
  EXPECT_EQ(h.exit_code, kExitStateWrite);
  EXPECT_TRUE(h.printed.empty()) << "a result line for an assignment that was not written";
}

TEST(SupervisorOnce, RetriesWithinTheTimeoutThenGivesUpWithThree) {
  SupervisorHarness h(once_policy(seconds(60)));
  h.boot();
  int failures = 0;
  while (!h.exit_code && failures < 100) {
    ASSERT_TRUE(h.attempt.has_value()) << "no attempt after failure " << failures;
    h.end_attempt(transient("connection refused"), milliseconds(100));
    ++failures;
    if (!h.exit_code) h.advance(h.retry_in());
  }
  EXPECT_EQ(h.exit_code, kExitUnreachable);
  EXPECT_GT(failures, 3) << "gave up before the backoff reached the timeout";
  EXPECT_TRUE(h.logged("giving up: no assignment within 60 s"));
  EXPECT_FALSE(h.logged("(--timeout)")) << "the retry that would pass --timeout is not waited for";
}

TEST(SupervisorOnce, TheDeadlineEndsARunningAttempt) {
  SupervisorHarness h(once_policy(seconds(30)));
  h.boot();
  ASSERT_TRUE(h.deadline_at.has_value());
  // The attempt itself ends before --timeout, so that its own reason is what gets reported…
  EXPECT_EQ(h.attempt->attempt_limit, milliseconds(30000));
  // …but an attempt that does not end is abandoned at the deadline.
  h.advance(seconds(30));
  EXPECT_EQ(h.exit_code, kExitUnreachable);
  EXPECT_TRUE(h.logged("giving up: no assignment within 30 s (--timeout)"));
}

TEST(SupervisorOnce, LaterAttemptsAreBoundedByWhatIsLeftOfTheTimeout) {
  SupervisorHarness h(once_policy(seconds(60)));
  h.boot();
  h.end_attempt(transient("connection refused"), seconds(20));
  h.advance(h.retry_in());
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_LT(h.attempt->attempt_limit, milliseconds(40000));
  EXPECT_GE(h.attempt->attempt_limit, milliseconds(37000));
}

TEST(SupervisorOnce, AThrottleThatOutlastsTheTimeoutGivesUpAtOnce) {
  SupervisorHarness h(once_policy(seconds(60)));
  h.boot();
  h.end_attempt(transient("throttled (429)", milliseconds(120000)));
  EXPECT_EQ(h.exit_code, kExitUnreachable);
  EXPECT_TRUE(h.logged("next attempt in 120.000 s"));
}

}  // namespace
}  // namespace dpsd::core::testing

// The supervisor between attempts, as whole sequences on a fake clock: DPS down at boot, a 429
// storm (retry-after honoured and clamped), refusals on their own schedule, setbacks an attempt
// rides out, a state file that cannot be written, and the operation the next attempt resumes.
#include "supervisor_harness.hpp"

namespace dpsd::core::testing {
namespace {

TEST(SupervisorRetry, DpsDownAtBootBacksOffExponentiallyUntilItAnswers) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  // Ceilings 2, 4, 8, … s up to [retry] max; each delay is drawn in [ceiling/10, ceiling].
  milliseconds ceiling(2000);
  for (int failure = 1; failure <= 10; ++failure) {
    h.end_attempt(transient("cannot connect to dps.example:8883: connection refused"));
    EXPECT_EQ(h.status().state, SupervisorState::Retrying);
    EXPECT_EQ(h.line(), "Retrying: cannot connect to dps.example:8883: connection refused");
    EXPECT_GE(h.retry_in(), ceiling / 10) << "failure " << failure;
    EXPECT_LE(h.retry_in(), ceiling) << "failure " << failure;
    EXPECT_TRUE(h.logged("provisioning attempt failed: cannot connect"));
    EXPECT_TRUE(h.logged("; next attempt in "));
    h.advance(h.retry_in());
    ASSERT_TRUE(h.attempt.has_value()) << "no attempt when the retry timer fired";
    EXPECT_EQ(h.status().next_attempt_usec, 0U) << "the next attempt is the running one";
    ceiling = std::min(ceiling * 2, milliseconds(300000));
  }
  EXPECT_EQ(h.status().attempts, 11U);

  h.end_attempt(assigned());
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  EXPECT_EQ(h.status().last_error, "");
  // After a success (and a Reprovision) the schedule starts again at the initial ceiling.
  ASSERT_NE(h.reprovision(), 0U);
  h.end_attempt(transient("connection reset"));
  EXPECT_LE(h.retry_in(), milliseconds(2000));
}

TEST(SupervisorRetry, RetryAfterIsHonouredAndClampedToRetryMax) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  // A 429 storm: DPS asks for 30 s, more than the jittered 2 s: it wins.
  h.end_attempt(transient("throttled (429)", milliseconds(30000)));
  EXPECT_EQ(h.retry_in(), milliseconds(30000));
  EXPECT_EQ(h.line(), "Retrying: throttled (429)");
  h.advance(h.retry_in());
  // One reply saying a day must not park the device for a day: [retry] max bounds it.
  h.end_attempt(transient("throttled (429)", milliseconds(86400000)));
  EXPECT_EQ(h.retry_in(), milliseconds(300000));
  h.advance(h.retry_in());
  // A retry-after shorter than the backoff's draw does not shorten it.
  for (int i = 0; i < 6; ++i) {
    h.end_attempt(transient("throttled (429)", milliseconds(1000)));
    h.advance(h.retry_in());
  }
  h.end_attempt(transient("throttled (429)", milliseconds(1000)));
  EXPECT_GE(h.retry_in(), milliseconds(30000)) << "the ceiling is [retry] max by now";
  EXPECT_EQ(h.attempts_started, 9);
}

TEST(SupervisorRetry, RefusalsWaitOnTheRefusedScheduleAndNeedAttention) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  h.end_attempt(refused("DPS refused the registration: 401 Unauthorized", 401002));
  EXPECT_EQ(h.status().state, SupervisorState::Failed);
  EXPECT_EQ(h.line(), "Failed, needs attention: DPS refused the registration: 401 Unauthorized");
  EXPECT_GE(h.retry_in(), milliseconds(360000));
  EXPECT_LE(h.retry_in(), milliseconds(3600000));
  ASSERT_FALSE(h.logs.empty());
  const LogEntry& entry = h.logs.back();
  EXPECT_EQ(entry.level, LogLevel::Error);
  ASSERT_EQ(entry.fields.size(), 2U);
  EXPECT_EQ(entry.fields[1], (std::pair<std::string, std::string>{"DPS_ERROR_CODE", "401002"}));
  // Refused again: still at most once an hour, never faster.
  h.advance(h.retry_in());
  h.end_attempt(refused("DPS refused the registration: 401 Unauthorized", 401002));
  EXPECT_GE(h.retry_in(), milliseconds(360000));
  EXPECT_FALSE(h.exit_code.has_value());
}

TEST(SupervisorRetry, RefusalKeepsACachedAssignmentInUse) {
  SupervisorPolicy policy = daemon_policy();
  policy.reprovision_on_start = ReprovisionOnStart::Always;
  SupervisorHarness h(policy);
  h.boot(make_cached(kWallStart - 60));
  h.end_attempt(refused("device disabled", 0));
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  EXPECT_EQ(h.line(),
            "Provisioned: hub hub-a.example, device dev-1 (from cache); last confirmation "
            "failed: device disabled");
}

TEST(SupervisorRetry, SetbackShowsRetryingWhileTheAttemptWaits) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  const int before = h.publications;
  h.feed(AttemptSetback{"DPS is throttling (429); retrying in 3 s on this connection"});
  EXPECT_EQ(h.status().state, SupervisorState::Retrying);
  EXPECT_EQ(h.line(), "Retrying: DPS is throttling (429); retrying in 3 s on this connection");
  EXPECT_EQ(h.publications, before + 1);
  EXPECT_TRUE(h.attempt.has_value()) << "a setback is not the attempt's end";
  EXPECT_FALSE(h.retry_at.has_value());
}

TEST(SupervisorRetry, StateThatCannotBeWrittenIsRetriedLikeATransientFailure) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  h.save_error = "cannot write /var/lib/dpsd/.state.json.tmp: no space left on device";
  h.end_attempt(assigned());
  EXPECT_NE(h.status().state, SupervisorState::Provisioned);
  EXPECT_EQ(h.status().last_error,
            "state: cannot write /var/lib/dpsd/.state.json.tmp: no space left on device");
  EXPECT_TRUE(h.logged("provisioned, but the state could not be written: cannot write"));
  EXPECT_LE(h.retry_in(), milliseconds(2000));
  h.save_error.reset();
  h.advance(h.retry_in());
  h.end_attempt(assigned());
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
}

TEST(SupervisorRetry, AnAcceptedOperationIsResumedByTheNextAttempt) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  EXPECT_EQ(h.attempt->resume_operation_id, "");
  h.end_attempt(transient("connection lost while assigning", std::nullopt, "4.op-1"));
  h.advance(h.retry_in());
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.attempt->resume_operation_id, "4.op-1") << "registered again: billed twice";
  // Unknown to DPS by now (the attempt says so by leaving no operation): register afresh.
  h.end_attempt(transient("connection lost"));
  h.advance(h.retry_in());
  EXPECT_EQ(h.attempt->resume_operation_id, "");
}

TEST(SupervisorRetry, AnOperationOlderThanTheResumeWindowIsNotResumed) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  h.end_attempt(transient("connection lost", std::nullopt, "4.op-1"));
  h.advance(h.retry_in());
  EXPECT_EQ(h.attempt->resume_operation_id, "4.op-1");
  // A long attempt polling the same operation: it keeps the time it was first issued.
  h.end_attempt(transient("connection lost", std::nullopt, "4.op-1"), std::chrono::minutes(16));
  h.advance(h.retry_in());
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.attempt->resume_operation_id, "");
  EXPECT_TRUE(h.logged("DPS operation 4.op-1 is older than 15 min: registering afresh"));
}

TEST(SupervisorRetry, AnOperationForOtherInputsIsNotResumed) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  h.end_attempt(transient("connection lost", std::nullopt, "4.op-1"));
  h.disk.reset();
  h.feed(Reloaded{daemon_policy(), std::string("sha256:inputs-2")});
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.attempt->resume_operation_id, "");
  EXPECT_TRUE(h.logged("the provisioning inputs changed: not resuming DPS operation 4.op-1"));
}

TEST(SupervisorStatusLine, EveryStateHasItsLine) {
  SupervisorStatus status;
  EXPECT_EQ(status_line(status), "Unprovisioned");
  status.last_error = "no route to host";
  EXPECT_EQ(status_line(status), "Waiting: no route to host");
  status.state = SupervisorState::Retrying;
  EXPECT_EQ(status_line(status), "Retrying: no route to host");
  status.state = SupervisorState::Failed;
  EXPECT_EQ(status_line(status), "Failed, needs attention: no route to host");
  status.state = SupervisorState::Provisioning;
  status.attempts = 7;
  EXPECT_EQ(status_line(status), "Provisioning (attempt 7)");
  status.state = SupervisorState::Provisioned;
  status.assignment = make_cached(0);
  status.source = "dps";
  status.last_error.clear();
  EXPECT_EQ(status_line(status), "Provisioned: hub hub-a.example, device dev-1");
}

}  // namespace
}  // namespace dpsd::core::testing

// The supervisor at boot and on SIGHUP, as whole sequences on a fake clock: the cache served at
// once (or not), a stale cache confirmed behind it, an identity that cannot be loaded, a clock
// that is not set yet, and a reload that keeps or replaces the assignment.
#include "supervisor_harness.hpp"

namespace dpsd::core::testing {
namespace {

TEST(SupervisorBoot, WithoutCacheRegistersAtOnceAndIsReady) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  ASSERT_TRUE(h.attempt.has_value()) << "no attempt at boot without a cache";
  EXPECT_EQ(h.status().state, SupervisorState::Provisioning);
  EXPECT_EQ(h.status().attempts, 1U);
  EXPECT_EQ(h.status().last_attempt_usec, h.wall_usec_now());
  EXPECT_EQ(h.line(), "Provisioning (attempt 1)");
  EXPECT_EQ(h.readies, 1);
  EXPECT_GE(h.publications, 1);

  h.end_attempt(assigned("hub-b.example", "dev-1"), milliseconds(1250));
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  EXPECT_EQ(h.status().source, "dps");
  EXPECT_EQ(h.status().provisioned_usec, h.wall_usec_now());
  EXPECT_EQ(h.line(), "Provisioned: hub hub-b.example, device dev-1");
  EXPECT_TRUE(h.logged("provisioned: hub=hub-b.example device=dev-1 in 1.250 s"));
  EXPECT_FALSE(h.retry_at.has_value()) << "a provisioned daemon has nothing to retry";
  EXPECT_FALSE(h.exit_code.has_value()) << "the daemon never exits on its own";
}

TEST(SupervisorBoot, ServesAMatchingCacheWithoutRegistering) {
  SupervisorHarness h(daemon_policy());
  h.boot(make_cached(kWallStart - 3600));
  EXPECT_FALSE(h.attempt.has_value()) << "a fresh, matching cache needs no registration";
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  EXPECT_EQ(h.status().source, "cache");
  EXPECT_EQ(h.status().provisioned_usec, std::uint64_t(kWallStart - 3600) * 1'000'000U);
  EXPECT_EQ(h.line(), "Provisioned: hub hub-a.example, device dev-1 (from cache)");
  ASSERT_EQ(h.env_writes.size(), 1U) << "iothub.env is rewritten from the served cache";
  EXPECT_EQ(h.readies, 1);
}

TEST(SupervisorBoot, CacheWrittenForOtherInputsIsNotServed) {
  SupervisorHarness h(daemon_policy());
  h.boot(make_cached(kWallStart - 3600, "sha256:other-inputs"));
  EXPECT_TRUE(h.logged("state file was written for other provisioning inputs"));
  EXPECT_TRUE(h.env_writes.empty());
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.status().state, SupervisorState::Provisioning);
}

TEST(SupervisorBoot, StaleCacheIsServedAndConfirmedBehindIt) {
  SupervisorPolicy policy = daemon_policy();
  policy.reprovision_on_start = ReprovisionOnStart::WhenStale;
  policy.stale_after = std::chrono::hours(24);
  SupervisorHarness h(policy);
  h.boot(make_cached(kWallStart - std::int64_t{2} * 86400));
  ASSERT_TRUE(h.attempt.has_value()) << "a stale cache is confirmed with DPS";
  // Consumers keep the cached assignment while the confirmation runs, and when it fails.
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  h.end_attempt(transient("connection refused"));
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  EXPECT_EQ(h.line(),
            "Provisioned: hub hub-a.example, device dev-1 (from cache); last confirmation "
            "failed: connection refused");
  EXPECT_TRUE(h.retry_at.has_value()) << "the confirmation is retried";

  h.advance(h.retry_in());
  h.end_attempt(assigned("hub-a.example", "dev-1"));
  EXPECT_EQ(h.status().source, "dps");
  EXPECT_EQ(h.line(), "Provisioned: hub hub-a.example, device dev-1");
}

TEST(SupervisorBoot, FreshCacheIsNotConfirmedWhenStaleIsAsked) {
  SupervisorPolicy policy = daemon_policy();
  policy.reprovision_on_start = ReprovisionOnStart::WhenStale;
  policy.stale_after = std::chrono::hours(24);
  SupervisorHarness h(policy);
  h.boot(make_cached(kWallStart - 3600));
  EXPECT_FALSE(h.attempt.has_value());
}

TEST(SupervisorBoot, AlwaysConfirmsEvenAFreshCache) {
  SupervisorPolicy policy = daemon_policy();
  policy.reprovision_on_start = ReprovisionOnStart::Always;
  SupervisorHarness h(policy);
  h.boot(make_cached(kWallStart - 60));
  EXPECT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
}

TEST(SupervisorBoot, TheTransportThatWorkedIsTriedFirst) {
  SupervisorPolicy policy = daemon_policy();
  policy.reprovision_on_start = ReprovisionOnStart::Always;
  SupervisorHarness h(policy);
  Assignment cached = make_cached(kWallStart - 60);
  cached.transport = "mqtt-ws";
  h.boot(cached);
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.attempt->preferred, Transport::MqttWs);
}

TEST(SupervisorBoot, IdentityThatFailsWaitsOnTheSlowScheduleAndIsLoadedAgain) {
  SupervisorHarness h(daemon_policy());
  h.identity = Error{Errc::NotFound, "symmetric_key: cannot open key file /k: no such file"};
  h.boot();
  EXPECT_FALSE(h.attempt.has_value());
  EXPECT_EQ(h.status().state, SupervisorState::Failed);
  EXPECT_EQ(h.line(),
            "Failed, needs attention: symmetric_key: cannot open key file /k: no such file");
  EXPECT_EQ(h.readies, 1) << "READY=1 even without an identity: the bus shows why";
  // [retry] refused: the ceiling is the refused interval itself, with jitter down to a tenth.
  EXPECT_GE(h.retry_in(), milliseconds(360000));
  EXPECT_LE(h.retry_in(), milliseconds(3600000));
  EXPECT_EQ(h.status().next_attempt_usec,
            h.wall_usec_now() + std::uint64_t(h.retry_in().count()) * 1000U);

  // Still missing at the retry: the same slow schedule again.
  h.advance(h.retry_in());
  EXPECT_EQ(h.identity_loads, 1);
  EXPECT_FALSE(h.attempt.has_value());
  EXPECT_GE(h.retry_in(), milliseconds(360000));

  // The key is installed: the next retry loads it and registers.
  h.identity = std::string(kFingerprint);
  h.advance(h.retry_in());
  EXPECT_EQ(h.identity_loads, 2);
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.status().state, SupervisorState::Provisioning);
}

TEST(SupervisorBoot, WaitsForTheClockBeforeRegistering) {
  SupervisorPolicy policy = daemon_policy();
  policy.clock_floor_unix = kWallStart;
  SupervisorHarness h(policy);
  h.now.wall = std::chrono::system_clock::from_time_t(86400);  // 1970-01-02: no RTC, no NTP yet
  h.boot();
  EXPECT_FALSE(h.attempt.has_value()) << "a token signed now would expire in 1970";
  ASSERT_TRUE(h.clock_wait_until.has_value());
  EXPECT_EQ(*h.clock_wait_until, kWallStart);
  EXPECT_EQ(h.status().state, SupervisorState::Unprovisioned);
  EXPECT_EQ(h.line(),
            "Waiting: system clock says 1970-01-02T00:00:00Z, earlier than 2027-01-15T08:00:00Z "
            "(dpsd's build time); waiting for the clock to be set");
  EXPECT_EQ(h.status().attempts, 0U);

  // A Reprovision meanwhile does not register with a wrong clock either.
  h.reprovision();
  EXPECT_FALSE(h.attempt.has_value());

  h.set_wall_clock(kWallStart + 5);
  EXPECT_TRUE(h.logged("system clock is set now; provisioning"));
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.status().attempts, 1U);
}

TEST(SupervisorReload, UnchangedInputsKeepTheAssignment) {
  SupervisorHarness h(daemon_policy());
  h.boot(make_cached(kWallStart - 60));
  h.feed(Reloaded{daemon_policy(), std::string(kFingerprint)});
  EXPECT_TRUE(h.logged("provisioning inputs unchanged; keeping the assignment"));
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  EXPECT_FALSE(h.attempt.has_value());
}

TEST(SupervisorReload, NewInputsDropTheAssignmentAndRegister) {
  SupervisorHarness h(daemon_policy());
  h.boot(make_cached(kWallStart - 60));
  h.disk = make_cached(kWallStart - 60);  // written for the old inputs
  h.feed(Reloaded{daemon_policy(), std::string("sha256:inputs-2")});
  EXPECT_TRUE(h.logged("state file was written for other provisioning inputs"));
  EXPECT_FALSE(h.status().assignment.has_value()) << "another identity's assignment was kept";
  EXPECT_EQ(h.status().source, "");
  ASSERT_TRUE(h.attempt.has_value());
  EXPECT_EQ(h.status().state, SupervisorState::Provisioning);
}

TEST(SupervisorReload, NewInputsWithTheirOwnCacheServeIt) {
  SupervisorHarness h(daemon_policy());
  h.boot(make_cached(kWallStart - 60));
  h.disk = make_cached(kWallStart - 30, "sha256:inputs-2");
  h.feed(Reloaded{daemon_policy(), std::string("sha256:inputs-2")});
  EXPECT_EQ(h.status().state, SupervisorState::Provisioned);
  EXPECT_EQ(h.status().source, "cache");
  EXPECT_FALSE(h.attempt.has_value());
}

TEST(SupervisorReload, IdentityThatFailsMarksFailedAndRetriesSlowly) {
  SupervisorHarness h(daemon_policy());
  h.boot(make_cached(kWallStart - 60));
  h.feed(Reloaded{daemon_policy(), Error{Errc::Crypto, "identity_pk: wrong PIN"}});
  EXPECT_EQ(h.status().state, SupervisorState::Failed);
  EXPECT_EQ(h.line(), "Failed, needs attention: identity_pk: wrong PIN");
  EXPECT_GE(h.retry_in(), milliseconds(360000));
}

TEST(SupervisorReload, ReloadEndsTheRunningAttemptAndStartsAfresh) {
  SupervisorHarness h(daemon_policy());
  h.boot();
  ASSERT_TRUE(h.attempt.has_value());
  h.attempt.reset();  // the daemon destroyed it: it referred to the old config
  h.feed(Reloaded{daemon_policy(), std::string(kFingerprint)});
  EXPECT_TRUE(h.attempt.has_value()) << "the reload did not start a new attempt";
  EXPECT_EQ(h.status().attempts, 2U);
}

}  // namespace
}  // namespace dpsd::core::testing

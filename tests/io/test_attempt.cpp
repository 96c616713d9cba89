// app::Attempt in process against the DPS emulator (mosquitto + tests/emulator plugin, TLS from
// a test PKI), on the test's own sd-event loop: one registration carried out through the real
// secure channel, libmosquitto and timers, ending in an assignment, a refusal, or a transient
// failure (unreachable, a silent service, the attempt's time limit), and riding out a throttle.
// The owner destroys the Attempt in its Done callback, as the daemon does.
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/attempt.hpp"
#include "core/sas_token.hpp"
#include "io/event_loop.hpp"
#include "io/private_dir.hpp"
#include "io/tls_context.hpp"
#include "support/dps_emulator.hpp"
#include "support/loop_run.hpp"
#include "support/net.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::test {
namespace {

using core::OutcomeKind;
using nlohmann::json;
using namespace std::chrono_literals;

std::string random_key() {
  std::vector<std::uint8_t> bytes(32);
  RAND_bytes(bytes.data(), static_cast<int>(bytes.size()));
  return core::base64_encode(bytes);
}

const char* kind_name(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::Assigned:
      return "assigned";
    case OutcomeKind::Refused:
      return "refused";
    case OutcomeKind::Transient:
      return "transient";
  }
  return "?";
}

// What one attempt reported.
struct Result {
  std::optional<core::Outcome> outcome;
  std::vector<std::string> setbacks;
  std::string describe() const {
    if (!outcome) return "no outcome";
    return std::string(kind_name(outcome->kind)) + ": " + outcome->error + " (operation '" +
           outcome->operation_id + "')";
  }
};

class Attempt : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A server that closes on us must not kill the test with SIGPIPE, as it does not kill dpsd.
    (void)::signal(SIGPIPE, SIG_IGN);
    emulator_ = std::make_unique<DpsEmulator>(EmulatorOptions{});
  }
  static void TearDownTestSuite() { emulator_.reset(); }

  void SetUp() override {
    const Status dir = io::make_private_dir(runtime_.path() / "private");
    ASSERT_TRUE(dir) << dir.error();
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << emulator_->diagnostics() << "\n";
  }

  // A device enrolled at the emulator with `scenario`, named after the running test.
  core::Config enroll(const json& scenario) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string regid = std::string("attempt-") + info->name();
    for (auto& c : regid) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    key_ = random_key();
    emulator_->set_device(regid, key_, scenario);

    core::Config config;
    config.endpoint_host = "localhost";
    config.endpoint_port = emulator_->port();
    config.id_scope = emulator_->scope();
    config.registration_id = regid;
    config.symmetric_key_uri = "file:///unused/by/the/attempt";
    config.trust_bundle = emulator_->ca_path();
    config.connect_timeout = 3s;
    config.tls_handshake_timeout = 3s;
    config.response_timeout = 5s;
    config.retry_initial = 200ms;
    config.retry_max = 2s;
    config.runtime_dir = runtime_.path();
    return config;
  }

  // Runs one attempt to its outcome (bounded) and destroys it from its Done callback.
  Result run(const core::Config& config, const app::AttemptPlan& plan = {}) {
    Result result;
    auto tls = io::make_client_tls_context(config.trust_bundle);
    if (!tls) {
      ADD_FAILURE() << "TLS context: " << tls.error();
      return result;
    }
    auto signer = core::make_memory_signer(key_);
    if (!signer) {
      ADD_FAILURE() << "signer: " << signer.error();
      return result;
    }
    std::unique_ptr<app::Attempt> attempt;
    attempt = std::make_unique<app::Attempt>(
        loop_.get(), tls->get(), config, signer.value(), pacer_, plan,
        [&](const std::string& reason) { result.setbacks.push_back(reason); },
        [&](core::Outcome outcome) {
          result.outcome = std::move(outcome);
          attempt.reset();  // as the daemon does: Attempt delivers from a deferred source
        });
    attempt->start();
    const bool done = run_loop_until(
        loop_.get(), [&] { return attempt == nullptr; }, 40s);
    EXPECT_TRUE(done) << "the attempt had no outcome within 40 s";
    return result;
  }

  std::size_t count(const char* kind, const core::Config& config) const {
    return emulator_->count_events(kind, config.registration_id);
  }

  static std::unique_ptr<DpsEmulator> emulator_;
  TempDir runtime_{"dpsd-attempt"};
  io::EventLoop loop_;
  core::PollPacer pacer_;
  std::string key_;
};

std::unique_ptr<DpsEmulator> Attempt::emulator_;

TEST_F(Attempt, AssignedOnTheRegisterReply) {
  const core::Config config = enroll({{"name", "immediate"}});
  const Result r = run(config);
  ASSERT_TRUE(r.outcome);
  ASSERT_EQ(r.outcome->kind, OutcomeKind::Assigned) << r.describe();
  ASSERT_TRUE(r.outcome->registration_state);
  EXPECT_EQ(r.outcome->registration_state->assigned_hub, "hub-a.emulator.test");
  EXPECT_EQ(r.outcome->registration_state->device_id, config.registration_id);
  EXPECT_EQ(r.outcome->registration_state->status, "assigned");
  EXPECT_TRUE(r.outcome->error.empty()) << r.outcome->error;
  EXPECT_TRUE(r.setbacks.empty());
  EXPECT_EQ(count("connect", config), 1u);
}

TEST_F(Attempt, AssignedAfterPollingTheOperation) {
  const core::Config config = enroll({{"name", "normal"}, {"polls", 1}, {"retry_after", 1}});
  const Result r = run(config);
  ASSERT_TRUE(r.outcome);
  ASSERT_EQ(r.outcome->kind, OutcomeKind::Assigned) << r.describe();
  EXPECT_EQ(r.outcome->registration_state->assigned_hub, "hub-a.emulator.test");
  // The register and one poll, on one connection.
  EXPECT_EQ(count("publish", config), 2u);
  EXPECT_EQ(count("connect", config), 1u);
}

TEST_F(Attempt, RefusedWhenDpsSays401) {
  const core::Config config = enroll({{"name", "unauthorized"}});
  const Result r = run(config);
  ASSERT_TRUE(r.outcome);
  ASSERT_EQ(r.outcome->kind, OutcomeKind::Refused) << r.describe();
  EXPECT_EQ(r.outcome->dps_error_code, 401002);
  EXPECT_NE(r.outcome->error.find("401"), std::string::npos) << r.outcome->error;
  EXPECT_FALSE(r.outcome->registration_state &&
               !r.outcome->registration_state->assigned_hub.empty());
}

TEST_F(Attempt, RefusedWhenTheConnectIsNotAuthorised) {
  const core::Config config = enroll({{"name", "connack_refused"}});
  const Result r = run(config);
  ASSERT_TRUE(r.outcome);
  EXPECT_EQ(r.outcome->kind, OutcomeKind::Refused) << r.describe();
  EXPECT_EQ(count("publish", config), 0u);
}

// A 503 with a short retry-after is a setback the attempt rides out itself: the owner hears of
// it (State retrying), and the same attempt ends assigned.
TEST_F(Attempt, ThrottleIsRiddenOutWithASetback) {
  const core::Config config =
      enroll({{"name", "throttle"}, {"status", 503}, {"times", 1}, {"retry_after", 1}});
  const Result r = run(config);
  ASSERT_TRUE(r.outcome);
  ASSERT_EQ(r.outcome->kind, OutcomeKind::Assigned) << r.describe();
  ASSERT_EQ(r.setbacks.size(), 1u);
  EXPECT_NE(r.setbacks[0].find("503"), std::string::npos) << r.setbacks[0];
}

TEST_F(Attempt, TransientWhenDpsIsUnreachable) {
  core::Config config = enroll({{"name", "immediate"}});
  config.endpoint_port = free_port();  // nothing listens there: connection refused
  const Result r = run(config);
  ASSERT_TRUE(r.outcome);
  EXPECT_EQ(r.outcome->kind, OutcomeKind::Transient) << r.describe();
  EXPECT_FALSE(r.outcome->error.empty());
  EXPECT_EQ(count("connect", config), 0u);
}

TEST_F(Attempt, TransientWhenDpsDoesNotReplyInTime) {
  core::Config config = enroll({{"name", "immediate"}, {"delay_ms", 2000}});
  config.response_timeout = 500ms;
  const Result r = run(config);
  ASSERT_TRUE(r.outcome);
  EXPECT_EQ(r.outcome->kind, OutcomeKind::Transient) << r.describe();
  EXPECT_NE(r.outcome->error.find("no reply from DPS within"), std::string::npos)
      << r.outcome->error;
  // The emulator sends its answers in order, everyone's: the held one must be gone (to nobody)
  // before another test's answer can go out.
  EXPECT_TRUE(emulator_->wait_for_events("no_reply", config.registration_id, 1, 10s))
      << "the emulator did not drop the held answer within 10 s";
}

// The attempt's own limit ends a registration that DPS keeps at "assigning"; the operation it
// leaves running is handed to the owner, so the next attempt polls it instead of registering.
TEST_F(Attempt, TransientAtTheAttemptLimitAndTheNextAttemptResumes) {
  const core::Config config = enroll({{"name", "endless_202"}, {"retry_after", 1}});
  app::AttemptPlan plan;
  plan.attempt_limit = 2500ms;
  const Result r = run(config, plan);
  ASSERT_TRUE(r.outcome);
  EXPECT_EQ(r.outcome->kind, OutcomeKind::Transient) << r.describe();
  EXPECT_NE(r.outcome->error.find("no assignment within"), std::string::npos) << r.outcome->error;
  ASSERT_FALSE(r.outcome->operation_id.empty()) << r.describe();

  // The next attempt resumes it: its first request is a poll of that operation, not a register.
  emulator_->set_scenario(config.registration_id, {{"name", "normal"}, {"retry_after", 1}});
  const std::size_t before = count("publish", config);
  app::AttemptPlan resume;
  resume.resume_operation_id = r.outcome->operation_id;
  const Result resumed = run(config, resume);
  ASSERT_TRUE(resumed.outcome);
  EXPECT_EQ(resumed.outcome->kind, OutcomeKind::Assigned) << resumed.describe();
  const auto publishes = emulator_->events("publish", config.registration_id);
  ASSERT_GT(publishes.size(), before);
  const std::string first = publishes[before].value("topic", "");
  EXPECT_NE(first.find("operationId=" + r.outcome->operation_id), std::string::npos) << first;
}

}  // namespace
}  // namespace dpsd::test

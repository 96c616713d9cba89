// The real dpsd against what the real DPS does and our emulator used to allow (issue 11): the
// SUBACK comes before any request, a refused subscription is a transient failure, an accepted
// operation outlives its connection, 409 is transient, retry-after is bounded but never ignored,
// and a 200 without "status" is still an assignment. Each rule's source is cited where the
// emulator enforces it (tests/emulator/dps_emulator.cpp).
#include <gtest/gtest.h>

#include "daemon_run.hpp"
#include "dpsd_fixture.hpp"
#include "support/dps_front_end.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class Fidelity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { emulator_ = std::make_unique<DpsEmulator>(EmulatorOptions{}); }
  static void TearDownTestSuite() { emulator_.reset(); }
  DpsEmulator& emulator() { return *emulator_; }

  std::unique_ptr<Device> enroll(json scenario, const std::string& suffix = "") {
    return enroll_device(emulator(), regid_for_this_test("fi-", suffix), std::move(scenario));
  }

  std::string log_of(const std::string& regid) {
    std::string out;
    for (const auto& e : emulator().events()) {
      if (e.value("client_id", "") == regid) out += e.dump().substr(0, 400) + "\n";
    }
    return out;
  }

  static std::unique_ptr<DpsEmulator> emulator_;
};

std::unique_ptr<DpsEmulator> Fidelity::emulator_;

// Issue 11 §1: every official client publishes the register only after the SUBACK. Through a
// front end that activates the subscription 1.5 s late, a register sent before the SUBACK is
// lost; the old dpsd then waited the response timeout (5 s here) and registered again.
TEST_F(Fidelity, RegisterOnlyAfterTheSuback) {
  auto device = enroll({{"name", "immediate"}});
  DpsFrontEnd front(emulator(), FrontEndOptions{1500ms});
  device->write_config("", "individual", "localhost:" + std::to_string(front.port()));
  const RunResult r = device->once({"--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(front.dropped_publishes(), 0) << "dpsd published before the SUBACK\n" << r.err;
  EXPECT_EQ(emulator().count_events("register", device->regid()), 1U)
      << "a lost register was sent again\n"
      << log_of(device->regid());
  EXPECT_EQ(front.connections(), 1);
}

// Issue 11 §1: a SUBACK with 0x80 ends the attempt as a transient failure, clearly named.
TEST_F(Fidelity, RefusedSubscriptionIsTransientAndNamed) {
  auto device = enroll({{"name", "suback_refused"}});
  const RunResult r = device->once({"--timeout", "5"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("DPS refused the subscription to $dps/registrations/res/#"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(emulator().count_events("register", device->regid()), 0U)
      << "a register was sent without a granted subscription\n"
      << log_of(device->regid());

  NotifyCapture notify(device->dir() / "notify.sock");
  auto dpsd = start_daemon(*device, notify);
  const std::string expected = "DPS refused the subscription to $dps/registrations/res/#";
  EXPECT_TRUE(wait_until(
      [&] {
        return notify.any_status([&](const std::string& s) {
          return s.rfind("Retrying: ", 0) == 0 && s.find(expected) != std::string::npos;
        });
      },
      15s))
      << "no Retrying STATUS naming the refused subscription:\n"
      << notify.all_statuses() << dpsd->stderr_text();
  EXPECT_FALSE(notify.any_status([](const std::string& s) { return s.rfind("Failed", 0) == 0; }))
      << notify.all_statuses();
  EXPECT_TRUE(dpsd->running());
}

// Issue 11 §2: an accepted registration is a server-side operation (design.md); after the
// connection drops, dpsd polls that operation instead of registering again.
TEST_F(Fidelity, AcceptedOperationIsPolledAfterAReconnect) {
  auto device = enroll({{"name", "drop_after_accept"}, {"retry_after", 1}});
  const RunResult r = device->once({"--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().count_events("register", device->regid()), 1U) << log_of(device->regid());
  const auto replies = emulator().events("reply", device->regid());
  ASSERT_FALSE(replies.empty());
  const json accepted = json::parse(replies.front()["payload"].get<std::string>());
  const std::string op = accepted.value("operationId", "");
  ASSERT_FALSE(op.empty()) << replies.front().dump();
  const auto polls = emulator().events("poll", device->regid());
  ASSERT_FALSE(polls.empty()) << "no poll after the reconnect\n" << log_of(device->regid());
  EXPECT_EQ(polls.front()["operation_id"], op);
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 2U) << log_of(device->regid());
  EXPECT_EQ(emulator().count_events("kick", device->regid()), 1U);
}

// Issue 11 §3: 409 (409203, "Precondition failed.", dps-protocol.md section 4) is transient.
TEST_F(Fidelity, ConflictIsTransient) {
  auto device = enroll({{"name", "conflict"}, {"times", 2}, {"retry_after", 1}});
  const RunResult r = device->once({"--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device->state()["status"], "assigned");

  auto daemon_device = enroll({{"name", "conflict"}, {"times", 2}, {"retry_after", 1}}, "-d");
  NotifyCapture notify(daemon_device->dir() / "notify.sock");
  auto dpsd = start_daemon(*daemon_device, notify);
  EXPECT_TRUE(wait_until(
      [&] {
        return notify.any_status([](const std::string& s) {
          return s.rfind("Retrying: ", 0) == 0 &&
                 s.find("registration conflict (409203)") != std::string::npos;
        });
      },
      15s))
      << "no Retrying STATUS naming the conflict:\n"
      << notify.all_statuses() << dpsd->stderr_text();
  EXPECT_TRUE(wait_until(
      [&] {
        return notify.any_status(
            [](const std::string& s) { return s.rfind("Provisioned: ", 0) == 0; });
      },
      15s))
      << notify.all_statuses() << dpsd->stderr_text();
}

// Issue 11 §4: a 429's retry-after is clamped to [1 s, [retry] max], not ignored.
TEST_F(Fidelity, HugeRetryAfterOnThrottleIsClampedToRetryMax) {
  // polls 0: the register after the 429 is answered at once (the scenario's retry_after would
  // apply to a 202 too).
  auto device = enroll({{"name", "throttle"}, {"times", 1}, {"retry_after", 90000}, {"polls", 0}});
  edit_config(*device, "max = \"1s\"", "max = \"3s\"");
  const RunResult r = device->once({"--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  // Within the attempt ("retrying in") or by a new one ("next attempt in").
  auto waits = seconds_after(r.err, "retrying in ");
  for (double w : seconds_after(r.err, "next attempt in ")) waits.push_back(w);
  ASSERT_FALSE(waits.empty()) << "no retry delay logged\n" << r.err;
  EXPECT_GE(waits.front(), 1.0) << r.err;
  EXPECT_LE(waits.front(), 3.0) << r.err;
  EXPECT_EQ(emulator().count_events("register", device->regid()), 2U);
}

// Issue 11 §4: a 202's retry-after is clamped to [1 s, 5 min]; 90000 s means 300 s, not 2 s.
TEST_F(Fidelity, HugeRetryAfterOnAcceptIsClampedToFiveMinutes) {
  auto device = enroll({{"name", "normal"}, {"polls", 1}, {"retry_after", 90000}});
  Process dpsd(
      {DPSD_BINARY, "--config", device->config_path().string(), "--once", "--timeout", "600"});
  const bool logged =
      wait_until([&] { return !seconds_after(dpsd.stderr_text(), "polling in ").empty(); }, 10s);
  const std::string err = dpsd.stderr_text();
  dpsd.stop();
  ASSERT_TRUE(logged) << "no \"polling in X s\" line\n" << err;
  EXPECT_EQ(seconds_after(err, "polling in ").front(), 300.0) << err;
  EXPECT_EQ(emulator().count_events("poll", device->regid()), 0U)
      << "polled long before the clamped retry-after\n"
      << log_of(device->regid());
}

// DPS quotas and limits: at most 5 polls per 10 s per device, even when retry-after says 0.
TEST_F(Fidelity, RetryAfterZeroStaysWithinFivePollsPerTenSeconds) {
  auto device = enroll({{"name", "normal"}, {"polls", 8}, {"retry_after", 0}});
  const RunResult r = device->once({"--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().count_events("poll_rate_exceeded", device->regid()), 0U)
      << log_of(device->regid());
  EXPECT_GE(emulator().count_events("poll", device->regid()), 8U);
}

// Issue 11 §5: a 200 without "status" but with a registrationState carrying assignedHub and
// deviceId is an assignment (the spec's RegistrationOperationStatus fields are all optional).
TEST_F(Fidelity, FinalAnswerWithoutStatusIsAnAssignment) {
  auto device = enroll({{"name", "immediate"}, {"patch", {{"status", nullptr}}}});
  const RunResult r = device->once({"--timeout", "10"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device->state()["assignedHub"], "hub-a.emulator.test");
  EXPECT_EQ(device->state()["deviceId"], device->regid());
}

}  // namespace
}  // namespace dpsd::test

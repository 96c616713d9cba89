// The real dpsd binary, `--once`, against the DPS emulator in a real mosquitto over TLS: the
// success paths and every emulator scenario, each asserting the outcome, the state and env
// files, what reached the emulator, and that a failure leaves the last good state untouched.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <regex>

#include "dpsd_fixture.hpp"
#include "support/net.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

using nlohmann::json;

class Provision : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { emulator_ = std::make_unique<DpsEmulator>(EmulatorOptions{}); }
  static void TearDownTestSuite() { emulator_.reset(); }

  DpsEmulator& emulator() { return *emulator_; }

  // A device enrolled individually with the given scenario; regid unique per test.
  std::unique_ptr<Device> enroll(json scenario = json::object(), const std::string& suffix = "") {
    return enroll_device(emulator(), regid_for_this_test("it-", suffix), std::move(scenario));
  }

  // Provisions once with the normal scenario so a good state exists; returns its bytes.
  std::string provision_good(Device& device) {
    emulator().set_scenario(device.regid(), {{"name", "immediate"}});
    const RunResult r = device.once({"--force"});
    EXPECT_EQ(r.exit_code, 0) << describe(r);
    return device.state_text();
  }

  // Sets a failing scenario, runs, and checks the last good state survived byte for byte.
  RunResult expect_failure_keeps_state(Device& device, json scenario, int expected_exit) {
    const std::string good = provision_good(device);
    const std::string good_env = device.env_text();
    emulator().set_scenario(device.regid(), std::move(scenario));
    const RunResult r = device.once({"--force", "--timeout", "3"});
    EXPECT_EQ(r.exit_code, expected_exit) << describe(r);
    EXPECT_EQ(device.state_text(), good) << "a failed attempt changed the last good state";
    EXPECT_EQ(device.env_text(), good_env) << "a failed attempt changed iothub.env";
    return r;
  }

  static std::unique_ptr<DpsEmulator> emulator_;
};

std::unique_ptr<DpsEmulator> Provision::emulator_;

TEST_F(Provision, IndividualKeyOverTlsWritesStateAndEnv) {
  auto device = enroll({{"name", "normal"}, {"polls", 1}, {"retry_after", 1}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("provisioned: hub=hub-a.emulator.test device=" + device->regid()),
            std::string::npos)
      << r.out;

  const json state = device->state();
  EXPECT_EQ(state["schema"], 1);
  EXPECT_EQ(state["status"], "assigned");
  EXPECT_EQ(state["assignedHub"], "hub-a.emulator.test");
  EXPECT_EQ(state["deviceId"], device->regid());
  EXPECT_EQ(state["registrationId"], device->regid());
  EXPECT_EQ(state["idScope"], emulator().scope());
  EXPECT_EQ(state["substatus"], "initialAssignment");
  EXPECT_EQ(state["attestation"], "symmetric_key");
  EXPECT_EQ(state["enrollment"], "individual");
  EXPECT_EQ(state["keyUri"], "file://" + device->key_path().string());
  EXPECT_TRUE(state["payload"].is_null());
  EXPECT_GT(state["provisionedAtUnix"].get<std::int64_t>(), 1700000000);
  EXPECT_EQ(state["fingerprint"].get<std::string>().rfind("sha256:", 0), 0U);
  // No key material anywhere in the state.
  EXPECT_EQ(device->state_text().find(device->key()), std::string::npos);

  struct stat st {};
  ASSERT_EQ(::stat(device->state_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
  ASSERT_EQ(::stat(device->env_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
  const std::string env = device->env_text();
  EXPECT_NE(env.find("IOTHUB_HOSTNAME=hub-a.emulator.test\n"), std::string::npos) << env;
  EXPECT_NE(env.find("IOTHUB_DEVICE_ID=" + device->regid() + "\n"), std::string::npos) << env;

  // What reached DPS: the exact CONNECT identity, the SAS shape, subscribe, register, one poll.
  const auto connects = emulator().events("connect", device->regid());
  ASSERT_EQ(connects.size(), 1U);
  EXPECT_EQ(connects[0]["username"], emulator().scope() + "/registrations/" + device->regid() +
                                         "/api-version=2019-03-31&ClientVersion=dpsd%2F0.1.0");
  const std::regex sas("SharedAccessSignature sr=" + emulator().scope() + "%2fregistrations%2f" +
                       device->regid() + "&sig=[A-Za-z0-9%]+&se=[0-9]+&skn=registration");
  EXPECT_TRUE(std::regex_match(connects[0]["password"].get<std::string>(), sas))
      << connects[0]["password"];
  EXPECT_EQ(connects[0]["auth"], "ok");
  const auto subscribes = emulator().events("subscribe", device->regid());
  ASSERT_EQ(subscribes.size(), 1U);
  EXPECT_EQ(subscribes[0]["topic"], "$dps/registrations/res/#");
  const auto publishes = emulator().events("publish", device->regid());
  ASSERT_EQ(publishes.size(), 2U);
  EXPECT_EQ(publishes[0]["topic"], "$dps/registrations/PUT/iotdps-register/?$rid=1");
  EXPECT_EQ(json::parse(publishes[0]["payload"].get<std::string>()),
            json({{"registrationId", device->regid()}}));
  EXPECT_EQ(publishes[1]["topic"].get<std::string>().rfind(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=", 0),
            0U);
  // The SAS expiry is about an hour out (the default lifetime).
  std::smatch m;
  const std::string password = connects[0]["password"];
  ASSERT_TRUE(std::regex_search(password, m, std::regex("se=([0-9]+)")));
  const auto se = std::stoll(m[1]);
  const auto now = static_cast<long long>(std::time(nullptr));
  EXPECT_GT(se, now + 3500);
  EXPECT_LE(se, now + 3600);
}

TEST_F(Provision, GroupEnrollmentDerivesTheDeviceKey) {
  const std::string group_key = random_key();
  emulator().add_group(group_key, {{"name", "immediate"}});
  Device device(emulator(), "it-group-member-7", group_key);
  device.write_config("", "group");
  const RunResult r = device.once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device.state()["enrollment"], "group");
  EXPECT_EQ(device.state()["assignedHub"], "hub-a.emulator.test");
  // The token was signed with the derived key, not the group key: the emulator verified it.
  EXPECT_EQ(emulator().events("connect", "it-group-member-7").at(0)["auth"], "ok");
}

TEST_F(Provision, GroupKeyUsedAsIndividualKeyIsRefused) {
  const std::string group_key = random_key();
  emulator().add_group(group_key, {{"name", "immediate"}});
  Device device(emulator(), "it-group-misconfigured", group_key);
  device.write_config("", "individual");
  const RunResult r = device.once({"--timeout", "3"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("401"), std::string::npos) << r.err;
  EXPECT_FALSE(device.has_state());
}

TEST_F(Provision, CustomPayloadRoundTrip) {
  auto device = enroll({{"name", "immediate"}});
  write_file(device->dir() / "payload.json", R"({"site":"north-7","sensors":[1,2,3]})");
  device->write_config("", "individual", {}, {},
                       "payload_file = \"" + (device->dir() / "payload.json").string() + "\"\n");
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const auto publishes = emulator().events("publish", device->regid());
  ASSERT_FALSE(publishes.empty());
  const json body = json::parse(publishes[0]["payload"].get<std::string>());
  EXPECT_EQ(body["payload"], json::parse(R"({"site":"north-7","sensors":[1,2,3]})"));
  EXPECT_EQ(device->state()["payload"], json::parse(R"({"site":"north-7","sensors":[1,2,3]})"));
}

TEST_F(Provision, ImmediateAssignmentNeedsNoPoll) {
  auto device = enroll({{"name", "immediate"}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().count_events("publish", device->regid()), 1U);
  EXPECT_EQ(device->state()["assignedHub"], "hub-a.emulator.test");
}

TEST_F(Provision, SeveralPollsFollowRetryAfter) {
  auto device = enroll({{"name", "normal"}, {"polls", 3}, {"retry_after", 1}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().count_events("publish", device->regid()), 4U);
  // Three polls, each after retry-after=1 s: the run cannot be quicker than that.
  EXPECT_GE(r.took.count(), 3000);
}

TEST_F(Provision, ThrottledWithRetryAfterThenAssigned) {
  auto device = enroll({{"name", "throttle"}, {"status", 429}, {"times", 1}, {"retry_after", 1}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("429"), std::string::npos) << r.err;
  const auto replies = emulator().events("reply", device->regid());
  ASSERT_FALSE(replies.empty());
  EXPECT_EQ(replies[0]["topic"].get<std::string>().rfind("$dps/registrations/res/429/", 0), 0U);
  // One connection: the request was re-sent on it, not after a reconnect.
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 1U);
  EXPECT_GE(emulator().count_events("publish", device->regid()), 2U);
  EXPECT_EQ(device->state()["status"], "assigned");
}

TEST_F(Provision, ServerErrorThenAssigned) {
  auto device = enroll({{"name", "throttle"}, {"status", 500}, {"times", 1}, {"retry_after", 1}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("500"), std::string::npos) << r.err;
  EXPECT_EQ(device->state()["status"], "assigned");
}

TEST_F(Provision, UnauthorizedIsRefusedAndKeepsState) {
  auto device = enroll();
  const RunResult r = expect_failure_keeps_state(*device, {{"name", "unauthorized"}}, 1);
  EXPECT_NE(r.err.find("401 Unauthorized (errorCode 401002"), std::string::npos) << r.err;
}

TEST_F(Provision, WrongKeyIsRefusedAndKeepsState) {
  auto device = enroll();
  const std::string good = provision_good(*device);
  write_file(device->key_path(), random_key() + "\n", 0600);  // DPS has the old key
  const RunResult r = device->once({"--force", "--timeout", "3"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("401"), std::string::npos) << r.err;
  EXPECT_EQ(device->state_text(), good);
}

TEST_F(Provision, NotFoundIsRefusedAndKeepsState) {
  auto device = enroll();
  const RunResult r = expect_failure_keeps_state(*device, {{"name", "not_found"}}, 1);
  EXPECT_NE(r.err.find("404 Not Found (errorCode 404201"), std::string::npos) << r.err;
}

TEST_F(Provision, FailedAssignmentIsRefusedWithErrorCodeAndKeepsState) {
  auto device = enroll();
  const RunResult r =
      expect_failure_keeps_state(*device,
                                 {{"name", "failed"},
                                  {"error_code", 400207},
                                  {"message", "Custom allocation failed with status code: 400"}},
                                 1);
  EXPECT_NE(r.err.find("errorCode 400207: Custom allocation failed with status code: 400"),
            std::string::npos)
      << r.err;
}

TEST_F(Provision, DisabledEnrollmentIsRefusedAndKeepsState) {
  auto device = enroll();
  const RunResult r = expect_failure_keeps_state(*device, {{"name", "disabled"}}, 1);
  EXPECT_NE(r.err.find("the enrollment is disabled"), std::string::npos) << r.err;
}

TEST_F(Provision, ConnackRefusedIsRefusedAndKeepsState) {
  auto device = enroll();
  const RunResult r = expect_failure_keeps_state(*device, {{"name", "connack_refused"}}, 1);
  EXPECT_NE(r.err.find("MQTT CONNECT refused"), std::string::npos) << r.err;
}

TEST_F(Provision, ConnectionDroppedMidPollIsRetried) {
  auto device = enroll({{"name", "drop_mid_poll"}, {"times", 1}, {"retry_after", 1}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 2U);
  EXPECT_NE(r.err.find("attempt failed"), std::string::npos) << r.err;
  EXPECT_EQ(device->state()["status"], "assigned");
}

TEST_F(Provision, ConnectionDroppedEveryTimeGivesUpAndKeepsState) {
  auto device = enroll();
  const RunResult r =
      expect_failure_keeps_state(*device, {{"name", "drop_mid_poll"}, {"times", 1000}}, 3);
  EXPECT_NE(r.err.find("giving up"), std::string::npos) << r.err;
}

TEST_F(Provision, ReplyWithUnknownRidIsIgnored) {
  auto device = enroll({{"name", "unknown_rid"}});
  // A stray reply is logged at debug only, by length (issue 10 item 14): --verbose shows it.
  const RunResult quiet = device->once({"--force"});
  ASSERT_EQ(quiet.exit_code, 0) << describe(quiet);
  EXPECT_EQ(quiet.err.find("answers no pending request"), std::string::npos) << quiet.err;
  const RunResult r = device->once({"--force", "--verbose"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("ignoring a DPS reply that answers no pending request ($rid of"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 2U);
}

TEST_F(Provision, MalformedReplyIsReportedAndRetried) {
  auto device = enroll({{"name", "malformed"}, {"times", 1}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("DPS reply malformed"), std::string::npos) << r.err;
  EXPECT_EQ(device->state()["status"], "assigned");
}

TEST_F(Provision, MalformedReplyEveryTimeKeepsState) {
  auto device = enroll();
  const RunResult r =
      expect_failure_keeps_state(*device, {{"name", "malformed"}, {"times", 1000}}, 3);
  EXPECT_NE(r.err.find("DPS reply malformed"), std::string::npos) << r.err;
}

TEST_F(Provision, ReassignMovesToAnotherHubAndStateFollows) {
  auto device = enroll({{"name", "reassign"}});
  RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string first_hub = device->state()["assignedHub"];
  r = device->once({"--force"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string second_hub = device->state()["assignedHub"];
  EXPECT_NE(first_hub, second_hub);
  EXPECT_NE(device->env_text().find("IOTHUB_HOSTNAME=" + second_hub + "\n"), std::string::npos);
}

TEST_F(Provision, MatchingStateIsReusedWithoutContactingDps) {
  auto device = enroll({{"name", "immediate"}});
  ASSERT_EQ(device->once().exit_code, 0);
  const std::string before = device->state_text();
  std::filesystem::remove(device->env_path());
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("provisioned (cached)"), std::string::npos) << r.out;
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 1U);
  EXPECT_EQ(device->state_text(), before);
  // The env file is restored from the state (the runtime dir is emptied at boot).
  EXPECT_NE(device->env_text().find("IOTHUB_HOSTNAME="), std::string::npos);
}

TEST_F(Provision, ChangedScopeOrKeyReprovisions) {
  auto device = enroll({{"name", "immediate"}});
  ASSERT_EQ(device->once().exit_code, 0);
  const std::string fingerprint = device->state()["fingerprint"];
  // A new key (enrolled at DPS too) changes the fingerprint: dpsd must register again.
  const std::string new_key = random_key();
  write_file(device->key_path(), new_key + "\n", 0600);
  emulator().set_device(device->regid(), new_key, {{"name", "immediate"}});
  const RunResult r = device->once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 2U);
  EXPECT_NE(device->state()["fingerprint"], fingerprint);
}

TEST_F(Provision, WrongTrustBundleFailsBeforeConnect) {
  auto device = enroll({{"name", "immediate"}});
  device->write_config("", "individual", {}, emulator().pki().other_ca_path());
  const RunResult r = device->once({"--timeout", "2"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("TLS: certificate verify failed"), std::string::npos) << r.err;
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 0U)
      << "credentials reached a server whose certificate did not verify";
  EXPECT_FALSE(device->has_state());
}

TEST_F(Provision, CertificateForAnotherHostFailsBeforeSendingCredentials) {
  // A TLS server with a certificate from the trusted CA, but for wrong.example: dpsd must stop
  // at the hostname check, so the server never receives a single application byte.
  TempDir server_dir("dpsd-wronghost");
  const std::uint16_t port = free_port();
  Process server({"openssl", "s_server", "-quiet", "-accept", "127.0.0.1:" + std::to_string(port),
                  "-cert", emulator().pki().wrong_host_cert().string(), "-key",
                  emulator().pki().wrong_host_key().string()});
  ASSERT_TRUE(wait_for_tcp_port(port, std::chrono::seconds(10)))
      << "openssl s_server did not listen: " << server.stderr_text();
  auto device = enroll();
  device->write_config("", "individual", "localhost:" + std::to_string(port));
  const RunResult r = device->once({"--timeout", "2"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("TLS: certificate verify failed (hostname mismatch)"), std::string::npos)
      << r.err;
  server.stop();
  EXPECT_EQ(server.stdout_text().find("MQTT"), std::string::npos)
      << "the server received MQTT bytes: " << server.stdout_text();
  EXPECT_EQ(server.stdout_text().find("SharedAccessSignature"), std::string::npos);
}

TEST_F(Provision, ConnectionRefusedIsReportedAndGivesUp) {
  auto device = enroll();
  device->write_config("", "individual", "127.0.0.1:" + std::to_string(free_port()));
  const RunResult r = device->once({"--timeout", "2"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("connection refused"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("giving up"), std::string::npos) << r.err;
  EXPECT_LT(r.took.count(), 15000);
}

}  // namespace
}  // namespace dpsd::test

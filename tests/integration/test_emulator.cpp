// The DPS emulator itself, exercised with independent clients (mosquitto_rr from
// mosquitto-clients, and a libmosquitto test client) before dpsd is tested against it: if these
// pass, a failing dpsd integration test points at dpsd, not at the emulator.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/sas_token.hpp"
#include "support/dps_emulator.hpp"
#include "support/dps_front_end.hpp"
#include "support/mqtt_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Fixed test keys (base64 of 32 bytes); test material only.
constexpr const char* kKeyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
constexpr const char* kKeyB = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
// The official group key of dps-protocol.md test vector V1.
constexpr const char* kGroupKey =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
constexpr auto kReplyTimeout = 5s;

std::int64_t now_s() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

std::string register_topic(const std::string& rid) {
  return "$dps/registrations/PUT/iotdps-register/?$rid=" + rid;
}
std::string poll_topic(const std::string& rid, const std::string& op) {
  return "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=" + rid + "&operationId=" + op;
}

// The daemon's own token (the C SDK form: "%2f", skn=registration).
std::string sas(const std::string& key, const std::string& scope, const std::string& regid,
                std::int64_t expiry = now_s() + 3600) {
  auto signer = core::make_memory_signer(key);
  EXPECT_TRUE(signer.ok()) << signer.error();
  auto token = core::make_sas_token(*signer, scope, regid, expiry);
  EXPECT_TRUE(token.ok()) << token.error();
  return *token;
}

std::string upper_escape(const std::string& b64) {
  std::string out;
  for (char c : b64) {
    if (c == '+') {
      out += "%2B";
    } else if (c == '/') {
      out += "%2F";
    } else if (c == '=') {
      out += "%3D";
    } else {
      out += c;
    }
  }
  return out;
}

// Other SDKs' forms (dps-protocol.md section 2): the signature covers `sr` exactly as sent.
std::string sas_variant(const std::string& key, const std::string& sr, const std::string& order,
                        std::int64_t expiry = now_s() + 3600) {
  auto raw_key = core::base64_decode(key);
  EXPECT_TRUE(raw_key.has_value());
  const std::string se = std::to_string(expiry);
  const std::string sig =
      upper_escape(core::base64_encode(core::hmac_sha256(*raw_key, sr + "\n" + se)));
  std::map<char, std::string> parts = {
      {'r', "sr=" + sr}, {'g', "sig=" + sig}, {'e', "se=" + se}, {'k', "skn=registration"}};
  std::string out = "SharedAccessSignature ";
  for (char c : order) {
    if (out.back() != ' ') out += '&';
    out += parts.at(c);
  }
  return out;
}

struct Response {
  int status = 0;
  std::map<std::string, std::string> props;
  json body;
  std::string raw;
};

Response parse_response(const MqttMessage& m) {
  Response r;
  r.raw = m.payload;
  const std::string prefix = "$dps/registrations/res/";
  EXPECT_EQ(m.topic.rfind(prefix, 0), 0u) << m.topic;
  auto q = m.topic.find("/?");
  r.status = std::stoi(m.topic.substr(prefix.size(), q - prefix.size()));
  std::string query = m.topic.substr(q + 2);
  std::size_t start = 0;
  while (start < query.size()) {
    auto amp = query.find('&', start);
    if (amp == std::string::npos) amp = query.size();
    auto part = query.substr(start, amp - start);
    auto eq = part.find('=');
    r.props[part.substr(0, eq)] = eq == std::string::npos ? "" : part.substr(eq + 1);
    start = amp + 1;
  }
  r.body = json::parse(m.payload, nullptr, false);
  return r;
}

class EmulatorTest : public ::testing::Test {
 protected:
  EmulatorTest() : emu_(make_options()) {}

  static EmulatorOptions make_options() {
    EmulatorOptions o;
    o.devices["dev-a"] = {kKeyA, json::object()};
    o.devices["dev-b"] = {kKeyB, json::object()};
    o.groups.push_back({kGroupKey, json::object()});
    return o;
  }

  std::string username(const std::string& regid) const {
    return emu_.scope() + "/registrations/" + regid + "/api-version=2019-03-31&ClientVersion=test";
  }

  std::unique_ptr<MqttTestClient> client(const std::string& regid,
                                         std::optional<std::string> password,
                                         const std::string& client_id = "") {
    MqttClientOptions o;
    o.port = emu_.port();
    o.cafile = emu_.ca_path();
    o.client_id = client_id.empty() ? regid : client_id;
    o.username = username(regid);
    o.password = std::move(password);
    return std::make_unique<MqttTestClient>(o);
  }

  // Connected and subscribed to the response filter, as every DPS client does first.
  std::unique_ptr<MqttTestClient> ready_client(const std::string& regid, const std::string& key) {
    return ready_client_with(regid, sas(key, emu_.scope(), regid));
  }
  std::unique_ptr<MqttTestClient> ready_client_with(const std::string& regid,
                                                    const std::string& password) {
    auto c = client(regid, password);
    const int rc = c->connect();
    EXPECT_EQ(rc, 0) << "CONNACK for " << regid << ": " << c->error() << "\n" << emu_.diagnostics();
    auto granted = c->subscribe("$dps/registrations/res/#", 1);
    EXPECT_EQ(granted, std::optional<int>(1)) << "SUBACK for " << regid;
    return c;
  }

  // Publishes and returns the next response; fails the test (with the plugin log) on timeout.
  std::optional<Response> request(MqttTestClient& c, const std::string& topic,
                                  const std::string& body = "") {
    EXPECT_TRUE(c.publish(topic, body, 1));
    return next(c, "answer to " + topic);
  }

  std::optional<Response> next(MqttTestClient& c, const std::string& what,
                               std::chrono::milliseconds timeout = kReplyTimeout) {
    auto m = c.next_message(timeout);
    if (!m) {
      ADD_FAILURE() << "no " << what << " within " << timeout.count() << " ms\nplugin log:\n"
                    << log_text();
      return std::nullopt;
    }
    return parse_response(*m);
  }

  std::string log_text() const {
    std::string out;
    for (const auto& e : emu_.events()) out += e.dump() + "\n";
    return out;
  }

  DpsEmulator emu_;
};

// mosquitto_rr refuses a wildcard response topic; the emulator's answer is addressed to the
// client id and arrives whatever the client subscribed to, as long as it has a subscription.
constexpr const char* kRrResponseTopic = "$dps/registrations/res/mosquitto_rr";

// --- The command-line client, independent of any code in this repository but the token. ---

CommandResult rr(const DpsEmulator& emu, const std::string& regid, const std::string& password,
                 const std::string& body) {
  return run_command({"mosquitto_rr",
                      "-V",
                      "311",
                      "-h",
                      "localhost",
                      "-p",
                      std::to_string(emu.port()),
                      "--cafile",
                      emu.ca_path().string(),
                      "-i",
                      regid,
                      "-u",
                      emu.scope() + "/registrations/" + regid + "/api-version=2019-03-31",
                      "-P",
                      password,
                      "-q",
                      "1",
                      "-e",
                      kRrResponseTopic,
                      "-t",
                      register_topic("1"),
                      "-m",
                      body,
                      "-v",
                      "-W",
                      "5"},
                     10s);
}

TEST_F(EmulatorTest, CliRegisterGets202ThenImmediate200) {
  auto r = rr(emu_, "dev-a", sas(kKeyA, emu_.scope(), "dev-a"), R"({"registrationId":"dev-a"})");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << "\n" << log_text();
  EXPECT_NE(r.out.find("$dps/registrations/res/202/?$rid=1&retry-after=1 "), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(R"("status":"assigning")"), std::string::npos) << r.out;

  emu_.set_scenario("dev-a", {{"name", "immediate"}});
  r = rr(emu_, "dev-a", sas(kKeyA, emu_.scope(), "dev-a"), R"({"registrationId":"dev-a"})");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("$dps/registrations/res/200/?$rid=1 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("assignedHub":"hub-a.emulator.test")"), std::string::npos) << r.out;
}

TEST_F(EmulatorTest, CliBadTokenIsAcceptedThenAnsweredWith401) {
  auto r = rr(emu_, "dev-a", sas(kKeyB, emu_.scope(), "dev-a"), "{}");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("$dps/registrations/res/401/?$rid=1 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("errorCode":401002)"), std::string::npos) << r.out;
  auto connects = emu_.events("connect", "dev-a");
  ASSERT_EQ(connects.size(), 1u);
  EXPECT_EQ(connects[0]["auth"], "bad_signature");
  EXPECT_EQ(connects[0]["result"], "accepted");
}

// --- Scripted flows over one connection. ---

TEST_F(EmulatorTest, NormalFlowPollsThenAssignsAndEchoesPayload) {
  emu_.set_scenario("dev-a", {{"name", "normal"}, {"polls", 2}, {"retry_after", 0}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("7"),
                   R"({"registrationId":"dev-a","payload":{"model":"x1","n":3}})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->props["$rid"], "7");
  EXPECT_EQ(r->props["retry-after"], "0");
  const std::string op = r->body.value("operationId", "");
  EXPECT_EQ(r->body["status"], "assigning");
  // "<digit>.<16 hex>.<uuid>"
  EXPECT_EQ(op.size(), 1u + 1 + 16 + 1 + 36) << op;

  r = request(*c, poll_topic("8", op), " ");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->props["$rid"], "8");
  EXPECT_EQ(r->body["registrationState"]["status"], "assigning");

  r = request(*c, poll_topic("9", op));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->props.count("retry-after"), 0u);
  const json& st = r->body["registrationState"];
  EXPECT_EQ(r->body["operationId"], op);
  EXPECT_EQ(r->body["status"], "assigned");
  EXPECT_EQ(st["assignedHub"], "hub-a.emulator.test");
  EXPECT_EQ(st["deviceId"], "dev-a");
  EXPECT_EQ(st["registrationId"], "dev-a");
  EXPECT_EQ(st["substatus"], "initialAssignment");
  EXPECT_EQ(st["payload"], json({{"model", "x1"}, {"n", 3}}));
  EXPECT_TRUE(st.contains("etag") && st.contains("createdDateTimeUtc"));
}

TEST_F(EmulatorTest, RetryAfterVerbatimOrAbsent) {
  emu_.set_scenario("dev-a", {{"retry_after", "abc"}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->props["retry-after"], "abc");
  c.reset();

  emu_.set_scenario("dev-a", {{"retry_after", nullptr}, {"device_id", "other-id"}});
  c = ready_client("dev-a", kKeyA);
  r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->props.count("retry-after"), 0u);
  r = request(*c, poll_topic("2", r->body.value("operationId", "")));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body["registrationState"]["deviceId"], "other-id");
}

TEST_F(EmulatorTest, ThrottleThenNormal) {
  emu_.set_scenario(
      "dev-a",
      {{"name", "throttle"}, {"status", 429}, {"times", 2}, {"retry_after", 0}, {"polls", 1}});
  auto c = ready_client("dev-a", kKeyA);
  for (int i = 0; i < 2; ++i) {
    auto r = request(*c, register_topic(std::to_string(i)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 429);
    EXPECT_EQ(r->props["retry-after"], "0");
    EXPECT_EQ(r->body["errorCode"], 429001);
  }
  auto r = request(*c, register_topic("3"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  r = request(*c, poll_topic("4", r->body.value("operationId", "")));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(EmulatorTest, FailedDisabledUnauthorizedNotFound) {
  struct Case {
    json scenario;
    int status;
    std::string check;
  };
  const Case cases[] = {
      {{{"name", "failed"}}, 200, "failed"},
      {{{"name", "disabled"}}, 200, "disabled"},
      {{{"name", "unauthorized"}}, 401, "401002"},
      {{{"name", "not_found"}}, 404, "404201"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.scenario.dump());
    emu_.set_scenario("dev-a", tc.scenario);
    auto c = ready_client("dev-a", kKeyA);
    auto r = request(*c, register_topic("1"), "{}");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, tc.status);
    if (tc.check == "failed") {
      EXPECT_EQ(r->body["status"], "failed");
      EXPECT_EQ(r->body["registrationState"]["errorCode"], 400207);
      EXPECT_EQ(r->body["registrationState"]["errorMessage"],
                "Custom allocation failed with status code: 400");
    } else if (tc.check == "disabled") {
      EXPECT_EQ(r->body["status"], "disabled");
      EXPECT_EQ(r->body["operationId"], "");
    } else {
      EXPECT_EQ(r->body["errorCode"], std::stoi(tc.check));
    }
  }
}

TEST_F(EmulatorTest, BadCredentialsAreAnsweredOn401) {
  struct Case {
    std::string name;
    std::string regid;
    std::string client_id;
    std::string password;
    std::string reason;
  };
  const Case cases[] = {
      {"wrong key", "dev-a", "", sas(kKeyB, emu_.scope(), "dev-a"), "bad_signature"},
      {"expired", "dev-a", "", sas(kKeyA, emu_.scope(), "dev-a", now_s() - 10), "expired"},
      {"other resource", "dev-a", "", sas(kKeyA, emu_.scope(), "dev-b"), "sr_mismatch"},
      {"client id differs", "dev-a", "dev-b", sas(kKeyA, emu_.scope(), "dev-a"),
       "client_id_mismatch"},
      {"group key used directly", "grp-1", "", sas(kGroupKey, emu_.scope(), "grp-1"),
       "unknown_registration"},
      {"not a SAS token", "dev-a", "", "hunter2", "bad_token"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    auto c = client(tc.regid, tc.password, tc.client_id);
    ASSERT_EQ(c->connect(), 0) << c->error();
    ASSERT_EQ(c->subscribe("$dps/registrations/res/#"), std::optional<int>(1));
    auto r = request(*c, register_topic("1"), "{}");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->body["errorCode"], 401002);
    auto connects = emu_.events("connect", tc.client_id.empty() ? tc.regid : tc.client_id);
    ASSERT_FALSE(connects.empty());
    EXPECT_EQ(connects.back()["auth"], tc.reason);
  }
}

TEST_F(EmulatorTest, EverySdkTokenFormIsAccepted) {
  emu_.set_scenario("dev-a", {{"name", "immediate"}});
  const std::string scope = emu_.scope();
  const std::string lower = scope + "%2fregistrations%2fdev-a";
  const std::string upper = scope + "%2Fregistrations%2Fdev-a";
  const std::string raw = scope + "/registrations/dev-a";
  const std::string tokens[] = {
      sas(kKeyA, scope, "dev-a"),         // C SDK / dpsd
      sas_variant(kKeyA, upper, "rge"),   // embedded C, Python: upper case, no skn
      sas_variant(kKeyA, raw, "rgke"),    // Node: raw resource, skn before se
      sas_variant(kKeyA, lower, "rkge"),  // sr,skn,sig,se seen in the wild
  };
  for (const auto& token : tokens) {
    SCOPED_TRACE(token);
    auto c = ready_client_with("dev-a", token);
    auto r = request(*c, register_topic("1"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  for (const auto& e : emu_.events("connect", "dev-a")) EXPECT_EQ(e["auth"], "ok") << e.dump();
}

TEST_F(EmulatorTest, GroupMemberSignsWithDerivedKey) {
  const std::string regid = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
  auto derived = core::derive_device_key(kGroupKey, regid);
  ASSERT_TRUE(derived.ok()) << derived.error();
  auto c = ready_client(regid, *derived);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  auto connects = emu_.events("connect", regid);
  ASSERT_EQ(connects.size(), 1u);
  EXPECT_EQ(connects[0]["enrollment"], "group:0");
  r = request(*c, poll_topic("2", r->body.value("operationId", "")));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body["registrationState"]["symmetricKey"]["enrollmentGroupId"], "group-0");
}

TEST_F(EmulatorTest, UnknownRegistrationCanBe404) {
  emu_.set_option("unknown_status", 404);
  auto c = ready_client("nobody", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body["errorCode"], 404201);
}

TEST_F(EmulatorTest, ConnackRefusedScenarioAndOption) {
  emu_.set_scenario("dev-a", {{"name", "connack_refused"}, {"times", 1}});
  auto c = client("dev-a", sas(kKeyA, emu_.scope(), "dev-a"));
  EXPECT_EQ(c->connect(), 5);
  c = client("dev-a", sas(kKeyA, emu_.scope(), "dev-a"));
  EXPECT_EQ(c->connect(), 0) << "times=1 refuses only the first CONNECT";

  emu_.set_option("bad_auth", "connack");
  c = client("dev-b", sas(kKeyA, emu_.scope(), "dev-b"));
  EXPECT_EQ(c->connect(), 5);
  c = client("dev-b", sas(kKeyB, emu_.scope(), "dev-b"));
  EXPECT_EQ(c->connect(), 0);
}

TEST_F(EmulatorTest, DropMidPollKicksOnceThenAnswers) {
  emu_.set_scenario("dev-a", {{"name", "drop_mid_poll"}, {"retry_after", 0}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  const std::string op = r->body.value("operationId", "");
  ASSERT_TRUE(c->publish(poll_topic("2", op), ""));
  EXPECT_TRUE(c->wait_disconnected(3s)) << log_text();
  EXPECT_FALSE(c->next_message(300ms).has_value());
  EXPECT_EQ(emu_.count_events("kick", "dev-a"), 1u);

  c = ready_client("dev-a", kKeyA);
  r = request(*c, poll_topic("3", op));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(EmulatorTest, UnknownRidComesFirst) {
  emu_.set_scenario("dev-a", {{"name", "unknown_rid"}});
  auto c = ready_client("dev-a", kKeyA);
  auto first = request(*c, register_topic("5"));
  ASSERT_TRUE(first);
  EXPECT_NE(first->props["$rid"], "5");
  auto second = next(*c, "the real answer");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->props["$rid"], "5");
  EXPECT_EQ(second->status, 202);
}

TEST_F(EmulatorTest, MalformedFirstThenNormal) {
  emu_.set_scenario("dev-a", {{"name", "malformed"}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->raw, R"({"operationId":)");
  r = request(*c, register_topic("2"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_TRUE(r->body.is_object());
}

TEST_F(EmulatorTest, MalformedRegisterBodyIs400) {
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"), "not json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->body["errorCode"], 400004);
}

TEST_F(EmulatorTest, ReassignAlternatesHubsAcrossConnections) {
  emu_.set_scenario("dev-a", {{"name", "reassign"}, {"polls", 0}});
  const std::pair<const char*, const char*> expected[] = {
      {"hub-a.emulator.test", "initialAssignment"},
      {"hub-b.emulator.test", "reprovisionedToInitialAssignment"},
      {"hub-a.emulator.test", "reprovisionedToInitialAssignment"},
  };
  for (const auto& [hub, substatus] : expected) {
    auto c = ready_client("dev-a", kKeyA);
    auto r = request(*c, register_topic("1"));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(r->body["registrationState"]["assignedHub"], hub);
    EXPECT_EQ(r->body["registrationState"]["substatus"], substatus);
  }
}

TEST_F(EmulatorTest, DelayedAnswerComesFromTick) {
  emu_.set_scenario("dev-a", {{"name", "immediate"}, {"delay_ms", 600}});
  auto c = ready_client("dev-a", kKeyA);
  ASSERT_TRUE(c->publish(register_topic("1"), ""));
  EXPECT_FALSE(c->next_message(300ms).has_value()) << "answer not held back";
  auto r = next(*c, "the delayed answer");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(EmulatorTest, PatchShapesTheFinalBody) {
  emu_.set_scenario("dev-a", {{"name", "immediate"},
                              {"patch", {{"registrationState", {{"deviceId", nullptr}}}}}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->body["registrationState"].contains("assignedHub"));
  EXPECT_FALSE(r->body["registrationState"].contains("deviceId"));
}

TEST_F(EmulatorTest, NoSubscriptionNoAnswerAndAclIsStrict) {
  auto c = client("dev-a", sas(kKeyA, emu_.scope(), "dev-a"));
  ASSERT_EQ(c->connect(), 0);
  ASSERT_TRUE(c->publish(register_topic("1"), ""));
  EXPECT_FALSE(c->next_message(500ms).has_value());
  EXPECT_TRUE(emu_.wait_for_events("no_reply", "dev-a", 1, 2s)) << log_text();

  EXPECT_EQ(c->subscribe("#"), std::optional<int>(128));
  EXPECT_EQ(c->subscribe("$dps/registrations/res/#", 2), std::optional<int>(1))
      << "DPS grants at most QoS 1";
  ASSERT_TRUE(c->publish("devices/dev-a/messages/events/", "x"));
  EXPECT_TRUE(emu_.wait_for_events("publish_denied", "dev-a", 1, 2s)) << log_text();
}

TEST_F(EmulatorTest, SessionTakeoverKeepsAnsweringTheNewConnection) {
  emu_.set_scenario("dev-a", {{"name", "immediate"}});
  auto first = ready_client("dev-a", kKeyA);
  auto second = ready_client("dev-a", kKeyA);
  EXPECT_TRUE(first->wait_disconnected(3s)) << "the broker should drop the older session";
  ASSERT_TRUE(emu_.wait_for_events("disconnect", "dev-a", 1, 2s)) << log_text();
  auto r = request(*second, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(EmulatorTest, LogRecordsTheConversation) {
  emu_.set_scenario("dev-a", {{"name", "immediate"}});
  {
    auto c = ready_client("dev-a", kKeyA);
    ASSERT_TRUE(request(*c, register_topic("1"), R"({"registrationId":"dev-a"})"));
  }
  ASSERT_TRUE(emu_.wait_for_events("disconnect", "dev-a", 1, 2s)) << log_text();
  auto connect = emu_.events("connect", "dev-a").at(0);
  EXPECT_EQ(connect["username"], username("dev-a"));
  EXPECT_EQ(connect["auth"], "ok");
  EXPECT_TRUE(connect["password"].get<std::string>().starts_with("SharedAccessSignature sr="));
  auto sub = emu_.events("subscribe", "dev-a").at(0);
  EXPECT_EQ(sub["topic"], "$dps/registrations/res/#");
  EXPECT_EQ(sub["qos"], 1);
  auto pub = emu_.events("publish", "dev-a").at(0);
  EXPECT_EQ(pub["topic"], register_topic("1"));
  EXPECT_EQ(pub["payload"], R"({"registrationId":"dev-a"})");
  auto reply = emu_.events("reply", "dev-a").at(0);
  EXPECT_TRUE(reply["topic"].get<std::string>().starts_with("$dps/registrations/res/200/?$rid=1"));
  for (const auto& e : emu_.events()) EXPECT_TRUE(e.contains("t")) << e.dump();
}

TEST_F(EmulatorTest, RestartKeepsPortAndFiles) {
  const auto port = emu_.port();
  emu_.restart();
  EXPECT_EQ(emu_.port(), port);
  EXPECT_EQ(emu_.count_events("ready"), 2u);
  emu_.set_scenario("dev-a", {{"name", "immediate"}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  emu_.stop();
  EXPECT_FALSE(emu_.running());
  EXPECT_TRUE(c->wait_disconnected(3s));
}

// --- Service rules (design.md "What the real service does") and the hostile family. ---

TEST_F(EmulatorTest, SubackRefusedMeansNoAnswerEver) {
  emu_.set_scenario("dev-a", {{"name", "suback_refused"}, {"polls", 0}});
  auto c = client("dev-a", sas(kKeyA, emu_.scope(), "dev-a"));
  ASSERT_EQ(c->connect(), 0) << c->error();
  EXPECT_EQ(c->subscribe("$dps/registrations/res/#", 1), std::optional<int>(0x80))
      << "SUBACK did not carry the refusal code 0x80\n"
      << log_text();
  ASSERT_TRUE(c->publish(register_topic("1"), ""));
  EXPECT_FALSE(c->next_message(700ms).has_value()) << "a refused subscription got an answer";
  EXPECT_TRUE(emu_.wait_for_events("no_reply", "dev-a", 1, 2s)) << log_text();
  EXPECT_EQ(emu_.events("no_reply", "dev-a").at(0)["why"], "no subscription");
  EXPECT_EQ(emu_.events("subscribe", "dev-a").at(0)["why"], "suback_refused");
}

TEST_F(EmulatorTest, DropAfterAcceptKeepsTheOperationAcrossConnections) {
  emu_.set_scenario("dev-a", {{"name", "drop_after_accept"}, {"retry_after", 2}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->raw;
  EXPECT_EQ(r->props["retry-after"], "2");
  const std::string op = r->body.value("operationId", "");
  ASSERT_FALSE(op.empty());
  EXPECT_TRUE(c->wait_disconnected(3s)) << "not kicked after the 202\n" << log_text();
  EXPECT_EQ(emu_.count_events("kick", "dev-a"), 1u);

  c = ready_client("dev-a", kKeyA);
  r = request(*c, poll_topic("2", op));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->raw;
  EXPECT_EQ(r->body["operationId"], op);
  EXPECT_EQ(r->body["registrationState"]["assignedHub"], "hub-a.emulator.test");
  EXPECT_EQ(emu_.count_events("unknown_operation", "dev-a"), 0u) << "the operation was forgotten";
  // times 1: the next register is accepted and kept alive normally.
  r = request(*c, register_topic("3"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_FALSE(c->wait_disconnected(800ms)) << "kicked beyond `times`";
}

TEST_F(EmulatorTest, ConflictIs409203ThenNormal) {
  emu_.set_scenario("dev-a", {{"name", "conflict"}, {"times", 2}, {"retry_after", nullptr}});
  auto c = ready_client("dev-a", kKeyA);
  for (int i = 0; i < 2; ++i) {
    auto r = request(*c, register_topic(std::to_string(i)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 409);
    EXPECT_EQ(r->body["errorCode"], 409203);
    EXPECT_EQ(r->body["message"], "Precondition failed.");
    EXPECT_EQ(r->props.count("retry-after"), 0u) << "retry_after null must leave it out";
  }
  auto r = request(*c, register_topic("2"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
}

TEST_F(EmulatorTest, PollRateAbove5Per10sIs429) {
  emu_.set_scenario("dev-a", {{"name", "normal"}, {"polls", 100}, {"retry_after", 0}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  const std::string op = r->body.value("operationId", "");
  for (int i = 0; i < 5; ++i) {
    r = request(*c, poll_topic(std::to_string(10 + i), op));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202) << "poll " << i + 1 << " of 5 inside 10 s was refused";
  }
  r = request(*c, poll_topic("20", op));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << "the 6th poll inside 10 s was answered";
  EXPECT_EQ(r->body["errorCode"], 429001);
  const int wait = std::stoi(r->props["retry-after"]);
  EXPECT_GE(wait, 1);
  EXPECT_LE(wait, 10);
  EXPECT_EQ(emu_.count_events("poll_rate_exceeded", "dev-a"), 1u);
}

TEST_F(EmulatorTest, EndlessAcceptingNeverAssigns) {
  emu_.set_scenario("dev-a", {{"name", "endless_202"}, {"retry_after", 7}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  const std::string op = r->body.value("operationId", "");
  for (int i = 0; i < 4; ++i) {
    r = request(*c, poll_topic(std::to_string(2 + i), op));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(r->props["retry-after"], "7");
    EXPECT_EQ(r->body["status"], "assigning");
  }
}

TEST_F(EmulatorTest, OversizeFieldInTheFinalAnswerAndTheLogStaysSmall) {
  emu_.set_scenario("dev-a", {{"name", "oversize"}, {"bytes", 200000}, {"field", "deviceId"}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body["registrationState"]["deviceId"].get<std::string>(), std::string(200000, 'a'));
  const auto reply = emu_.events("reply", "dev-a").at(0);
  EXPECT_GT(reply["payload_bytes"].get<std::size_t>(), 200000u);
  EXPECT_LE(reply["payload"].get<std::string>().size(), 4096u);
}

TEST(EmulatorQos2, FloodThenTheRealAnswer) {
  EmulatorOptions opts;
  opts.allow_qos2 = true;  // the broker caps deliveries at the listener's max_qos
  opts.devices["dev-a"] = {kKeyA, {{"name", "qos2_flood"}, {"count", 30}, {"bytes", 2000}}};
  DpsEmulator emu(opts);
  MqttClientOptions o;
  o.port = emu.port();
  o.cafile = emu.ca_path();
  o.client_id = "dev-a";
  o.username = emu.scope() + "/registrations/dev-a/api-version=2019-03-31";
  o.password = sas(kKeyA, emu.scope(), "dev-a");
  auto c = std::make_unique<MqttTestClient>(o);
  ASSERT_EQ(c->connect(), 0) << c->error();
  ASSERT_EQ(c->subscribe("$dps/registrations/res/#", 1), std::optional<int>(1));
  ASSERT_TRUE(c->publish(register_topic("1"), ""));
  // The broker keeps 20 messages in flight and queues the rest, so the real answer (QoS 1) may
  // overtake part of the flood: count, do not assume an order.
  int flood = 0;
  int answers = 0;
  for (int i = 0; i < 31; ++i) {
    auto m = c->next_message(kReplyTimeout);
    ASSERT_TRUE(m) << "message " << i << " of 30 flood + 1 answer missing";
    if (m->topic.find("$rid=q2-") != std::string::npos) {
      ++flood;
      EXPECT_EQ(m->qos, 2) << m->topic;
      EXPECT_EQ(m->payload.size(), 2000u);
    } else {
      ++answers;
      const Response r = parse_response(*m);
      EXPECT_EQ(r.props.at("$rid"), "1");
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(m->qos, 1);
    }
  }
  EXPECT_EQ(flood, 30);
  EXPECT_EQ(answers, 1);
  EXPECT_EQ(emu.events("flood", "dev-a").at(0)["count"], 30);
}

TEST_F(EmulatorTest, UnsolicitedFloodOfLongRidsThenTheRealAnswer) {
  emu_.set_scenario("dev-a", {{"name", "unsolicited_flood"}, {"count", 5}, {"rid_bytes", 60000}});
  auto c = ready_client("dev-a", kKeyA);
  ASSERT_TRUE(c->publish(register_topic("1"), ""));
  for (int i = 0; i < 5; ++i) {
    auto r = next(*c, "unsolicited answer " + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_GE(r->props["$rid"].size(), 60000u);
    EXPECT_NE(r->props["$rid"], "1");
  }
  auto r = next(*c, "the real answer after the flood");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->props["$rid"], "1");
  EXPECT_EQ(r->status, 200);
}

TEST_F(EmulatorTest, ErrorMessageWithControlCharactersIsSentVerbatim) {
  emu_.set_scenario("dev-a", {{"name", "unauthorized"}, {"message", "x\nWATCHDOG=trigger\nX="}});
  auto c = ready_client("dev-a", kKeyA);
  auto r = request(*c, register_topic("1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->body["message"], "x\nWATCHDOG=trigger\nX=");
}

TEST_F(EmulatorTest, RequestOver96KBIsRefusedWithADisconnect) {
  auto c = ready_client("dev-a", kKeyA);
  ASSERT_TRUE(c->publish(register_topic("1"), std::string(100 * 1024, ' ')));
  EXPECT_TRUE(c->wait_disconnected(3s)) << log_text();
  EXPECT_FALSE(c->next_message(200ms).has_value());
  EXPECT_EQ(emu_.count_events("request_too_large", "dev-a"), 1u);
}

TEST_F(EmulatorTest, FrontEndHoldsTheSubackAndDropsEarlyRequests) {
  emu_.set_scenario("dev-a", {{"name", "immediate"}});
  DpsFrontEnd front(emu_, FrontEndOptions{1500ms});
  MqttClientOptions o;
  o.port = front.port();
  o.cafile = emu_.ca_path();
  o.client_id = "dev-a";
  o.username = username("dev-a");
  o.password = sas(kKeyA, emu_.scope(), "dev-a");
  MqttTestClient c(o);
  ASSERT_EQ(c.connect(), 0) << c.error();
  EXPECT_EQ(c.subscribe("$dps/registrations/res/#", 1, 300ms), std::nullopt)
      << "the SUBACK was not held";
  ASSERT_TRUE(c.publish(register_topic("1"), ""));
  EXPECT_FALSE(c.next_message(300ms).has_value()) << "a request before the SUBACK was answered";
  ASSERT_TRUE(wait_until([&] { return front.subacks() == 1; }, 5s)) << "SUBACK never released";
  EXPECT_EQ(front.dropped_publishes(), 1);
  ASSERT_TRUE(c.publish(register_topic("2"), ""));
  auto m = c.next_message(kReplyTimeout);
  ASSERT_TRUE(m) << log_text();
  EXPECT_EQ(parse_response(*m).props["$rid"], "2");
  EXPECT_EQ(front.connections(), 1);
  EXPECT_EQ(front.forwarded_publishes(), 1);
  EXPECT_EQ(emu_.count_events("register", "dev-a"), 1u);
}

TEST(EmulatorRunner, PrintsWhereItListensAndStopsOnSigterm) {
  TempDir dir;
  Process runner({emulator_runner_path().string(), "--dir", (dir / "emu").string(), "--device",
                  std::string("dev-a=") + kKeyA, "--scenario", R"(dev-a={"name":"immediate"})"});
  ASSERT_TRUE(wait_until([&] { return runner.stdout_text().find('\n') != std::string::npos; }, 15s))
      << "no ready line; stderr:\n"
      << runner.stderr_text();
  const json info = json::parse(runner.stdout_text());
  const auto port = info.at("port").get<std::uint16_t>();
  EXPECT_EQ(info.at("scope"), "0ne00000000");
  const pid_t broker = info.at("pid").get<pid_t>();

  auto r = run_command({"mosquitto_rr",
                        "-V",
                        "311",
                        "-h",
                        "localhost",
                        "-p",
                        std::to_string(port),
                        "--cafile",
                        info.at("ca").get<std::string>(),
                        "-i",
                        "dev-a",
                        "-u",
                        "0ne00000000/registrations/dev-a/api-version=2019-03-31",
                        "-P",
                        sas(kKeyA, "0ne00000000", "dev-a"),
                        "-e",
                        kRrResponseTopic,
                        "-t",
                        register_topic("1"),
                        "-m",
                        "",
                        "-v",
                        "-W",
                        "5"},
                       10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("res/200/?$rid=1"), std::string::npos) << r.out;

  runner.signal(SIGTERM);
  auto code = runner.wait_for_exit(10s);
  ASSERT_TRUE(code.has_value()) << "runner ignored SIGTERM";
  EXPECT_EQ(*code, 0) << runner.stderr_text();
  EXPECT_TRUE(wait_until([&] { return ::kill(broker, 0) != 0; }, 5s)) << "broker left running";
}

}  // namespace
}  // namespace dpsd::test

// io::MqttSession against a real mosquitto on a Unix socket (support/unix_broker.hpp), as it
// meets the secure channel's relay in dpsd, on the test's own sd-event loop: CONNACK, SUBACK,
// publish and receive, the broker going away, a close we asked for, and handlers that destroy
// the session they are called from (what app::Attempt does at the end of every attempt).
#include <gtest/gtest.h>

#include <csignal>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/event_loop.hpp"
#include "io/mqtt_session.hpp"
#include "support/files.hpp"
#include "support/loop_run.hpp"
#include "support/unix_broker.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

// Everything a session reported, in order.
struct Reports {
  std::vector<int> connacks;
  std::vector<int> subacks;
  std::vector<std::pair<std::string, std::string>> messages;
  std::vector<std::string> losses;

  io::MqttSession::Handlers handlers() {
    return {[this](int rc) { connacks.push_back(rc); }, [this](int qos) { subacks.push_back(qos); },
            [this](std::string topic, std::string payload) {
              messages.emplace_back(std::move(topic), std::move(payload));
            },
            [this](std::string reason) { losses.push_back(std::move(reason)); }};
  }
};

class MqttSession : public ::testing::Test {
 protected:
  // A broker that closes on us must not kill the test with SIGPIPE, as it does not kill dpsd.
  static void SetUpTestSuite() { (void)::signal(SIGPIPE, SIG_IGN); }

  // A session connected to the broker, its CONNACK received.
  std::unique_ptr<io::MqttSession> connected(const std::string& client_id, Reports& reports) {
    auto session = std::make_unique<io::MqttSession>(loop_.get(), client_id, reports.handlers());
    const Status status = session->connect(broker_.socket_path(), "user", "password");
    EXPECT_TRUE(status) << status.error();
    EXPECT_TRUE(run_until([&] { return !reports.connacks.empty(); }))
        << client_id << ": no CONNACK within 10 s\n"
        << broker_.diagnostics();
    return session;
  }

  bool run_until(const std::function<bool()>& done) {
    return run_loop_until(loop_.get(), done, 10s);
  }

  UnixBroker broker_;
  io::EventLoop loop_;
};

TEST_F(MqttSession, ConnectGetsConnackZero) {
  Reports reports;
  auto session = connected("connack-zero", reports);
  ASSERT_EQ(reports.connacks.size(), 1u);
  EXPECT_EQ(reports.connacks[0], 0);
  EXPECT_TRUE(reports.losses.empty());
}

TEST_F(MqttSession, RefusedConnectReportsTheConnackCode) {
  UnixBroker closed(/*allow_anonymous=*/false);
  Reports reports;
  io::MqttSession session(loop_.get(), "connack-refused", reports.handlers());
  ASSERT_TRUE(session.connect(closed.socket_path(), "user", "password"));
  ASSERT_TRUE(run_until([&] { return !reports.connacks.empty(); })) << "no CONNACK within 10 s\n"
                                                                    << closed.diagnostics();
  EXPECT_EQ(reports.connacks[0], 5) << "CONNACK 5: not authorised";
}

TEST_F(MqttSession, SubscribeIsAckedWithTheGrantedQos) {
  Reports reports;
  auto session = connected("suback", reports);
  ASSERT_TRUE(session->subscribe("$dps/registrations/res/#", 1));
  ASSERT_TRUE(run_until([&] { return reports.subacks.size() == 1; })) << "no SUBACK within 10 s";
  EXPECT_EQ(reports.subacks[0], 1);
  ASSERT_TRUE(session->subscribe("other/topic", 0));
  ASSERT_TRUE(run_until([&] { return reports.subacks.size() == 2; }))
      << "no second SUBACK within 10 s";
  EXPECT_EQ(reports.subacks[1], 0);
}

TEST_F(MqttSession, PublishedMessagesReachASubscriberWhole) {
  Reports device_reports, service_reports;
  auto device = connected("device", device_reports);
  auto service = connected("service", service_reports);
  ASSERT_TRUE(device->subscribe("$dps/registrations/res/#", 1));
  ASSERT_TRUE(service->subscribe("$dps/registrations/PUT/#", 1));
  ASSERT_TRUE(run_until([&] {
    return device_reports.subacks.size() == 1 && service_reports.subacks.size() == 1;
  })) << "no SUBACKs within 10 s";

  // A request one way, binary-safe (a NUL byte, not UTF-8) and large; the answer the other way.
  std::string request = R"({"registrationId":"gw-1"})";
  request += std::string("\0\xff", 2) + std::string(200'000, 'x');
  ASSERT_TRUE(device->publish("$dps/registrations/PUT/iotdps-register/?$rid=1", request, 1));
  ASSERT_TRUE(run_until([&] { return service_reports.messages.size() == 1; }))
      << "the request did not arrive within 10 s";
  EXPECT_EQ(service_reports.messages[0].first, "$dps/registrations/PUT/iotdps-register/?$rid=1");
  EXPECT_EQ(service_reports.messages[0].second, request);

  ASSERT_TRUE(service->publish("$dps/registrations/res/202/?$rid=1&retry-after=1",
                               R"({"operationId":"op-1","status":"assigning"})", 0));
  ASSERT_TRUE(run_until([&] { return device_reports.messages.size() == 1; }))
      << "the answer did not arrive within 10 s";
  EXPECT_EQ(device_reports.messages[0].first, "$dps/registrations/res/202/?$rid=1&retry-after=1");
  EXPECT_EQ(device_reports.messages[0].second, R"({"operationId":"op-1","status":"assigning"})");
  EXPECT_TRUE(device_reports.losses.empty());
  EXPECT_TRUE(service_reports.losses.empty());
}

TEST_F(MqttSession, BrokerGoingAwayIsReportedOnceAsALoss) {
  Reports reports;
  auto session = connected("loses-broker", reports);
  ASSERT_TRUE(session->subscribe("t/#", 1));
  ASSERT_TRUE(run_until([&] { return reports.subacks.size() == 1; })) << "no SUBACK within 10 s";
  broker_.stop();
  ASSERT_TRUE(run_until([&] { return !reports.losses.empty(); }))
      << "the broker's exit was not reported within 10 s";
  EXPECT_FALSE(reports.losses[0].empty());
  // More loop iterations (keep-alive timer included) do not report it again.
  run_loop_for(loop_.get(), 1200ms);
  EXPECT_EQ(reports.losses.size(), 1u);
  EXPECT_FALSE(session->publish("t/x", "after the loss", 0));
}

// A DISCONNECT we sent is a close, not a loss: no on_lost for it.
TEST_F(MqttSession, DisconnectWeAskedForIsNotALoss) {
  Reports reports;
  auto session = connected("says-goodbye", reports);
  session->disconnect();
  const std::filesystem::path log = broker_.socket_path().parent_path() / "mosquitto.log";
  // Bounded by what the broker saw, not by a guess at how long a loss report would take.
  ASSERT_TRUE(wait_until(
      [&] { return read_file(log).find("Client says-goodbye disconnected") != std::string::npos; },
      10s))
      << "the broker did not see the DISCONNECT within 10 s\n"
      << broker_.diagnostics();
  run_loop_for(loop_.get(), 200ms);
  EXPECT_TRUE(reports.losses.empty()) << reports.losses[0];
}

// Handlers may destroy the session: what was queued behind the destroying call is dropped, and
// nothing touches the freed session. (The sanitizer build turns a use after free into a failure.)
TEST_F(MqttSession, MessageHandlerMayDestroyTheSession) {
  int delivered = 0;
  std::unique_ptr<io::MqttSession> session;
  Reports reports;
  io::MqttSession::Handlers handlers = reports.handlers();
  handlers.on_message = [&](const std::string&, const std::string&) {
    ++delivered;
    session.reset();  // last: this closure belongs to the session
  };
  session = std::make_unique<io::MqttSession>(loop_.get(), "destroyed-on-message", handlers);
  ASSERT_TRUE(session->connect(broker_.socket_path(), "user", "password"));
  ASSERT_TRUE(run_until([&] { return !reports.connacks.empty(); })) << "no CONNACK within 10 s";
  ASSERT_TRUE(session->subscribe("echo/#", 0));
  ASSERT_TRUE(run_until([&] { return !reports.subacks.empty(); })) << "no SUBACK within 10 s";
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(session->publish("echo/" + std::to_string(i), "x", 0));
  ASSERT_TRUE(run_until([&] { return session == nullptr; })) << "no message came back within 10 s";
  run_loop_for(loop_.get(), 200ms);
  EXPECT_EQ(delivered, 1);
}

TEST_F(MqttSession, LossHandlerMayDestroyTheSession) {
  int losses = 0;
  std::unique_ptr<io::MqttSession> session;
  Reports reports;
  io::MqttSession::Handlers handlers = reports.handlers();
  handlers.on_lost = [&](const std::string&) {
    ++losses;
    session.reset();
  };
  session = std::make_unique<io::MqttSession>(loop_.get(), "destroyed-on-loss", handlers);
  ASSERT_TRUE(session->connect(broker_.socket_path(), "user", "password"));
  ASSERT_TRUE(run_until([&] { return !reports.connacks.empty(); })) << "no CONNACK within 10 s";
  broker_.stop();
  ASSERT_TRUE(run_until([&] { return session == nullptr; }))
      << "the loss was not reported within 10 s";
  run_loop_for(loop_.get(), 1200ms);  // past the keep-alive timer the session had armed
  EXPECT_EQ(losses, 1);
}

TEST_F(MqttSession, ConnackHandlerMayDestroyTheSession) {
  std::unique_ptr<io::MqttSession> session;
  io::MqttSession::Handlers handlers;
  handlers.on_connack = [&](int) { session.reset(); };
  session = std::make_unique<io::MqttSession>(loop_.get(), "destroyed-on-connack", handlers);
  ASSERT_TRUE(session->connect(broker_.socket_path(), "user", "password"));
  ASSERT_TRUE(run_until([&] { return session == nullptr; })) << "no CONNACK within 10 s";
  run_loop_for(loop_.get(), 1200ms);
}

}  // namespace
}  // namespace dpsd::test

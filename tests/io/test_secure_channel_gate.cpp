// The relay's inbound MQTT gate against a scripted hostile TLS server, over MQTT and over
// WebSocket: after the client's CONNECT the server answers CONNACK, waits for a PINGREQ (so the
// test knows the CONNACK went through on its own), then sends what DPS never sends. The channel
// must close with the gate's reason, and the client side (libmosquitto's seat) must never see
// a byte of the refused packet.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/mqtt_inbound_gate.hpp"
#include "io/event_loop.hpp"
#include "io/secure_channel.hpp"
#include "io/tls_context.hpp"
#include "io/unique_fd.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "support/tls_test_server.hpp"

namespace dpsd::io {
using core::Transport;
namespace {

using namespace std::chrono_literals;
using dpsd::test::TempDir;
using dpsd::test::TestPki;

std::string remaining_length(std::size_t n) {
  std::string out;
  do {
    auto byte = static_cast<std::uint8_t>(n % 128);
    n /= 128;
    out += static_cast<char>(n > 0 ? byte | 0x80 : byte);
  } while (n > 0);
  return out;
}
const std::string kConnect("\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test", 18);
const std::string kConnack("\x20\x02\x00\x00", 4);
const std::string kPingreq("\xc0\x00", 2);
const std::string kPingresp("\xd0\x00", 2);
std::string publish(std::uint8_t qos, const std::string& payload, std::uint16_t id = 1) {
  std::string body("\x00\x01t", 3);
  if (qos > 0) body += std::string{static_cast<char>(id >> 8), static_cast<char>(id & 0xff)};
  body += payload;
  return static_cast<char>(0x30 | (qos << 1)) + remaining_length(body.size()) + body;
}

// One TLS connection (test::TlsTestServer). Plain: MQTT bytes as they are; WebSocket: upgrade
// first, then every chunk in its own binary frame. It answers the CONNECT with CONNACK, and the
// first PINGREQ with `hostile` (sent as the given chunks, each its own TLS record), then hangs
// up or reads until the client goes away.
class HostileServer {
 public:
  HostileServer(const TestPki& pki, bool websocket, std::vector<std::string> hostile,
                bool hang_up = false)
      : websocket_(websocket),
        hang_up_(hang_up),
        hostile_(std::move(hostile)),
        server_(pki.server_cert(), pki.server_key(),
                [this](test::TlsConnection& connection) { serve(connection); }) {}
  std::uint16_t port() const { return server_.port(); }

 private:
  // Reads until `mqtt` (the client's MQTT bytes so far) holds `want` bytes; false on EOF.
  bool read_mqtt(test::TlsConnection& connection, std::string& raw, std::string& mqtt,
                 std::size_t want) {
    char buffer[4096];
    while (mqtt.size() < want) {
      const std::size_t n = connection.read(buffer, sizeof buffer);
      if (n == 0) return false;
      if (!websocket_) {
        mqtt.append(buffer, n);
        continue;
      }
      raw.append(buffer, n);
      for (const test::WsFrame& frame : test::ws_take_client_frames(raw)) mqtt += frame.payload;
    }
    return true;
  }

  void send(test::TlsConnection& connection, const std::string& mqtt) {
    connection.write(websocket_ ? test::ws_binary_frame(mqtt) : mqtt);
  }

  void serve(test::TlsConnection& connection) {
    if (websocket_ && !test::ws_accept_upgrade(connection)) return;
    std::string raw;
    std::string mqtt;
    if (!read_mqtt(connection, raw, mqtt, kConnect.size())) return;
    send(connection, kConnack);
    if (!read_mqtt(connection, raw, mqtt, kConnect.size() + kPingreq.size())) return;
    for (const std::string& chunk : hostile_) send(connection, chunk);
    if (hang_up_) return connection.close_notify();
    connection.read_to_end();
  }

  bool websocket_;
  bool hang_up_;
  std::vector<std::string> hostile_;
  test::TlsTestServer server_;  // last: its thread stops before the rest goes
};

std::unique_ptr<TempDir> pki_dir;
std::unique_ptr<TestPki> pki;

class GateTest : public ::testing::TestWithParam<Transport> {
 protected:
  static void SetUpTestSuite() {
    // The hostile server keeps writing after the channel has refused it and closed; like dpsd
    // itself (Daemon::run), the test process must survive a write to a closed socket.
    (void)::signal(SIGPIPE, SIG_IGN);
    pki_dir = std::make_unique<TempDir>("dpsd-gate-pki");
    pki = std::make_unique<TestPki>(pki_dir->path());
  }
  static void TearDownTestSuite() {
    pki.reset();
    pki_dir.reset();
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (sd_event_run(loop_.get(), 20'000) < 0) return false;
    }
    return true;
  }

  // Connects through the relay as libmosquitto would: CONNECT, read the CONNACK, PINGREQ. Then
  // collects everything the relay hands over until it hangs up. Returns the bytes after the
  // CONNACK; `reason` gets on_closed's reason.
  std::string run_session(HostileServer& server, std::string& reason) {
    auto ctx = make_client_tls_context(pki->ca_path());
    EXPECT_TRUE(ctx.ok()) << ctx.error();
    if (!ctx) return {};
    ChannelOptions o;
    o.host = "localhost";
    o.port = server.port();
    o.transport = GetParam();
    o.socket_dir = sockets_.path();
    std::string path;
    bool closed = false;
    SecureChannel channel(
        loop_.get(), ctx->get(), o, [&](const std::string& p) { path = p; },
        [&](const std::string& r) {
          closed = true;
          reason = r;
        });
    channel.start();
    if (!run_until([&] { return !path.empty() || closed; }, 10s) || path.empty()) {
      ADD_FAILURE() << "the channel did not become ready: " << reason;
      return {};
    }
    UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ADD_FAILURE() << "cannot connect to the relay socket " << path;
      return {};
    }
    ::send(client.get(), kConnect.data(), kConnect.size(), MSG_NOSIGNAL);
    std::string in;
    bool eof = false;
    auto drain = [&] {
      char buffer[65536];
      for (;;) {
        const ssize_t n = ::recv(client.get(), buffer, sizeof buffer, 0);
        if (n > 0) {
          in.append(buffer, static_cast<std::size_t>(n));
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) eof = true;
        return;
      }
    };
    if (!run_until([&] { return drain(), in.size() >= kConnack.size() || eof; }, 10s)) {
      ADD_FAILURE() << "no CONNACK through the relay; closed: " << reason;
    }
    EXPECT_EQ(in.substr(0, kConnack.size()), kConnack) << "closed: " << reason;
    in.erase(0, kConnack.size());
    ::send(client.get(), kPingreq.data(), kPingreq.size(), MSG_NOSIGNAL);
    if (!run_until([&] { return drain(), eof && closed; }, 20s)) {
      ADD_FAILURE() << "the relay did not hang up (eof " << eof << ", on_closed " << closed << ", "
                    << in.size() << " bytes received after the CONNACK)";
    }
    return in;
  }

  EventLoop loop_;
  TempDir sockets_{"dpsd-gate-sock"};
};

TEST_P(GateTest, PublishAnnouncing200MiBIsRefusedBeforeItsBody) {
  // The header announces 200 MiB (+ a 12-byte topic); 64 KiB of body follow, and then the
  // server simply waits. Nothing of it may reach the client.
  const std::string header = "\x30" + remaining_length(209715212);
  HostileServer server(*pki, GetParam() == Transport::MqttWs,
                       {header + std::string("\x00\x0atopic/abcd", 12), std::string(65536, 'x')});
  std::string reason;
  const std::string after_connack = run_session(server, reason);
  EXPECT_EQ(reason,
            "DPS sent an MQTT packet of 209715212 bytes; the limit is 131072 (protocol error)");
  EXPECT_EQ(after_connack, "") << "refused bytes reached the client";
}

TEST_P(GateTest, HeaderSplitAcrossRecordsIsHeldBackAndRefused) {
  // The first three bytes of the same header come alone: an incomplete length that must be
  // held, not forwarded, until the rest decides.
  const std::string header = "\x30" + remaining_length(209715212);
  HostileServer server(*pki, GetParam() == Transport::MqttWs,
                       {header.substr(0, 3), header.substr(3), std::string(4096, 'x')});
  std::string reason;
  const std::string after_connack = run_session(server, reason);
  EXPECT_EQ(reason,
            "DPS sent an MQTT packet of 209715212 bytes; the limit is 131072 (protocol error)");
  EXPECT_EQ(after_connack, "") << "held-back header bytes reached the client";
}

TEST_P(GateTest, Qos2PublishIsRefused) {
  HostileServer server(*pki, GetParam() == Transport::MqttWs,
                       {publish(2, std::string(std::size_t{100} * 1000, 'q'))});
  std::string reason;
  const std::string after_connack = run_session(server, reason);
  EXPECT_EQ(reason, "DPS sent a QoS 2 PUBLISH, which DPS never does (protocol error)");
  EXPECT_EQ(after_connack, "") << "the QoS 2 PUBLISH reached the client";
}

TEST_P(GateTest, PublishFloodIsCutOffAtTheLimit) {
  std::string allowed = kPingresp;
  for (std::size_t i = 0; i < core::kMaxInboundPublishes; ++i) {
    allowed += publish(1, "{\"status\":\"assigning\"}", static_cast<std::uint16_t>(i + 1));
  }
  const std::string extra = publish(1, "one too many", 999);
  HostileServer server(*pki, GetParam() == Transport::MqttWs, {allowed, extra});
  std::string reason;
  const std::string after_connack = run_session(server, reason);
  EXPECT_EQ(reason, "DPS sent more than 256 PUBLISH packets on one connection (protocol error)");
  // Whatever arrived is a prefix of the allowed packets; the 257th never does.
  EXPECT_LE(after_connack.size(), allowed.size());
  EXPECT_EQ(allowed.substr(0, after_connack.size()), after_connack);
}

TEST_P(GateTest, LargestDpsMessageStillPasses) {
  // 96 KB, DPS's documented maximum, in one QoS 1 PUBLISH, then the server hangs up.
  const std::string big = publish(1, std::string(std::size_t{96} * 1024, 'a'));
  HostileServer server(*pki, GetParam() == Transport::MqttWs, {big}, /*hang_up=*/true);
  std::string reason;
  const std::string after_connack = run_session(server, reason);
  EXPECT_EQ(after_connack, big);
  EXPECT_EQ(reason, "connection closed by server");
}

INSTANTIATE_TEST_SUITE_P(Transports, GateTest,
                         ::testing::Values(Transport::Mqtt, Transport::MqttWs),
                         [](const auto& info) {
                           return std::string(info.param == Transport::Mqtt ? "Mqtt" : "MqttWs");
                         });

}  // namespace
}  // namespace dpsd::io

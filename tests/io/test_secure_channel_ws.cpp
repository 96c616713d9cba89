// SecureChannel's WebSocket transport, HTTP CONNECT proxy and "auto" fallback against a real
// mosquitto (MQTT over TLS and MQTT over WebSocket over TLS listeners, anonymous) and the test
// tree's CONNECT proxy. Real MQTT packets go through the relay: CONNECT/CONNACK, SUBSCRIBE and
// a 70 KB PUBLISH that comes back in frames of mosquitto's choosing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "io/event_loop.hpp"
#include "io/secure_channel.hpp"
#include "io/tls_context.hpp"
#include "io/unique_fd.hpp"
#include "support/connect_proxy.hpp"
#include "support/files.hpp"
#include "support/net.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "support/tls_test_server.hpp"

namespace dpsd::io {
using core::Transport;
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using dpsd::test::ConnectProxy;
using dpsd::test::ConnectProxyOptions;
using dpsd::test::Process;
using dpsd::test::TempDir;
using dpsd::test::TestPki;

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ADD_FAILURE() << "cannot connect to the relay socket " << path << ": " << std::strerror(errno);
    return UniqueFd();
  }
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  return fd;
}

// MQTT 3.1.1 packets, byte for byte.
std::string remaining_length(std::size_t n) {
  std::string out;
  do {
    std::uint8_t byte = n % 128;
    n /= 128;
    if (n > 0) byte |= 0x80;
    out += static_cast<char>(byte);
  } while (n > 0);
  return out;
}
const std::string kConnect("\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test", 18);
const std::string kConnack("\x20\x02\x00\x00", 4);
const std::string kSubscribe("\x82\x06\x00\x01\x00\x01t\x00", 8);
const std::string kSuback("\x90\x03\x00\x01\x00", 5);
std::string publish(const std::string& payload) {
  return "\x30" + remaining_length(3 + payload.size()) + std::string("\x00\x01t", 3) + payload;
}

ConnectProxyOptions proxy_options(std::optional<std::string> user, std::string password,
                                  std::set<std::uint16_t> ports = {}) {
  ConnectProxyOptions o;
  o.user = std::move(user);
  o.password = std::move(password);
  o.allowed_ports = std::move(ports);
  return o;
}

std::string current_user() {
  const passwd* pw = ::getpwuid(::getuid());
  return pw != nullptr ? pw->pw_name : "root";
}

std::unique_ptr<TempDir> dir;
std::unique_ptr<TestPki> pki;
std::unique_ptr<Process> broker;
std::uint16_t mqtt_port = 0;  // MQTT over TLS
std::uint16_t ws_port = 0;    // MQTT over WebSocket over TLS

class SecureChannelWsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = std::make_unique<TempDir>("dpsd-channel-ws");
    pki = std::make_unique<TestPki>(dir->path());
    const std::uint16_t plain_port = test::free_port();
    mqtt_port = test::free_port();
    ws_port = test::free_port();
    const std::string tls = "cafile " + pki->ca_path().string() + "\ncertfile " +
                            pki->server_cert().string() + "\nkeyfile " +
                            pki->server_key().string() + "\n";
    // A broker with only WebSocket listeners does not start, hence the plain one.
    const std::string config =
        "per_listener_settings false\nallow_anonymous true\npersistence false\nuser " +
        current_user() + "\nlog_dest file " + (dir->path() / "mosquitto.log").string() +
        "\nlog_type all\n" + "listener " + std::to_string(plain_port) + " 127.0.0.1\n" +
        "listener " + std::to_string(mqtt_port) + " 127.0.0.1\n" + tls + "listener " +
        std::to_string(ws_port) + " 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n" + tls;
    test::write_file(dir->path() / "mosquitto.conf", config, 0600);
    broker = std::make_unique<Process>(
        std::vector<std::string>{"mosquitto", "-c", (dir->path() / "mosquitto.conf").string()});
    if (!test::wait_for_tcp_port(mqtt_port, 10s) || !test::wait_for_tcp_port(ws_port, 10s)) {
      ADD_FAILURE() << "mosquitto did not listen: " << broker->stderr_text();
    }
  }
  static void TearDownTestSuite() {
    broker.reset();
    pki.reset();
    dir.reset();
  }

  void SetUp() override {
    auto ctx = make_client_tls_context(pki->ca_path());
    ASSERT_TRUE(ctx.ok()) << ctx.error();
    tls_ = std::move(ctx.value());
  }

  ChannelOptions options(Transport transport, std::uint16_t port) {
    ChannelOptions o;
    o.host = "localhost";
    o.port = port;
    o.transport = transport;
    o.ws_port = ws_port;
    o.connect_timeout = 5000ms;
    o.handshake_timeout = 5000ms;
    o.socket_dir = sockets_.path();
    return o;
  }

  void open_channel(ChannelOptions o) {
    channel_ = std::make_unique<SecureChannel>(
        loop_.get(), tls_.get(), std::move(o),
        [this](const std::string& path) {
          ++ready_calls_;
          ready_path_ = path;
        },
        [this](const std::string& reason) {
          ++closed_calls_;
          closed_reason_ = reason;
        });
    channel_->start();
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      const int rc = sd_event_run(loop_.get(), 20'000);
      if (rc < 0) {
        ADD_FAILURE() << "sd_event_run: " << std::strerror(-rc);
        return false;
      }
    }
    return true;
  }

  std::string wait_closed(std::chrono::milliseconds timeout = 15s) {
    if (!run_until([this] { return closed_calls_ > 0; }, timeout)) {
      ADD_FAILURE() << "on_closed was not called within " << timeout.count() << " ms";
      return {};
    }
    return closed_reason_;
  }

  void wait_ready(std::chrono::milliseconds timeout = 15s) {
    if (!run_until([this] { return ready_calls_ > 0 || closed_calls_ > 0; }, timeout)) {
      FAIL() << "neither on_ready nor on_closed within " << timeout.count() << " ms";
    }
    ASSERT_EQ(ready_calls_, 1) << "closed instead: " << closed_reason_;
  }

  std::string exchange(int fd, const std::string& out, std::size_t expected_size,
                       std::chrono::milliseconds timeout = 20s) {
    std::size_t sent = 0;
    std::string in;
    const bool done = run_until(
        [&] {
          if (sent < out.size()) {
            const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
            if (n > 0) sent += static_cast<std::size_t>(n);
          }
          char buffer[8192];
          for (;;) {
            const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0) break;
            in.append(buffer, static_cast<std::size_t>(n));
          }
          return sent == out.size() && in.size() >= expected_size;
        },
        timeout);
    EXPECT_TRUE(done) << "relay stalled: sent " << sent << " of " << out.size()
                      << " bytes, received " << in.size() << " of " << expected_size
                      << "; closed: " << closed_reason_;
    return in;
  }

  // CONNECT/CONNACK, SUBSCRIBE/SUBACK, and a large PUBLISH echoed back by the broker.
  void speak_mqtt() {
    UniqueFd client = connect_unix(ready_path_);
    ASSERT_GE(client.get(), 0);
    EXPECT_EQ(exchange(client.get(), kConnect, kConnack.size()), kConnack);
    EXPECT_EQ(exchange(client.get(), kSubscribe, kSuback.size()), kSuback);
    std::string payload;
    // Above 65535 bytes, so the broker's frames need the 64-bit length form. No bigger: this
    // round trip takes about 2 s against mosquitto 2.0.11's WebSocket listener, and as long
    // with an independent Python client, so it is the broker's pace, not the relay's (over
    // plain TLS it takes milliseconds; DPS messages are a few KB).
    for (int i = 0; payload.size() < std::size_t{70} * 1024; ++i)
      payload += std::to_string(i) + ",";
    const std::string packet = publish(payload);
    EXPECT_EQ(exchange(client.get(), packet, packet.size()), packet);
    client.reset();
    EXPECT_EQ(wait_closed(), "connection closed by client");
  }

  EventLoop loop_;
  TempDir sockets_{"dpsd-channel-ws-sock"};
  SslCtxPtr tls_;
  std::unique_ptr<SecureChannel> channel_;
  int ready_calls_ = 0;
  int closed_calls_ = 0;
  std::string ready_path_;
  std::string closed_reason_;
};

TEST_F(SecureChannelWsTest, WebSocketCarriesMqtt) {
  open_channel(options(Transport::MqttWs, ws_port));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(channel_->transport_used(), Transport::MqttWs);
  speak_mqtt();
}

TEST_F(SecureChannelWsTest, PlainMqttStillWorks) {
  open_channel(options(Transport::Mqtt, mqtt_port));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(channel_->transport_used(), Transport::Mqtt);
  speak_mqtt();
}

TEST_F(SecureChannelWsTest, UpgradeRefusedByAnHttpsServer) {
  // openssl s_server -www answers any GET with "HTTP/1.0 200 ok": not a WebSocket server.
  const std::uint16_t port = test::free_port();
  Process server({"openssl", "s_server", "-www", "-accept", "127.0.0.1:" + std::to_string(port),
                  "-cert", pki->server_cert().string(), "-key", pki->server_key().string()});
  ASSERT_TRUE(test::wait_for_tcp_port(port, 10s)) << server.stderr_text();
  open_channel(options(Transport::MqttWs, port));
  EXPECT_EQ(wait_closed(), "WebSocket: upgrade refused: 200 ok");
  EXPECT_EQ(ready_calls_, 0);
}

TEST_F(SecureChannelWsTest, ProxyWithoutCredentialsGets407) {
  ConnectProxy proxy(proxy_options("user", "pass"));
  auto o = options(Transport::MqttWs, ws_port);
  auto url = core::proxy::parse_proxy_url(proxy.url());
  ASSERT_TRUE(url);
  o.proxy = *url;
  open_channel(o);
  EXPECT_EQ(wait_closed(), "proxy: 127.0.0.1:" + std::to_string(proxy.port()) +
                               ": CONNECT refused: 407 Proxy Authentication Required");
}

TEST_F(SecureChannelWsTest, ProxyWithWrongCredentialsNeverShowsThem) {
  ConnectProxy proxy(proxy_options("user", "pass"));
  auto o = options(Transport::Auto, mqtt_port);
  auto url = core::proxy::parse_proxy_url(proxy.url("user:hunter2"));
  ASSERT_TRUE(url);
  o.proxy = *url;
  open_channel(o);
  const std::string reason = wait_closed();
  EXPECT_NE(reason.find("407"), std::string::npos) << reason;
  EXPECT_EQ(reason.find("hunter2"), std::string::npos) << reason;
  // 407 is not a reason to try port 443: the credentials are wrong there too.
  EXPECT_EQ(proxy.requests().size(), 1u);
}

TEST_F(SecureChannelWsTest, WebSocketThroughProxyWithCredentials) {
  ConnectProxy proxy(proxy_options("user", "p@ss"));
  auto o = options(Transport::MqttWs, ws_port);
  auto url = core::proxy::parse_proxy_url(proxy.url("user:p%40ss"));
  ASSERT_TRUE(url);
  o.proxy = *url;
  open_channel(o);
  wait_ready();
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(channel_->peer(), "127.0.0.1:" + std::to_string(proxy.port()));
  speak_mqtt();
  ASSERT_EQ(proxy.requests().size(), 1u);
  EXPECT_EQ(
      proxy.requests()[0].rfind("CONNECT localhost:" + std::to_string(ws_port) + " HTTP/1.1", 0),
      0u)
      << proxy.requests()[0];
  EXPECT_EQ(proxy.tunnels(), 1);
}

TEST_F(SecureChannelWsTest, PlainMqttThroughProxy) {
  ConnectProxy proxy;
  auto o = options(Transport::Mqtt, mqtt_port);
  auto url = core::proxy::parse_proxy_url(proxy.url());
  ASSERT_TRUE(url);
  o.proxy = *url;
  open_channel(o);
  wait_ready();
  ASSERT_FALSE(HasFailure());
  speak_mqtt();
}

TEST_F(SecureChannelWsTest, AutoPrefersMqttWhenReachable) {
  open_channel(options(Transport::Auto, mqtt_port));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(channel_->transport_used(), Transport::Mqtt);
  speak_mqtt();
}

TEST_F(SecureChannelWsTest, AutoFallsBackWhenFirstPortRefuses) {
  const std::uint16_t closed = test::free_port();  // nothing listens there
  open_channel(options(Transport::Auto, closed));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(channel_->transport_used(), Transport::MqttWs);
  speak_mqtt();
}

TEST_F(SecureChannelWsTest, AutoFallsBackWhenFirstPortIsSilent) {
  // A listener with a full accept queue: Linux drops further SYNs, as a firewall would.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener.get(), 0), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 2; ++i) {
    fillers.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    (void)::connect(fillers.back().get(), reinterpret_cast<const sockaddr*>(&address),
                    sizeof address);  // in progress, and it stays there
  }
  pollfd probe{fillers.back().get(), POLLOUT, 0};
  if (::poll(&probe, 1, 300) != 0) {
    GTEST_SKIP() << "this kernel completes connects beyond the backlog; cannot make one hang";
  }
  auto o = options(Transport::Auto, ntohs(address.sin_port));
  o.auto_fallback_after = 500ms;
  const auto start = std::chrono::steady_clock::now();
  open_channel(o);
  wait_ready();
  ASSERT_FALSE(HasFailure());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  EXPECT_EQ(channel_->transport_used(), Transport::MqttWs);
}

TEST_F(SecureChannelWsTest, AutoFallsBackWhenProxyRefusesFirstPort) {
  ConnectProxy proxy(proxy_options({}, {}, {ws_port}));  // like a proxy that allows only 443
  auto o = options(Transport::Auto, mqtt_port);
  auto url = core::proxy::parse_proxy_url(proxy.url());
  ASSERT_TRUE(url);
  o.proxy = *url;
  open_channel(o);
  wait_ready();
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(channel_->transport_used(), Transport::MqttWs);
  EXPECT_EQ(proxy.requests().size(), 2u);
  speak_mqtt();
}

TEST_F(SecureChannelWsTest, AutoReportsBothFailures) {
  const std::uint16_t closed_a = test::free_port();
  auto o = options(Transport::Auto, closed_a);
  o.ws_port = test::free_port();
  open_channel(o);
  const std::string reason = wait_closed();
  EXPECT_NE(reason.find(std::to_string(o.ws_port) + ": connection refused"), std::string::npos)
      << reason;
  EXPECT_NE(reason.find("after port " + std::to_string(closed_a)), std::string::npos) << reason;
}

// A one-connection TLS WebSocket server with a scripted answer: the upgrade response (built from
// the client's key) and raw bytes right behind it, then it records what the client sends until
// EOF. For what mosquitto never does: pings, close codes, bad frames.
class ScriptedWsServer {
 public:
  using Respond = std::function<std::string(const std::string& key)>;
  ScriptedWsServer(Respond respond, std::string after)
      : server_(
            pki->server_cert(), pki->server_key(),
            [this, respond = std::move(respond),
             after = std::move(after)](test::TlsConnection& connection) {
              const std::string request = connection.read_until("\r\n\r\n");
              connection.write(respond(test::ws_request_key(request)) + after);
              received_ = connection.read_to_end();
            },
            5s) {}
  std::uint16_t port() const { return server_.port(); }
  void join() { server_.join(); }
  // What the client sent after the upgrade; valid after join().
  const std::string& received() const { return received_; }

 private:
  std::string received_;
  test::TlsTestServer server_;  // last: its thread stops before received_ goes
};

std::string upgrade_ok(const std::string& key, const std::string& protocol = "mqtt") {
  return test::ws_upgrade_answer(key, protocol);
}

// Client frames as the scripted server received them.
std::vector<test::WsFrame> client_frames(std::string bytes) {
  return test::ws_take_client_frames(bytes);
}

TEST_F(SecureChannelWsTest, PingBehindTheUpgradeIsAnsweredAndFragmentsAreJoined) {
  // A ping in the same TLS record as the 101, then a CONNACK split over two fragments.
  ScriptedWsServer server([](const std::string& key) { return upgrade_ok(key); },
                          test::ws_server_frame(0x89, "hi") +
                              test::ws_server_frame(0x02, std::string("\x20\x02", 2)) +
                              test::ws_server_frame(0x80, std::string("\x00\x00", 2)));
  open_channel(options(Transport::MqttWs, server.port()));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  UniqueFd client = connect_unix(ready_path_);
  ASSERT_GE(client.get(), 0);
  EXPECT_EQ(exchange(client.get(), kConnect, kConnack.size()), kConnack);
  client.reset();
  EXPECT_EQ(wait_closed(), "connection closed by client");
  server.join();
  const auto frames = client_frames(server.received());
  ASSERT_GE(frames.size(), 3u) << server.received().size();
  EXPECT_EQ(frames[0], (test::WsFrame{0xA, "hi"}));  // the pong, first
  EXPECT_EQ(frames[1], (test::WsFrame{0x2, kConnect}));
  EXPECT_EQ(frames.back().opcode, 0x8);  // our close frame on the way out
}

TEST_F(SecureChannelWsTest, ServerCloseFrameIsAnsweredAndReported) {
  ScriptedWsServer server([](const std::string& key) { return upgrade_ok(key); },
                          test::ws_server_frame(0x88, std::string("\x03\xe9going away", 12)));
  open_channel(options(Transport::MqttWs, server.port()));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  UniqueFd client = connect_unix(ready_path_);
  ASSERT_GE(client.get(), 0);
  EXPECT_EQ(wait_closed(), "WebSocket: closed by server: 1001 going away");
  client.reset();
  server.join();
  const auto frames = client_frames(server.received());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], (test::WsFrame{0x8, std::string("\x03\xe9", 2)}));  // the code echoed
}

TEST_F(SecureChannelWsTest, MaskedServerFrameEndsTheChannel) {
  ScriptedWsServer server([](const std::string& key) { return upgrade_ok(key); },
                          std::string("\x82\x82\x01\x02\x03\x04"
                                      "ab",
                                      8));
  open_channel(options(Transport::MqttWs, server.port()));
  EXPECT_EQ(wait_closed(), "WebSocket: server sent a masked frame");
  EXPECT_EQ(ready_calls_, 0);
}

TEST_F(SecureChannelWsTest, BadAcceptKeyFromARealServer) {
  ScriptedWsServer server([](const std::string&) { return upgrade_ok("not-the-key"); }, "");
  open_channel(options(Transport::MqttWs, server.port()));
  EXPECT_EQ(wait_closed(), "WebSocket: bad Sec-WebSocket-Accept");
}

TEST_F(SecureChannelWsTest, UpperCaseSubprotocolFromARealServer) {
  ScriptedWsServer server([](const std::string& key) { return upgrade_ok(key, "MQTT"); }, "");
  open_channel(options(Transport::MqttWs, server.port()));
  EXPECT_EQ(wait_closed(), "WebSocket: server did not accept subprotocol mqtt");
}

TEST_F(SecureChannelWsTest, NotFoundFromARealServer) {
  ScriptedWsServer server(
      [](const std::string&) { return std::string("HTTP/1.1 404 Not Found\r\n\r\n"); }, "");
  open_channel(options(Transport::MqttWs, server.port()));
  EXPECT_EQ(wait_closed(), "WebSocket: upgrade refused: 404 Not Found");
}

}  // namespace
}  // namespace dpsd::io

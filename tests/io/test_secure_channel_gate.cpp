// The relay's inbound MQTT gate against a scripted hostile TLS server, over MQTT and over
// WebSocket: after the client's CONNECT the server answers CONNACK, waits for a PINGREQ (so the
// test knows the CONNACK went through on its own), then sends what DPS never sends. The channel
// must close with the gate's reason, and the client side (libmosquitto's seat) must never see
// a byte of the refused packet.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/mqtt_inbound_gate.hpp"
#include "core/websocket.hpp"
#include "io/event_loop.hpp"
#include "io/secure_channel.hpp"
#include "io/tls_context.hpp"
#include "io/unique_fd.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

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

// An unmasked binary WebSocket frame (RFC 6455 5.2), as a server sends it.
std::string ws_frame(const std::string& payload) {
  std::string out("\x82", 1);
  const std::size_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(n);
  } else if (n < 65536) {
    out += '\x7e';
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xff);
  } else {
    out += '\x7f';
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  }
  return out + payload;
}

// One TLS connection on a thread. Plain: MQTT bytes as they are; WebSocket: upgrade first, then
// every chunk in its own binary frame. It answers the CONNECT with CONNACK, and the first
// PINGREQ with `hostile` (sent as the given chunks, each its own TLS record), then hangs up or
// reads until the client goes away.
class HostileServer {
 public:
  HostileServer(const TestPki& pki, bool websocket, std::vector<std::string> hostile,
                bool hang_up = false)
      : websocket_(websocket),
        hang_up_(hang_up),
        hostile_(std::move(hostile)),
        listener_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate_chain_file(ctx_.get(), pki.server_cert().c_str());
    SSL_CTX_use_PrivateKey_file(ctx_.get(), pki.server_key().c_str(), SSL_FILETYPE_PEM);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::listen(listener_.get(), 1);
    ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~HostileServer() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  struct CtxDeleter {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  struct SslDeleter {
    void operator()(SSL* s) const { SSL_free(s); }
  };

  // Reads until `mqtt` (the client's MQTT bytes so far) holds `want` bytes; false on EOF.
  bool read_mqtt(SSL* ssl, std::string& raw, std::string& mqtt, std::size_t want) {
    char buffer[4096];
    while (mqtt.size() < want) {
      const int n = SSL_read(ssl, buffer, sizeof buffer);
      if (n <= 0) return false;
      if (!websocket_) {
        mqtt.append(buffer, static_cast<std::size_t>(n));
        continue;
      }
      raw.append(buffer, static_cast<std::size_t>(n));
      // The client masks, which the client-side decoder refuses; unmask by hand instead.
      while (raw.size() >= 6) {
        std::size_t len = static_cast<std::uint8_t>(raw[1]) & 0x7f;
        std::size_t header = 2;
        if (len == 126) {
          if (raw.size() < 8) break;
          len = (static_cast<std::size_t>(static_cast<std::uint8_t>(raw[2])) << 8) |
                static_cast<std::uint8_t>(raw[3]);
          header = 4;
        }
        if (raw.size() < header + 4 + len) break;
        const std::string mask = raw.substr(header, 4);
        for (std::size_t i = 0; i < len; ++i)
          mqtt += static_cast<char>(raw[header + 4 + i] ^ mask[i % 4]);
        raw.erase(0, header + 4 + len);
      }
    }
    return true;
  }

  void send(SSL* ssl, const std::string& mqtt) {
    const std::string out = websocket_ ? ws_frame(mqtt) : mqtt;
    SSL_write(ssl, out.data(), static_cast<int>(out.size()));
  }

  void serve() {
    UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;
    timeval tv{10, 0};  // never hang the suite
    ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), conn.get());
    if (SSL_accept(ssl.get()) != 1) return;
    char buffer[4096];
    if (websocket_) {
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        const int n = SSL_read(ssl.get(), buffer, sizeof buffer);
        if (n <= 0) return;
        request.append(buffer, static_cast<std::size_t>(n));
      }
      const std::string name = "Sec-WebSocket-Key: ";
      const std::size_t at = request.find(name) + name.size();
      const std::string key = request.substr(at, request.find("\r\n", at) - at);
      const std::string answer =
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " +
          core::ws::accept_for_key(key) + "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
      SSL_write(ssl.get(), answer.data(), static_cast<int>(answer.size()));
    }
    std::string raw;
    std::string mqtt;
    if (!read_mqtt(ssl.get(), raw, mqtt, kConnect.size())) return;
    send(ssl.get(), kConnack);
    if (!read_mqtt(ssl.get(), raw, mqtt, kConnect.size() + kPingreq.size())) return;
    for (const std::string& chunk : hostile_) send(ssl.get(), chunk);
    if (hang_up_) {
      SSL_shutdown(ssl.get());
      return;
    }
    while (SSL_read(ssl.get(), buffer, sizeof buffer) > 0) {
    }
  }

  bool websocket_;
  bool hang_up_;
  std::vector<std::string> hostile_;
  std::unique_ptr<SSL_CTX, CtxDeleter> ctx_;
  UniqueFd listener_;
  std::uint16_t port_ = 0;
  std::thread thread_;
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
                       {publish(2, std::string(100 * 1000, 'q'))});
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
  const std::string big = publish(1, std::string(96 * 1024, 'a'));
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

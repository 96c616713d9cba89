// transport::ProxyTunnel over a real TCP stream: against tests/support/connect_proxy (a real
// CONNECT proxy: tunnels, 407, 403, 502) and against a scripted one-connection server for the
// answers no proxy gives on demand.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "core/http_proxy.hpp"
#include "io/transport/proxy_tunnel.hpp"
#include "stage_driver.hpp"
#include "support/connect_proxy.hpp"
#include "support/net.hpp"

namespace dpsd::io::transport {
namespace {

using namespace std::chrono_literals;
using test::ConnectProxy;
using test::ConnectProxyOptions;

core::proxy::ProxyUrl proxy_url(const std::string& url) {
  auto parsed = core::proxy::parse_proxy_url(url);
  EXPECT_TRUE(parsed.ok()) << url;
  return parsed.ok() ? *parsed : core::proxy::ProxyUrl{};
}

// One connection on a free loopback port: reads the request head, sends `answer`, then closes
// (or, with hold, waits until the client goes away).
class ScriptedProxy {
 public:
  explicit ScriptedProxy(std::string answer, bool hold = false)
      : listener_(test::listen_on_loopback(&port_)) {
    thread_ = std::thread([this, answer = std::move(answer), hold] {
      UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) return;
      timeval tv{10, 0};  // never hang the suite
      ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string head;
      char buffer[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(conn.get(), buffer, sizeof buffer, 0);
        if (n <= 0) return;
        head.append(buffer, static_cast<std::size_t>(n));
      }
      ::send(conn.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
      while (hold && ::recv(conn.get(), buffer, sizeof buffer, 0) > 0) {
      }
    });
  }
  ~ScriptedProxy() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  std::uint16_t port_ = 0;
  UniqueFd listener_;
  std::thread thread_;
};

struct Outcome {
  Progress progress = Progress::Pending;
  std::string reason;  // describe(failure()) when Failed
  int status = 0;
};

Outcome tunnel_through(std::uint16_t proxy_port, const std::string& url, std::uint16_t target,
                       std::unique_ptr<TcpStream>* kept = nullptr) {
  auto tcp = test::tcp_to(proxy_port);
  EXPECT_NE(tcp, nullptr) << "cannot connect to the proxy on port " << proxy_port;
  if (!tcp) return {};
  ProxyTunnel tunnel(*tcp, proxy_url(url), "127.0.0.1", target);
  Outcome outcome;
  outcome.progress = test::drive(tunnel, tcp->fd());
  EXPECT_NE(outcome.progress, Progress::Pending) << "the proxy did not answer within 10 s";
  if (outcome.progress == Progress::Failed) outcome.reason = describe(tunnel.failure());
  outcome.status = tunnel.status();
  if (kept != nullptr) *kept = std::move(tcp);
  return outcome;
}

TEST(ProxyTunnel, TunnelCarriesBytesToTheTarget) {
  ConnectProxy proxy(ConnectProxyOptions{.user = "user", .password = "p@ss", .allowed_ports = {}});
  std::uint16_t target = 0;
  UniqueFd listener = test::listen_on_loopback(&target);
  std::unique_ptr<TcpStream> tcp;
  const Outcome outcome = tunnel_through(proxy.port(), proxy.url("user:p%40ss"), target, &tcp);
  ASSERT_EQ(outcome.progress, Progress::Done) << outcome.reason;
  EXPECT_EQ(outcome.status, 200);

  // The proxy connected to the target while answering; the target's accept queue holds it.
  UniqueFd at_target(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(at_target) << "the proxy did not connect to the target";
  ASSERT_TRUE(test::write_all(*tcp, "through the tunnel"));
  std::string got(18, '\0');
  ASSERT_EQ(::recv(at_target.get(), got.data(), got.size(), MSG_WAITALL), 18);
  EXPECT_EQ(got, "through the tunnel");

  ASSERT_EQ(proxy.requests().size(), 1u);
  const std::string request = proxy.requests()[0];
  EXPECT_EQ(request.rfind("CONNECT 127.0.0.1:" + std::to_string(target) + " HTTP/1.1\r\n", 0), 0u)
      << request;
  EXPECT_NE(request.find("\r\nProxy-Authorization: Basic dXNlcjpwQHNz"), std::string::npos)
      << request;
}

TEST(ProxyTunnel, MissingCredentialsAre407) {
  ConnectProxy proxy(ConnectProxyOptions{.user = "user", .password = "pass", .allowed_ports = {}});
  const Outcome outcome = tunnel_through(proxy.port(), proxy.url(), test::free_port());
  ASSERT_EQ(outcome.progress, Progress::Failed);
  EXPECT_EQ(outcome.status, 407);
  EXPECT_EQ(outcome.reason, "proxy: 127.0.0.1:" + std::to_string(proxy.port()) +
                                ": CONNECT refused: 407 Proxy Authentication Required");
}

TEST(ProxyTunnel, ForbiddenPortAndUnreachableTargetAreRefusals) {
  const std::uint16_t target = test::free_port();
  ConnectProxy picky(ConnectProxyOptions{.user = {}, .password = {}, .allowed_ports = {443}});
  const Outcome forbidden = tunnel_through(picky.port(), picky.url(), target);
  EXPECT_EQ(forbidden.status, 403);
  EXPECT_EQ(forbidden.reason, "proxy: 127.0.0.1:" + std::to_string(picky.port()) +
                                  ": CONNECT refused: 403 Forbidden");

  ConnectProxy open;
  const Outcome unreachable = tunnel_through(open.port(), open.url(), target);  // nobody there
  EXPECT_EQ(unreachable.status, 502);
  EXPECT_EQ(unreachable.reason, "proxy: 127.0.0.1:" + std::to_string(open.port()) +
                                    ": CONNECT refused: 502 Bad Gateway");
}

TEST(ProxyTunnel, NotAProxy) {
  ScriptedProxy ssh("SSH-2.0-OpenSSH_9.2\r\n", /*hold=*/true);
  const Outcome outcome =
      tunnel_through(ssh.port(), "http://127.0.0.1:" + std::to_string(ssh.port()), 8883);
  EXPECT_EQ(outcome.reason, "proxy: 127.0.0.1:" + std::to_string(ssh.port()) +
                                ": not an HTTP proxy (response does not start with HTTP/)");
}

TEST(ProxyTunnel, DataBehindTheAnswerIsAProtocolError) {
  ScriptedProxy chatty("HTTP/1.1 200 Connection established\r\n\r\nhello", /*hold=*/true);
  auto tcp = test::tcp_to(chatty.port());
  ASSERT_NE(tcp, nullptr);
  ProxyTunnel tunnel(*tcp, proxy_url("http://127.0.0.1:" + std::to_string(chatty.port())),
                     "127.0.0.1", 8883);
  ASSERT_EQ(test::drive(tunnel, tcp->fd()), Progress::Failed);
  EXPECT_EQ(tunnel.failure().reason, CloseReason::ProtocolError);
  EXPECT_EQ(describe(tunnel.failure()), "proxy: 127.0.0.1:" + std::to_string(chatty.port()) +
                                            ": sent data after its CONNECT answer");
}

TEST(ProxyTunnel, ProxyHangingUpMidAnswer) {
  ScriptedProxy rude("HTTP/1.1 200 Connection");  // then closes
  const Outcome outcome =
      tunnel_through(rude.port(), "http://127.0.0.1:" + std::to_string(rude.port()), 8883);
  EXPECT_EQ(outcome.reason, "proxy: 127.0.0.1:" + std::to_string(rude.port()) +
                                ": closed the connection during CONNECT");
}

}  // namespace
}  // namespace dpsd::io::transport

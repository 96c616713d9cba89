// transport::TcpConnector and TcpStream on loopback: the address order (Happy Eyeballs), a
// refused or silent address giving way to the next, the budgets, DNS, and how a TCP stream
// says it ended.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/event_loop.hpp"
#include "io/transport/tcp_connector.hpp"
#include "stage_driver.hpp"
#include "support/net.hpp"

namespace dpsd::io::transport {
namespace {

using namespace std::chrono_literals;
using test::listen_on_loopback;

SocketAddress address(const std::string& literal, std::uint16_t port) {
  auto parsed = parse_ip_literal(literal, port);
  EXPECT_TRUE(parsed.has_value()) << literal;
  return parsed.value_or(SocketAddress{});
}

std::vector<std::string> names(const std::vector<SocketAddress>& addresses) {
  std::vector<std::string> out;
  out.reserve(addresses.size());
  for (const SocketAddress& a : addresses) out.push_back(a.to_string());
  return out;
}

// A listener whose accept queue is full: Linux drops further SYNs, so a connect to it neither
// succeeds nor fails, as with a firewall that drops packets.
struct SilentListener {
  UniqueFd listener;
  std::vector<UniqueFd> fillers;
  std::uint16_t port = 0;
};

SilentListener silent_listener() {
  SilentListener silent;
  silent.listener = listen_on_loopback(&silent.port, 0);
  const sockaddr_in to = test::loopback(silent.port);
  for (int i = 0; i < 2; ++i) {
    silent.fillers.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    (void)::connect(silent.fillers.back().get(), reinterpret_cast<const sockaddr*>(&to),
                    sizeof to);  // in progress, and it stays there
  }
  pollfd probe{silent.fillers.back().get(), POLLOUT, 0};
  EXPECT_EQ(::poll(&probe, 1, 300), 0)
      << "this kernel completes connects beyond the backlog; a silent address cannot be made";
  return silent;
}

class TcpConnectorTest : public ::testing::Test {
 protected:
  void connect(TcpConnector::Options options,
               const std::vector<SocketAddress>* addresses = nullptr) {
    connector_ = std::make_unique<TcpConnector>(
        loop_.get(), std::move(options), [this](std::unique_ptr<TcpStream> stream, Close failure) {
          ++calls_;
          stream_ = std::move(stream);
          failure_ = std::move(failure);
        });
    if (addresses != nullptr) {
      connector_->connect_to(*addresses);
    } else {
      connector_->start();
    }
  }

  // Runs the loop until the handler ran; fails the test (saying so) when it does not.
  bool wait_done(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (calls_ == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ADD_FAILURE() << "the connector did not finish within " << timeout.count() << " ms";
        return false;
      }
      sd_event_run(loop_.get(), 20'000);
    }
    return true;
  }

  EventLoop loop_;
  std::unique_ptr<TcpConnector> connector_;
  int calls_ = 0;
  std::unique_ptr<TcpStream> stream_;
  Close failure_;
};

TEST(HappyEyeballs, FamiliesAlternateStartingWithTheFirst) {
  const std::vector<SocketAddress> in = {address("::1", 1), address("::2", 1), address("::3", 1),
                                         address("10.0.0.1", 1), address("10.0.0.2", 1)};
  EXPECT_EQ(
      names(interleave_families(in)),
      (std::vector<std::string>{"[::1]:1", "10.0.0.1:1", "[::2]:1", "10.0.0.2:1", "[::3]:1"}));
  const std::vector<SocketAddress> v4_first = {address("10.0.0.1", 1), address("::1", 1)};
  EXPECT_EQ(names(interleave_families(v4_first)), names(v4_first));
  const std::vector<SocketAddress> one_family = {address("10.0.0.2", 1), address("10.0.0.1", 1)};
  EXPECT_EQ(names(interleave_families(one_family)), names(one_family));
  EXPECT_TRUE(interleave_families({}).empty());
}

TEST_F(TcpConnectorTest, RefusedAddressGivesWayToTheNext) {
  const std::uint16_t closed = test::free_port();  // nobody listens there
  std::uint16_t open = 0;
  UniqueFd listener = listen_on_loopback(&open);
  const std::vector<SocketAddress> addresses = {address("127.0.0.1", closed),
                                                address("127.0.0.1", open)};
  connect({.host = "127.0.0.1", .port = closed}, &addresses);
  ASSERT_TRUE(wait_done());
  ASSERT_NE(stream_, nullptr) << describe(failure_);
  EXPECT_EQ(connector_->peer(), "127.0.0.1:" + std::to_string(open));
  EXPECT_EQ(calls_, 1);
}

TEST_F(TcpConnectorTest, SilentAddressCostsOnlyItsAttemptTimeout) {
  SilentListener silent = silent_listener();
  ASSERT_FALSE(HasFailure());
  std::uint16_t open = 0;
  UniqueFd listener = listen_on_loopback(&open);
  const std::vector<SocketAddress> addresses = {address("127.0.0.1", silent.port),
                                                address("127.0.0.1", open)};
  // The overall budget is far longer than the test's wait: only the attempt timeout can get
  // the connector past the silent address in time.
  connect({.host = "127.0.0.1", .port = silent.port, .timeout = 60s, .attempt_timeout = 300ms},
          &addresses);
  ASSERT_TRUE(wait_done(20s));
  ASSERT_NE(stream_, nullptr) << describe(failure_);
  EXPECT_EQ(connector_->peer(), "127.0.0.1:" + std::to_string(open));
}

TEST_F(TcpConnectorTest, TheLastAddressGetsTheWholeRemainingBudget) {
  SilentListener silent = silent_listener();
  ASSERT_FALSE(HasFailure());
  const std::uint16_t closed = test::free_port();
  const std::vector<SocketAddress> addresses = {address("127.0.0.1", closed),
                                                address("127.0.0.1", silent.port)};
  connect({.host = "127.0.0.1", .port = closed, .timeout = 500ms, .attempt_timeout = 100ms},
          &addresses);
  ASSERT_TRUE(wait_done());
  ASSERT_EQ(stream_, nullptr);
  // Not the attempt timeout (100 ms): the overall budget, named after the host and port.
  EXPECT_EQ(describe(failure_),
            "connect: 127.0.0.1:" + std::to_string(closed) + ": timed out after 500 ms");
  EXPECT_EQ(failure_.reason, CloseReason::Timeout);
  EXPECT_EQ(failure_.stage, Stage::Connect);
}

TEST_F(TcpConnectorTest, EveryAddressRefusedReportsTheLast) {
  const std::uint16_t a = test::free_port();
  const std::uint16_t b = test::free_port();
  const std::vector<SocketAddress> addresses = {address("127.0.0.1", a), address("127.0.0.1", b)};
  connect({.host = "example.test", .port = a}, &addresses);
  ASSERT_TRUE(wait_done());
  ASSERT_EQ(stream_, nullptr);
  EXPECT_EQ(failure_.reason, CloseReason::Unreachable);
  EXPECT_EQ(describe(failure_), "connect: 127.0.0.1:" + std::to_string(b) + ": connection refused");
}

TEST_F(TcpConnectorTest, ResolvesANameAndConnects) {
  std::uint16_t open = 0;
  UniqueFd listener = listen_on_loopback(&open);
  connect({.host = "localhost", .port = open});
  ASSERT_TRUE(wait_done());
  ASSERT_NE(stream_, nullptr) << describe(failure_);
  EXPECT_EQ(connector_->peer(), "127.0.0.1:" + std::to_string(open));
}

TEST_F(TcpConnectorTest, UnknownNameIsADnsFailure) {
  connect({.host = "nonexistent.invalid", .port = 8883, .timeout = 30s});
  ASSERT_TRUE(wait_done(35s));
  ASSERT_EQ(stream_, nullptr);
  EXPECT_EQ(failure_.stage, Stage::Dns);
  EXPECT_EQ(failure_.reason, CloseReason::NameNotResolved);
  const std::string reason = describe(failure_);
  EXPECT_EQ(reason.rfind("dns: nonexistent.invalid: ", 0), 0u) << reason;
}

TEST_F(TcpConnectorTest, HandlerMayDestroyTheConnector) {
  const std::uint16_t closed = test::free_port();
  int calls = 0;
  connector_ = std::make_unique<TcpConnector>(
      loop_.get(), TcpConnector::Options{.host = "127.0.0.1", .port = closed},
      [&](std::unique_ptr<TcpStream> /*stream*/, const Close& /*failure*/) {
        ++calls;
        connector_.reset();
      });
  connector_->start();  // a refusal may come from inside start()
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (calls == 0 && std::chrono::steady_clock::now() < deadline) {
    sd_event_run(loop_.get(), 20'000);
  }
  EXPECT_EQ(calls, 1) << "the handler did not run within 5 s";
  EXPECT_EQ(connector_, nullptr);
}

// How a TCP stream ends: an orderly close, a reset.
TEST(TcpStream, OrderlyCloseAndReset) {
  std::uint16_t port = 0;
  UniqueFd listener = listen_on_loopback(&port);
  {
    auto stream = test::tcp_to(port);
    ASSERT_NE(stream, nullptr);
    UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    char byte = 0;
    EXPECT_EQ(stream->read(&byte, 1).status, IoResult::Status::WouldBlock);
    EXPECT_EQ(stream->wanted_events(true, false), static_cast<std::uint32_t>(POLLIN));
    server.reset();
    bool closed = false;
    EXPECT_EQ(test::read_some(*stream, 1, &closed), "");
    EXPECT_TRUE(closed) << "no end of stream after the peer closed";
    EXPECT_EQ(stream->close_reason().reason, CloseReason::PeerClosed);
    EXPECT_EQ(describe(stream->close_reason()), "connection closed by server");
  }
  {
    auto stream = test::tcp_to(port);
    ASSERT_NE(stream, nullptr);
    UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    const linger abort{1, 0};  // close() sends RST
    ::setsockopt(server.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    server.reset();
    bool closed = false;
    test::read_some(*stream, 1, &closed);
    ASSERT_TRUE(closed) << "no end of stream after the peer reset";
    EXPECT_EQ(stream->close_reason().reason, CloseReason::Reset);
    EXPECT_EQ(describe(stream->close_reason()), "connection reset by server");
  }
}

}  // namespace
}  // namespace dpsd::io::transport

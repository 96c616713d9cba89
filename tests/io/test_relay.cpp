// transport::Relay with a plain stream on top (one end of a socket pair; the test holds the
// other, the "server"): bytes both ways, back-pressure, the peer check, the gate, and the close
// reasons. The relay does not care what the top stream is; TLS and WebSocket are tested in
// test_secure_channel*.cpp through the whole channel.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "io/event_loop.hpp"
#include "io/transport/relay.hpp"
#include "stage_driver.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::io::transport {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::TempDir;

const std::string kConnect("\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test", 18);
const std::string kConnack("\x20\x02\x00\x00", 4);

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ADD_FAILURE() << "cannot connect to the relay socket " << path << ": " << std::strerror(errno);
    return UniqueFd();
  }
  return fd;
}

// An MQTT packet the gate lets through: a SUBACK-typed header and `body`.
std::string suback(std::size_t body) {
  std::string out = "\x90";
  for (std::size_t n = body;;) {
    auto byte = static_cast<std::uint8_t>(n % 128);
    n /= 128;
    out += static_cast<char>(n > 0 ? byte | 0x80 : byte);
    if (n == 0) break;
  }
  return out + std::string(body, 's');
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int pair[2] = {-1, -1};
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
    server_ = UniqueFd(pair[1]);
    relay_ = std::make_unique<Relay>(loop_.get(), std::make_unique<TcpStream>(UniqueFd(pair[0])),
                                     [this](const Close& why) {
                                       ++closed_calls_;
                                       closed_ = why;
                                     });
    auto path = relay_->listen(sockets_.path());
    ASSERT_TRUE(path.ok()) << path.error();
    path_ = *path;
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      sd_event_run(loop_.get(), 20'000);
    }
    return true;
  }

  // Runs the loop until it has had nothing to do for a while: the relay is waiting.
  void run_until_idle() {
    for (int quiet = 0, rounds = 0; quiet < 5 && rounds < 10000; ++rounds) {
      quiet = sd_event_run(loop_.get(), 10'000) == 0 ? quiet + 1 : 0;
    }
  }

  // Everything readable on fd now (non-blocking); *eof when it ended.
  static std::string drain(int fd, bool* eof = nullptr) {
    std::string in;
    char buffer[65536];
    for (;;) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        in.append(buffer, static_cast<std::size_t>(n));
        continue;
      }
      if (eof != nullptr && (n == 0 || (errno != EAGAIN && errno != EINTR))) *eof = true;
      return in;
    }
  }

  std::string closed_reason() const { return closed_ ? describe(*closed_) : "(not closed)"; }

  EventLoop loop_;
  TempDir sockets_{"dpsd-relay-sock"};
  UniqueFd server_;
  std::unique_ptr<Relay> relay_;
  std::string path_;
  int closed_calls_ = 0;
  std::optional<Close> closed_;
};

TEST_F(RelayTest, BothWaysThenTheServersCloseAfterItsLastBytes) {
  EXPECT_TRUE(fs::is_socket(path_));
  UniqueFd client = connect_unix(path_);
  ASSERT_TRUE(client);
  ASSERT_EQ(::send(client.get(), kConnect.data(), kConnect.size(), MSG_NOSIGNAL), 18);
  std::string at_server;
  ASSERT_TRUE(run_until([&] { return (at_server += drain(server_.get())).size() >= 18; }))
      << "the CONNECT did not reach the server; closed: " << closed_reason();
  EXPECT_EQ(at_server, kConnect);
  EXPECT_FALSE(fs::exists(path_)) << "the socket's name outlived the accept";

  // The CONNACK and the server's close in one go: the bytes are delivered before the report.
  ::send(server_.get(), kConnack.data(), kConnack.size(), MSG_NOSIGNAL);
  server_.reset();
  std::string at_client;
  ASSERT_TRUE(run_until([&] { return (at_client += drain(client.get())), closed_calls_ > 0; }))
      << "no report after the server left; the client got " << at_client.size() << " bytes";
  EXPECT_EQ(at_client + drain(client.get()), kConnack);
  EXPECT_EQ(closed_reason(), "connection closed by server");
  relay_.reset();  // what the channel does on the report: the client sees the end
  bool eof = false;
  drain(client.get(), &eof);
  EXPECT_TRUE(eof);
  run_until([] { return false; }, 100ms);
  EXPECT_EQ(closed_calls_, 1);
}

TEST_F(RelayTest, ClientCloseIsALocalClose) {
  UniqueFd client = connect_unix(path_);
  ASSERT_TRUE(client);
  ASSERT_TRUE(run_until([&] { return !fs::exists(path_); })) << "the relay did not accept";
  client.reset();
  ASSERT_TRUE(run_until([&] { return closed_calls_ > 0; })) << "no report after the client left";
  EXPECT_EQ(closed_->reason, CloseReason::LocalClose);
  EXPECT_EQ(closed_reason(), "connection closed by client");
}

TEST_F(RelayTest, BackPressureBoundsWhatTheRelayTakes) {
  UniqueFd client = connect_unix(path_);
  ASSERT_TRUE(client);
  ASSERT_TRUE(run_until([&] { return !fs::exists(path_); })) << "the relay did not accept";

  // The server writes as long as anything takes its bytes; the client reads nothing. Every
  // buffer on the way is bounded, so the server must come to a stop long before 64 MiB.
  const std::string packet = suback(std::size_t{100} * 1024);
  std::string written;
  std::size_t offset = 0;  // into the packet being written
  int rounds_without_room = 0;
  while (written.size() < std::size_t{64} * 1024 * 1024 && rounds_without_room < 2) {
    const ssize_t n =
        ::send(server_.get(), packet.data() + offset, packet.size() - offset, MSG_NOSIGNAL);
    if (n > 0) {
      written.append(packet, offset, static_cast<std::size_t>(n));
      offset = (offset + static_cast<std::size_t>(n)) % packet.size();
      rounds_without_room = 0;
      continue;
    }
    run_until_idle();  // let the relay take what it will
    ++rounds_without_room;
  }
  ASSERT_EQ(rounds_without_room, 2)
      << "the relay kept taking bytes nobody reads (" << written.size() << " so far)";
  EXPECT_EQ(closed_calls_, 0) << closed_reason();

  // Now the client reads: everything arrives, in order. The server finishes its last packet
  // (the gate holds back a header it has not seen the end of).
  std::string at_client;
  ASSERT_TRUE(run_until(
      [&] {
        if (offset != 0) {
          const ssize_t n =
              ::send(server_.get(), packet.data() + offset, packet.size() - offset, MSG_NOSIGNAL);
          if (n > 0) {
            written.append(packet, offset, static_cast<std::size_t>(n));
            offset = (offset + static_cast<std::size_t>(n)) % packet.size();
          }
        }
        at_client += drain(client.get());
        return offset == 0 && at_client.size() >= written.size();
      },
      30s))
      << "the client got " << at_client.size() << " of " << written.size() << " bytes";
  EXPECT_TRUE(at_client == written) << "the bytes arrived changed";
}

TEST_F(RelayTest, AnotherProcessIsHungUpOn) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) _exit(2);
    ::send(fd, kConnect.data(), kConnect.size(), MSG_NOSIGNAL);
    alarm(10);  // never outlive a broken parent
    char byte;
    const ssize_t n = ::recv(fd, &byte, 1, 0);
    _exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 3);
  }
  int status = -1;
  if (!run_until([&] { return ::waitpid(child, &status, WNOHANG) == child; })) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    FAIL() << "the foreign client was not hung up on within 10 s";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child status " << status << " (2: connect failed, 3: received data)";
  EXPECT_EQ(drain(server_.get()), "") << "a foreign client's bytes reached the server";
  EXPECT_TRUE(fs::exists(path_)) << "the relay stopped listening for its own client";

  UniqueFd client = connect_unix(path_);  // our own process gets through
  ASSERT_TRUE(client);
  ASSERT_EQ(::send(client.get(), kConnect.data(), kConnect.size(), MSG_NOSIGNAL), 18);
  std::string at_server;
  EXPECT_TRUE(run_until([&] { return (at_server += drain(server_.get())).size() >= 18; }))
      << "our own client's CONNECT did not get through";
  EXPECT_EQ(closed_calls_, 0) << closed_reason();
}

TEST_F(RelayTest, GateRefusalEndsTheRelayBeforeAByteOfThePacket) {
  UniqueFd client = connect_unix(path_);
  ASSERT_TRUE(client);
  ASSERT_TRUE(run_until([&] { return !fs::exists(path_); })) << "the relay did not accept";
  // A CONNACK, then a QoS 2 PUBLISH, which DPS never sends.
  const std::string hostile = kConnack + std::string("\x34\x05\x00\x01t\x00\x01", 7);
  ::send(server_.get(), hostile.data(), hostile.size(), MSG_NOSIGNAL);
  ASSERT_TRUE(run_until([&] { return closed_calls_ > 0; })) << "the gate did not refuse";
  EXPECT_EQ(closed_->reason, CloseReason::GateRefused);
  EXPECT_EQ(closed_reason(), "DPS sent a QoS 2 PUBLISH, which DPS never does (protocol error)");
  relay_.reset();  // what the channel does on the report
  bool eof = false;
  const std::string at_client = drain(client.get(), &eof);
  EXPECT_TRUE(at_client.empty() || at_client == kConnack) << "refused bytes reached the client";
  EXPECT_TRUE(eof);
}

TEST_F(RelayTest, AHeaderTheServerNeverFinishesIsNotDelivered) {
  UniqueFd client = connect_unix(path_);
  ASSERT_TRUE(client);
  ASSERT_TRUE(run_until([&] { return !fs::exists(path_); })) << "the relay did not accept";
  const std::string half = kConnack + "\x30\xff";  // a PUBLISH whose length never ends
  ::send(server_.get(), half.data(), half.size(), MSG_NOSIGNAL);
  server_.reset();
  ASSERT_TRUE(run_until([&] { return closed_calls_ > 0; })) << "no report after the server left";
  EXPECT_EQ(closed_reason(), "connection closed by server");
  EXPECT_EQ(drain(client.get()), kConnack) << "held-back header bytes reached the client";
}

TEST_F(RelayTest, DestroyingTheRelayRemovesTheSocketAndReportsNothing) {
  ASSERT_TRUE(fs::exists(path_));
  relay_.reset();
  EXPECT_FALSE(fs::exists(path_));
  run_until([] { return false; }, 100ms);
  EXPECT_EQ(closed_calls_, 0);
}

TEST(RelaySocket, PrivateDirectoryIsChecked) {
  EventLoop loop;
  TempDir dir("dpsd-relay-dir");
  const fs::path open = dir.path() / "open";
  fs::create_directory(open);
  fs::permissions(open, fs::perms(0755));
  int pair[2] = {-1, -1};
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd server(pair[1]);
  Relay relay(loop.get(), std::make_unique<TcpStream>(UniqueFd(pair[0])), [](const Close&) {});
  const auto path = relay.listen(open);
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(describe(Close(CloseReason::SetupFailed, Stage::RelaySocket, path.error())),
            "relay socket: " + open.string() + " has mode 0755; it must be 0700");
  EXPECT_TRUE(fs::is_empty(open));
}

}  // namespace
}  // namespace dpsd::io::transport

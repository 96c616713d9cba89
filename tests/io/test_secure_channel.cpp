// SecureChannel and the TLS context against real servers: `openssl s_server` on a free loopback
// port with a throw-away PKI, plain TCP listeners the test owns, and real DNS lookups.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/event_loop.hpp"
#include "io/secure_channel.hpp"
#include "io/tls_context.hpp"
#include "io/unique_fd.hpp"
#include "support/files.hpp"
#include "support/net.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace dpsd::io {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using dpsd::test::Process;
using dpsd::test::TempDir;
using dpsd::test::TestPki;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// A TCP listener that never accepts and never speaks: TCP connects, TLS never starts.
UniqueFd listen_silently(std::uint16_t* port, int backlog) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address = loopback(0);
  socklen_t length = sizeof address;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd.get(), backlog) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ADD_FAILURE() << "cannot listen on 127.0.0.1: " << std::strerror(errno);
  }
  *port = ntohs(address.sin_port);
  return fd;
}

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

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename());
  }
  return names;
}

// One PKI for the whole suite: generating it is the slowest part of a test.
std::unique_ptr<TempDir> pki_dir;
std::unique_ptr<TestPki> pki;

class SecureChannelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_dir = std::make_unique<TempDir>("dpsd-channel-pki");
    pki = std::make_unique<TestPki>(pki_dir->path());
  }
  static void TearDownTestSuite() {
    pki.reset();
    pki_dir.reset();
  }

  void SetUp() override {
    auto ctx = make_client_tls_context(pki->ca_path());
    ASSERT_TRUE(ctx.ok()) << ctx.error();
    tls_ = std::move(ctx.value());
  }

  // `openssl s_server -rev -msg` on a free port, up and accepting before this returns. -rev
  // (echo each line reversed) because the default mode quits at EOF on stdin, which is
  // /dev/null for a Process; -msg logs every record it receives, see application_records().
  std::unique_ptr<Process> start_server(const fs::path& cert, const fs::path& key,
                                        std::vector<std::string> extra = {}) {
    port_ = test::free_port();
    std::vector<std::string> argv = {"openssl", "s_server",
                                     "-rev",    "-msg",
                                     "-accept", "127.0.0.1:" + std::to_string(port_),
                                     "-cert",   cert.string(),
                                     "-key",    key.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto server = std::make_unique<Process>(argv);
    // The probe connection only costs s_server one failed handshake; it keeps accepting.
    if (!test::wait_for_tcp_port(port_, 10s)) {
      ADD_FAILURE() << "s_server did not listen on port " << port_
                    << " within 10 s: " << server->command_line() << "\n"
                    << server->stderr_text();
    }
    return server;
  }

  ChannelOptions options(const std::string& host, std::uint16_t port) {
    ChannelOptions o;
    o.host = host;
    o.port = port;
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

  // Runs the loop until `done` or the deadline; every wait in these tests goes through here.
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

  // Waits for on_closed and returns its reason; fails the test (with what happened instead)
  // if it does not come.
  std::string wait_closed(std::chrono::milliseconds timeout = 10s) {
    if (!run_until([this] { return closed_calls_ > 0; }, timeout)) {
      ADD_FAILURE() << "on_closed was not called within " << timeout.count()
                    << " ms (on_ready calls: " << ready_calls_ << ")";
      return {};
    }
    return closed_reason_;
  }

  void wait_ready(std::chrono::milliseconds timeout = 10s) {
    if (!run_until([this] { return ready_calls_ > 0 || closed_calls_ > 0; }, timeout)) {
      FAIL() << "neither on_ready nor on_closed within " << timeout.count() << " ms";
    }
    ASSERT_EQ(ready_calls_, 1) << "closed instead: " << closed_reason_;
  }

  // Sends `out` through the relay and collects `expected_size` bytes back, driving the loop
  // in between (the test's socket is non-blocking, so both run on this one thread).
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

  EventLoop loop_;
  TempDir sockets_{"dpsd-channel-sock"};
  SslCtxPtr tls_;
  std::uint16_t port_ = 0;
  std::unique_ptr<SecureChannel> channel_;
  int ready_calls_ = 0;
  int closed_calls_ = 0;
  std::string ready_path_;
  std::string closed_reason_;
};

// How many TLS 1.3 application-data records s_server -msg logged as received: each inbound
// record's inner content type follows its "<<< ... InnerContent" line (0x17 = application data;
// handshake messages are 0x16, alerts 0x15).
int application_records(const std::string& msg_log) {
  int count = 0;
  std::size_t at = 0;
  while ((at = msg_log.find("\n<<< ", at)) != std::string::npos) {
    const std::size_t line_end = msg_log.find('\n', at + 1);
    if (line_end == std::string::npos) break;
    const std::string line = msg_log.substr(at + 1, line_end - at - 1);
    const std::size_t next_end = msg_log.find('\n', line_end + 1);
    const std::string next = msg_log.substr(line_end + 1, next_end - line_end - 1);
    if (line.find("InnerContent") != std::string::npos &&
        next.find_first_not_of(' ') != std::string::npos &&
        next.substr(next.find_first_not_of(' ')) == "17") {
      ++count;
    }
    at = line_end;
  }
  return count;
}

// s_server -rev answers each line with the line reversed. The relay only lets MQTT through
// to the client (the inbound gate), so each test line is chosen so that its answer is one MQTT
// packet: a SUBACK-typed fixed header, then `text`, then the newline s_server appends, which is
// the packet's last byte.
struct Echo {
  std::string line;    // what the client sends
  std::string answer;  // what s_server sends back
};

Echo mqtt_echo(const std::string& text) {
  const std::size_t length = text.size() + 1;
  std::string answer = "\x90";
  for (std::size_t n = length;;) {  // MQTT 3.1.1 2.2.3 remaining length
    auto byte = static_cast<std::uint8_t>(n % 128);
    n /= 128;
    answer += static_cast<char>(n > 0 ? byte | 0x80 : byte);
    if (n == 0) break;
  }
  // s_server splits lines at \n and strips a trailing \r, so neither may be in the header.
  EXPECT_EQ(answer.find_first_of("\r\n"), std::string::npos) << "pick another length: " << length;
  answer += text + "\n";
  Echo echo;
  echo.line.assign(answer.rbegin() + 1, answer.rend());
  echo.line += '\n';
  echo.answer = std::move(answer);
  return echo;
}

TEST_F(SecureChannelTest, HandshakeThenRelaysBytesBothWays) {
  auto server = start_server(pki->server_cert(), pki->server_key());
  open_channel(options("localhost", port_));  // a name: goes through the resolver
  wait_ready();
  ASSERT_FALSE(HasFailure());

  EXPECT_EQ(channel_->peer(), "127.0.0.1:" + std::to_string(port_));
  const std::string expected_prefix =
      (sockets_.path() / ("mqtt-" + std::to_string(::getpid()) + "-")).string();
  EXPECT_EQ(ready_path_.rfind(expected_prefix, 0), 0u) << ready_path_;
  EXPECT_TRUE(ready_path_.ends_with(".sock")) << ready_path_;
  EXPECT_TRUE(fs::is_socket(ready_path_));

  UniqueFd client = connect_unix(ready_path_);
  ASSERT_GE(client.get(), 0);
  const Echo hello = mqtt_echo("hello");
  EXPECT_EQ(exchange(client.get(), hello.line, hello.answer.size()), hello.answer);
  // Accepted: the name is gone, so nobody else can even try.
  EXPECT_TRUE(run_until([&] { return !fs::exists(ready_path_); }, 5s))
      << "relay socket file still there after accept";

  // Far more than both 16 KiB buffers, so back-pressure in both directions is exercised.
  std::string bulk;
  std::string answers;
  for (int i = 0; bulk.size() < std::size_t{400} * 1024; ++i) {
    const Echo echo = mqtt_echo("line " + std::to_string(i) + " " +
                                std::string(200 + i % 300, static_cast<char>('a' + i % 26)));
    bulk += echo.line;
    answers += echo.answer;
  }
  EXPECT_EQ(exchange(client.get(), bulk, answers.size()), answers);

  client.reset();
  EXPECT_EQ(wait_closed(), "connection closed by client");
  run_until([] { return false; }, 200ms);
  EXPECT_EQ(closed_calls_, 1);
  EXPECT_EQ(ready_calls_, 1);
}

TEST_F(SecureChannelTest, ServerCloseIsReported) {
  auto server = start_server(pki->server_cert(), pki->server_key());
  open_channel(options("127.0.0.1", port_));  // IP literal: no DNS, checked against IP SAN
  wait_ready();
  ASSERT_FALSE(HasFailure());
  UniqueFd client = connect_unix(ready_path_);
  ASSERT_GE(client.get(), 0);
  const Echo abc = mqtt_echo("abc");
  EXPECT_EQ(exchange(client.get(), abc.line, abc.answer.size()), abc.answer);
  // s_server -rev ends the connection when it reads CLOSE.
  exchange(client.get(), "CLOSE\n", 0);
  EXPECT_EQ(wait_closed(), "connection closed by server");
  // And the client side of the relay sees EOF.
  char byte;
  EXPECT_TRUE(run_until([&] { return ::recv(client.get(), &byte, 1, 0) == 0; }, 5s))
      << "the relay client did not see EOF after the server closed";
}

TEST_F(SecureChannelTest, ServerLogShowsRelayedApplicationData) {
  // Shows that application_records() sees relayed bytes, so its zero in
  // HostNameMismatchFailsBeforeAnyApplicationData means something.
  auto server = start_server(pki->server_cert(), pki->server_key());
  open_channel(options("localhost", port_));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  UniqueFd client = connect_unix(ready_path_);
  ASSERT_GE(client.get(), 0);
  const Echo marker = mqtt_echo("marker");
  EXPECT_EQ(exchange(client.get(), marker.line, marker.answer.size()), marker.answer);
  EXPECT_TRUE(run_until([&] { return application_records(server->stdout_text()) > 0; }, 5s))
      << "s_server -msg logged no inbound application data; its stdout:\n"
      << server->stdout_text();
}

TEST_F(SecureChannelTest, UnknownCaFailsVerification) {
  auto server = start_server(pki->other_server_cert(), pki->other_server_key());
  open_channel(options("localhost", port_));
  EXPECT_EQ(wait_closed(),
            "TLS: certificate verify failed (unable to get local issuer certificate)");
  EXPECT_EQ(ready_calls_, 0);
}

TEST_F(SecureChannelTest, HostNameMismatchFailsBeforeAnyApplicationData) {
  auto server = start_server(pki->wrong_host_cert(), pki->wrong_host_key());
  open_channel(options("localhost", port_));
  EXPECT_EQ(wait_closed(), "TLS: certificate verify failed (hostname mismatch)");
  EXPECT_EQ(ready_calls_, 0);
  EXPECT_TRUE(dir_entries(sockets_.path()).empty()) << "a relay socket was created";
  // Wait until s_server has logged our alert (the end of the handshake), then check that no
  // application-data record came before or with it.
  EXPECT_TRUE(run_until(
      [&] { return server->stdout_text().find("<<< TLS 1.3, Alert") != std::string::npos; }, 5s))
      << "s_server did not log the client's alert; its stdout:\n"
      << server->stdout_text();
  EXPECT_EQ(application_records(server->stdout_text()), 0) << server->stdout_text();
}

TEST_F(SecureChannelTest, IpLiteralIsCheckedAgainstIpSans) {
  auto server = start_server(pki->wrong_host_cert(), pki->wrong_host_key());
  open_channel(options("127.0.0.1", port_));
  EXPECT_EQ(wait_closed(), "TLS: certificate verify failed (IP address mismatch)");
  EXPECT_EQ(ready_calls_, 0);
}

TEST_F(SecureChannelTest, ConnectionRefused) {
  const std::uint16_t port = test::free_port();  // nobody listens there
  open_channel(options("127.0.0.1", port));
  EXPECT_EQ(wait_closed(), "connect: 127.0.0.1:" + std::to_string(port) + ": connection refused");
  EXPECT_EQ(channel_->peer(), "127.0.0.1:" + std::to_string(port));
}

TEST_F(SecureChannelTest, DnsFailure) {
  auto o = options("nonexistent.invalid", 8883);
  o.connect_timeout = 30s;  // let the resolver answer, however slow the network is
  open_channel(o);
  const std::string reason = wait_closed(35s);
  EXPECT_EQ(reason.rfind("dns: nonexistent.invalid: ", 0), 0u) << reason;
  EXPECT_GT(reason.size(), std::string("dns: nonexistent.invalid: ").size()) << reason;
}

TEST_F(SecureChannelTest, ConnectTimeout) {
  // A listener with a full accept queue: Linux drops further SYNs, so connect() hangs.
  std::uint16_t port = 0;
  UniqueFd listener = listen_silently(&port, 0);
  const sockaddr_in address = loopback(port);
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
  auto o = options("127.0.0.1", port);
  o.connect_timeout = 400ms;
  open_channel(o);
  EXPECT_EQ(wait_closed(),
            "connect: 127.0.0.1:" + std::to_string(port) + ": timed out after 400 ms");
}

TEST_F(SecureChannelTest, HandshakeTimeout) {
  std::uint16_t port = 0;
  UniqueFd listener = listen_silently(&port, 4);
  auto o = options("127.0.0.1", port);
  o.handshake_timeout = 300ms;
  const auto started = std::chrono::steady_clock::now();
  open_channel(o);
  EXPECT_EQ(wait_closed(), "TLS: handshake timed out after 300 ms");
  EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms);
}

TEST_F(SecureChannelTest, Tls11OnlyServerIsRefused) {
  // OpenSSL 3 only offers TLS 1.1 at security level 0; that server really speaks TLS 1.1 (a
  // client that allows it connects), so the refusal below is our minimum version at work.
  auto server = start_server(pki->server_cert(), pki->server_key(),
                             {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"});
  open_channel(options("localhost", port_));
  EXPECT_EQ(wait_closed(), "TLS: handshake failed: tlsv1 alert protocol version");
  EXPECT_EQ(ready_calls_, 0);
}

TEST_F(SecureChannelTest, OtherProcessIsRefused) {
  auto server = start_server(pki->server_cert(), pki->server_key());
  open_channel(options("localhost", port_));
  wait_ready();
  ASSERT_FALSE(HasFailure());

  // A child process (another pid, same user) connects and must be hung up on without a byte.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, ready_path_.c_str(), sizeof address.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) _exit(2);
    const char hello[] = "hello\n";
    ::send(fd, hello, sizeof hello - 1, MSG_NOSIGNAL);
    alarm(10);  // never outlive a broken parent
    char byte;
    const ssize_t n = ::recv(fd, &byte, 1, 0);
    _exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 3);
  }
  int status = -1;
  const bool exited = run_until([&] { return ::waitpid(child, &status, WNOHANG) == child; }, 10s);
  if (!exited) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    FAIL() << "the foreign client was not hung up on within 10 s";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child status " << status << " (2: connect failed, 3: received data)";
  EXPECT_EQ(closed_calls_, 0) << closed_reason_;

  // Still listening: our own process gets through.
  UniqueFd client = connect_unix(ready_path_);
  ASSERT_GE(client.get(), 0);
  const Echo abc = mqtt_echo("abc");
  EXPECT_EQ(exchange(client.get(), abc.line, abc.answer.size()), abc.answer);
}

// A symlink planted where the private directory should be: the relay socket must not be
// created wherever it points (issue 10 item 10), and the channel says why it stopped.
TEST_F(SecureChannelTest, SymlinkedSocketDirIsRefused) {
  auto server = start_server(pki->server_cert(), pki->server_key());
  TempDir elsewhere("dpsd-channel-elsewhere");
  const fs::path link = sockets_.path() / "private";
  fs::create_directory_symlink(elsewhere.path(), link);
  auto o = options("localhost", port_);
  o.socket_dir = link;
  open_channel(o);
  EXPECT_EQ(wait_closed(), "relay socket: " + link.string() + " is a symlink; refusing to use it");
  EXPECT_EQ(ready_calls_, 0);
  EXPECT_TRUE(dir_entries(elsewhere.path()).empty());
}

TEST_F(SecureChannelTest, SocketDirOpenToOthersIsRefused) {
  auto server = start_server(pki->server_cert(), pki->server_key());
  const fs::path dir = sockets_.path() / "open";
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms(0755));
  auto o = options("localhost", port_);
  o.socket_dir = dir;
  open_channel(o);
  EXPECT_EQ(wait_closed(), "relay socket: " + dir.string() + " has mode 0755; it must be 0700");
  EXPECT_TRUE(dir_entries(dir).empty());
}

TEST_F(SecureChannelTest, DestructionCancelsCallbacksAndRemovesSocket) {
  auto server = start_server(pki->server_cert(), pki->server_key());
  open_channel(options("localhost", port_));
  wait_ready();
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(fs::exists(ready_path_));
  channel_.reset();
  EXPECT_FALSE(fs::exists(ready_path_));
  run_until([] { return false; }, 200ms);
  EXPECT_EQ(closed_calls_, 0);
}

TEST_F(SecureChannelTest, ClosedHandlerMayDestroyTheChannel) {
  const std::uint16_t port = test::free_port();
  int calls = 0;
  channel_ = std::make_unique<SecureChannel>(
      loop_.get(), tls_.get(), options("127.0.0.1", port), [](const std::string&) {},
      [&](const std::string&) {
        ++calls;
        channel_.reset();
      });
  channel_->start();
  EXPECT_TRUE(run_until([&] { return calls > 0; }, 5s)) << "on_closed was not called";
  run_until([] { return false; }, 100ms);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(channel_, nullptr);
}

TEST_F(SecureChannelTest, DestroyedDuringDnsReturnsAtOnce) {
  open_channel(options("nonexistent.invalid", 8883));
  const auto started = std::chrono::steady_clock::now();
  channel_.reset();  // the lookup thread may still run; the loop must not wait for it
  EXPECT_LT(std::chrono::steady_clock::now() - started, 100ms);
  run_until([] { return false; }, 200ms);
  EXPECT_EQ(closed_calls_, 0);
}

TEST(TlsContext, MissingTrustBundleNamesPathAndReason) {
  const auto ctx = make_client_tls_context(fs::path("/nonexistent/ca-bundle.pem"));
  ASSERT_FALSE(ctx.ok());
  EXPECT_NE(ctx.error().find("/nonexistent/ca-bundle.pem"), std::string::npos) << ctx.error();
  EXPECT_NE(ctx.error().find("No such file or directory"), std::string::npos) << ctx.error();
}

TEST(TlsContext, BundleWithoutCertificatesIsRejected) {
  TempDir dir;
  test::write_file(dir / "empty.pem", "not a certificate\n");
  const auto ctx = make_client_tls_context(dir / "empty.pem");
  ASSERT_FALSE(ctx.ok());
  EXPECT_NE(ctx.error().find((dir / "empty.pem").string()), std::string::npos) << ctx.error();
  EXPECT_NE(ctx.error().find("no trusted CA certificates found in"), std::string::npos)
      << ctx.error();
}

TEST(TlsContext, DefaultsToSystemStoreAndTls12Minimum) {
  const auto ctx = make_client_tls_context(std::nullopt);
  ASSERT_TRUE(ctx.ok()) << ctx.error();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx->get()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx->get()) & SSL_VERIFY_PEER, SSL_VERIFY_PEER);
}

}  // namespace
}  // namespace dpsd::io
